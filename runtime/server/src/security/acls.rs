//! Kafka ACL bindings kept in the [`SecurityStore`] (one entry per
//! binding, `kvkeys::acl`) and cached in memory for the authorizer.
//!
//! Changes made through this broker apply to the cache as soon as they are
//! durable. Changes made through other brokers of a cluster arrive through
//! [`AclStore::resync`] (a whole view) and [`AclStore::changed`] (one
//! entry), fed by the cluster's follower (`cluster::security`); a change
//! of this broker that a view does not show yet is kept over it for a
//! while ([`Synced`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use tokio::sync::OwnedMutexGuard;
use vigil_auth::acl::{AclBinding, AclFilter};
use vigil_storage::kvkeys;

use super::store::{SecurityStore, StoreError, Synced};
use crate::completion::to_completion;

/// Why ACLs could not be changed: the store refused the write. Nothing
/// changed in memory.
#[derive(Debug, thiserror::Error)]
#[error("cannot store ACL changes ({what}): {source}")]
pub struct AclStoreError {
    /// What was being changed, e.g. `create 2 bindings`.
    pub what: String,
    /// The store's error.
    pub source: StoreError,
}

impl AclStoreError {
    /// Whether retrying can help.
    pub fn is_retriable(&self) -> bool {
        self.source.is_retriable()
    }
}

struct State {
    /// Every binding in effect; shared out as snapshots.
    bindings: Arc<Vec<AclBinding>>,
    synced: Synced<AclBinding>,
}

impl State {
    fn publish(&mut self) {
        self.bindings = Arc::new(self.synced.effective().into_values().collect());
    }
}

/// Every ACL binding of the broker or cluster.
pub struct AclStore {
    store: Arc<dyn SecurityStore>,
    state: Arc<RwLock<State>>,
    /// Serializes changes, so that the cache applies them in the order the
    /// store does; a change holds it until its cache update is done.
    writes: Arc<tokio::sync::Mutex<()>>,
    /// Counts the changes of the bindings in effect, for whoever must
    /// re-decide on one (running deployments, `deployments.rs`).
    changes: Arc<tokio::sync::watch::Sender<u64>>,
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

/// The binding of a key, if it is one. Keys that do not parse are skipped
/// with a warning (a newer format, or damage).
pub fn parse(key: &str) -> Option<AclBinding> {
    let parsed = kvkeys::parse_acl(key).and_then(|(t, n, pt, p, h, o, perm)| {
        AclBinding::from_wire(t, &n, pt, &p, &h, o, perm).ok()
    });
    if parsed.is_none() {
        tracing::warn!(%key, "skipping an ACL binding that does not parse");
    }
    parsed
}

/// Every binding among store entries.
pub fn bindings_in(entries: Vec<(String, String)>) -> BTreeMap<String, AclBinding> {
    entries
        .into_iter()
        .filter_map(|(key, _)| parse(&key).map(|b| (key, b)))
        .collect()
}

impl AclStore {
    /// The bindings in `store` now.
    pub async fn load(store: Arc<dyn SecurityStore>) -> Result<AclStore, StoreError> {
        let view = bindings_in(store.list(kvkeys::acl_prefix()).await?);
        let mut state = State {
            bindings: Arc::new(Vec::new()),
            synced: Synced::new(view),
        };
        state.publish();
        Ok(AclStore {
            store,
            state: Arc::new(RwLock::new(state)),
            writes: Arc::default(),
            changes: Arc::new(tokio::sync::watch::channel(0).0),
        })
    }

    /// Wakes on every change of the bindings in effect (or a full re-read
    /// of the shared store, which may change nothing).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n += 1);
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
        let w = self.writes.clone().lock_owned().await;
        let changes: Vec<(String, Option<AclBinding>)> = bindings
            .into_iter()
            .map(|b| (key_of(&b), Some(b)))
            .collect();
        let what = format!("create {} bindings", changes.len());
        self.write(w, changes, what).await
    }

    /// Deletes, durably, every binding passing any of `filters`; returns,
    /// per filter, the bindings it matched.
    pub async fn delete(
        &self,
        filters: &[AclFilter],
    ) -> Result<Vec<Vec<AclBinding>>, AclStoreError> {
        let w = self.writes.clone().lock_owned().await;
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
            self.write(w, keys.into_iter().collect(), what).await?;
        }
        Ok(matched)
    }

    /// Stores `changes`, then applies them to the cache, to the end in a
    /// task of its own (holding `w`): a write the store took lands whether
    /// or not the caller still waits (a client hanging up drops its
    /// request), and cut off before the cache followed it, the broker would
    /// enforce other ACLs than it stores until a restart (docs/design/0021).
    async fn write(
        &self,
        w: OwnedMutexGuard<()>,
        changes: Vec<(String, Option<AclBinding>)>,
        what: String,
    ) -> Result<(), AclStoreError> {
        let entries = changes
            .iter()
            .map(|(k, b)| (k.clone(), b.as_ref().map(|_| String::new())))
            .collect();
        let (store, state, bump) = (self.store.clone(), self.state.clone(), self.changes.clone());
        to_completion(async move {
            store
                .put(entries)
                .await
                .map_err(|source| AclStoreError { what, source })?;
            let now = Instant::now();
            let mut s = state.write();
            for (key, b) in changes {
                s.synced.local(key, b, now);
            }
            s.publish();
            drop(s);
            bump.send_modify(|n| *n += 1);
            drop(w);
            Ok(())
        })
        .await
    }

    /// Replaces the shared view with a newer one (every binding in the
    /// store), keeping this broker's own changes it does not show yet.
    pub fn resync(&self, view: BTreeMap<String, AclBinding>) {
        let mut s = self.state.write();
        s.synced.replace_view(view, Instant::now());
        s.publish();
        drop(s);
        self.bump();
    }

    /// One binding was written (`Some`) or deleted in the store, by any
    /// broker.
    pub fn changed(&self, key: String, binding: Option<AclBinding>) {
        let mut s = self.state.write();
        s.synced.view_change(key, binding, Instant::now());
        s.publish();
        drop(s);
        self.bump();
    }
}

#[cfg(test)]
mod tests {
    use super::super::store::KvSecurityStore;
    use super::*;
    use vigil_auth::acl::{Operation, PatternType, Permission, ResourceType};
    use vigil_storage::Log;

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

    fn names(store: &AclStore) -> Vec<String> {
        store
            .snapshot()
            .iter()
            .map(|b| b.resource_name.clone())
            .collect()
    }

    #[tokio::test]
    async fn changes_persist_and_resync_keeps_unseen_local_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mem: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::memory::InMemory::new());
        let log = open(dir.path(), &mem).await;
        let store = AclStore::load(Arc::new(KvSecurityStore::new(log.clone())))
            .await
            .expect("load");
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
        let old: BTreeMap<String, AclBinding> = ["a", "c"]
            .into_iter()
            .map(|n| (key_of(&binding(n)), binding(n)))
            .collect();
        store.resync(old);
        assert_eq!(names(&store), ["b", "c"]);
        // Another broker deletes "c".
        store.changed(key_of(&binding("c")), None);
        assert_eq!(names(&store), ["b"]);

        log.close().await;
        drop(store);
        let log = open(dir.path(), &mem).await;
        let reopened = AclStore::load(Arc::new(KvSecurityStore::new(log.clone())))
            .await
            .expect("load");
        assert_eq!(
            names(&reopened),
            ["b"],
            "what was written survives a reopen"
        );
        log.close().await;
    }
}
