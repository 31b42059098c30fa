//! Kafka ACL bindings kept in the log's durable key/value state (one key
//! per binding, `kvkeys::acl`) and cached in memory for the authorizer.
//!
//! Changes made through this broker apply to the cache as soon as they are
//! durable. Changes made through another broker of the same store arrive
//! through [`AclStore::refresh`] with a newer view of the key/value state;
//! a change of this broker that such a view does not show yet (it was
//! written after the view was taken) is kept over it for [`PENDING_TTL`],
//! so a refresh never undoes a fresh grant or revoke.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use vigil_auth::acl::{AclBinding, AclFilter};
use vigil_storage::kv::KvMap;
use vigil_storage::{kvkeys, Log};

/// How long a local change overrides a key/value view that does not show
/// it yet. Far longer than a state commit takes; after it, the view wins
/// (another broker may have undone the change meanwhile).
pub const PENDING_TTL: Duration = Duration::from_secs(120);

/// Why ACLs could not be changed: the log refused the write (whether a
/// retry helps is the storage error's to say). Nothing changed in memory.
#[derive(Debug, thiserror::Error)]
#[error("cannot store ACL changes ({what}): {source}")]
pub struct AclStoreError {
    /// What was being changed, e.g. `create 2 bindings`.
    pub what: String,
    /// The log's error.
    pub source: vigil_storage::StorageError,
}

impl AclStoreError {
    /// Whether retrying can help.
    pub fn is_retriable(&self) -> bool {
        self.source.is_retriable()
    }
}

struct State {
    /// Every binding, by its key; shared out as snapshots.
    bindings: Arc<Vec<AclBinding>>,
    by_key: BTreeMap<String, AclBinding>,
    /// Local changes not yet seen in a refreshed view: key -> (present, when).
    pending: BTreeMap<String, (Option<AclBinding>, Instant)>,
}

/// Every ACL binding of the cluster.
pub struct AclStore {
    log: Arc<Log>,
    state: RwLock<State>,
    /// Serializes changes, so that the cache applies them in the order the
    /// log does.
    writes: tokio::sync::Mutex<()>,
}

/// The key of a binding.
pub fn key_of(b: &AclBinding) -> String {
    kvkeys::acl(
        b.resource_type.code(),
        &b.resource_name,
        b.pattern_type.code(),
        &b.principal,
        &b.host,
        b.operation.code(),
        b.permission.code(),
    )
}

/// Every binding in a key/value view. Keys that do not parse are skipped
/// with a warning (a newer format, or damage).
fn bindings_in(kv: &KvMap) -> BTreeMap<String, AclBinding> {
    let prefix = kvkeys::acl_prefix();
    let mut out = BTreeMap::new();
    for (key, _) in kv.range(prefix.to_string()..) {
        if !key.starts_with(prefix) {
            break;
        }
        let parsed = kvkeys::parse_acl(key).and_then(|(t, n, pt, p, h, o, perm)| {
            AclBinding::from_wire(t, &n, pt, &p, &h, o, perm).ok()
        });
        match parsed {
            Some(b) => {
                out.insert(key.clone(), b);
            }
            None => tracing::warn!(%key, "skipping an ACL binding that does not parse"),
        }
    }
    out
}

impl AclStore {
    /// The bindings in the log's state at open.
    pub fn load(log: Arc<Log>) -> AclStore {
        let by_key = bindings_in(log.kv_at_open());
        AclStore {
            log,
            state: RwLock::new(State {
                bindings: Arc::new(by_key.values().cloned().collect()),
                by_key,
                pending: BTreeMap::new(),
            }),
            writes: tokio::sync::Mutex::new(()),
        }
    }

    /// Every binding now (a snapshot: cheap to take, unaffected by later
    /// changes).
    pub fn snapshot(&self) -> Arc<Vec<AclBinding>> {
        self.state.read().bindings.clone()
    }

    /// Bindings passing `filter`.
    pub fn describe(&self, filter: &AclFilter) -> Vec<AclBinding> {
        self.snapshot()
            .iter()
            .filter(|b| filter.matches(b))
            .cloned()
            .collect()
    }

    /// Adds bindings durably, then to the cache. Existing ones stay as they
    /// are (creating a binding twice is not an error, as in Kafka).
    pub async fn create(&self, bindings: Vec<AclBinding>) -> Result<(), AclStoreError> {
        let _w = self.writes.lock().await;
        let changes: Vec<(String, Option<AclBinding>)> = bindings
            .into_iter()
            .map(|b| (key_of(&b), Some(b)))
            .collect();
        let what = format!("create {} bindings", changes.len());
        self.write(changes, what).await
    }

    /// Deletes, durably, every binding passing any of `filters`; returns,
    /// per filter, the bindings it matched.
    pub async fn delete(
        &self,
        filters: &[AclFilter],
    ) -> Result<Vec<Vec<AclBinding>>, AclStoreError> {
        let _w = self.writes.lock().await;
        let all = self.snapshot();
        let matched: Vec<Vec<AclBinding>> = filters
            .iter()
            .map(|f| all.iter().filter(|b| f.matches(b)).cloned().collect())
            .collect();
        let mut keys: BTreeMap<String, Option<AclBinding>> = BTreeMap::new();
        for b in matched.iter().flatten() {
            keys.insert(key_of(b), None);
        }
        if !keys.is_empty() {
            let what = format!("delete {} bindings", keys.len());
            self.write(keys.into_iter().collect(), what).await?;
        }
        Ok(matched)
    }

    async fn write(
        &self,
        changes: Vec<(String, Option<AclBinding>)>,
        what: String,
    ) -> Result<(), AclStoreError> {
        let entries = changes
            .iter()
            .map(|(k, b)| (k.clone(), b.as_ref().map(|_| String::new())))
            .collect();
        self.log
            .kv_put(entries)
            .await
            .map_err(|source| AclStoreError { what, source })?;
        let now = Instant::now();
        let mut s = self.state.write();
        for (key, b) in changes {
            match &b {
                Some(b) => s.by_key.insert(key.clone(), b.clone()),
                None => s.by_key.remove(&key),
            };
            s.pending.insert(key, (b, now));
        }
        s.bindings = Arc::new(s.by_key.values().cloned().collect());
        Ok(())
    }

    /// Replaces the cache with the bindings in a newer view of the shared
    /// key/value state (another broker's changes), keeping this broker's
    /// own changes the view does not show yet (see the module doc).
    pub fn refresh(&self, kv: &KvMap) {
        self.refresh_at(kv, Instant::now());
    }

    fn refresh_at(&self, kv: &KvMap, now: Instant) {
        let mut by_key = bindings_in(kv);
        let mut s = self.state.write();
        s.pending.retain(|key, (b, at)| {
            let seen = by_key.contains_key(key) == b.is_some();
            !seen && now.duration_since(*at) < PENDING_TTL
        });
        for (key, (b, _)) in &s.pending {
            match b {
                Some(b) => by_key.insert(key.clone(), b.clone()),
                None => by_key.remove(key),
            };
        }
        s.bindings = Arc::new(by_key.values().cloned().collect());
        s.by_key = by_key;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_auth::acl::{Operation, PatternType, Permission, ResourceType};

    fn binding(name: &str) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type: PatternType::Literal,
            principal: "User:a".into(),
            host: "*".into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        }
    }

    async fn open(dir: &std::path::Path, store: &Arc<dyn object_store::ObjectStore>) -> Arc<Log> {
        let config = vigil_storage::LogConfig::new(dir.join("data"));
        Log::open(config, store.clone()).await.expect("log")
    }

    #[tokio::test]
    async fn changes_persist_and_refresh_keeps_unseen_local_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mem: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::memory::InMemory::new());
        let log = open(dir.path(), &mem).await;
        let store = AclStore::load(log.clone());
        store
            .create(vec![binding("a"), binding("b"), binding("a")])
            .await
            .expect("create");
        assert_eq!(store.snapshot().len(), 2);
        let gone = store
            .delete(&[AclFilter {
                resource_name: Some("a".into()),
                ..AclFilter::default()
            }])
            .await
            .expect("delete");
        assert_eq!(gone, vec![vec![binding("a")]]);

        // A view taken before these changes (another broker's, say) holds
        // "a" and "c": "c" is adopted, the local delete of "a" and create of
        // "b" survive it.
        let mut old = KvMap::new();
        old.insert(key_of(&binding("a")), String::new());
        old.insert(key_of(&binding("c")), String::new());
        store.refresh(&old);
        let names: Vec<String> = store
            .snapshot()
            .iter()
            .map(|b| b.resource_name.clone())
            .collect();
        assert_eq!(names, ["b", "c"]);
        // Once the pending changes are older than the TTL, the view wins.
        store.refresh_at(&old, Instant::now() + PENDING_TTL + Duration::from_secs(1));
        let names: Vec<String> = store
            .snapshot()
            .iter()
            .map(|b| b.resource_name.clone())
            .collect();
        assert_eq!(names, ["a", "c"]);

        log.close().await;
        drop(store);
        let log = open(dir.path(), &mem).await;
        let reopened = AclStore::load(log.clone());
        let names: Vec<String> = reopened
            .snapshot()
            .iter()
            .map(|b| b.resource_name.clone())
            .collect();
        assert_eq!(names, ["b"], "what was written survives a reopen");
        log.close().await;
    }
}
