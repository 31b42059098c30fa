//! Where ACL bindings and SCRAM credentials are kept: one owner, the
//! [`SecurityStore`]. A single broker keeps them in its log's durable
//! key/value state ([`KvSecurityStore`]); the brokers of a cluster share
//! them in the coordinator's metadata (`cluster::security`), where every
//! broker follows them with a watch and applies the changes to its caches
//! ([`Synced`]).
//!
//! Entries are addressed by their key in the key/value state
//! (vigil-storage `kvkeys`: `security/acl/...`, `security/scram/...`) on
//! both backends; the cluster backend maps them to metadata keys.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::ResponseError;
use vigil_storage::Log;

/// How long a change this broker made overrides the shared view while the
/// view does not show it yet: far longer than a watch takes to echo a
/// write (milliseconds on etcd, a poll interval on the object store),
/// short enough that a conflicting change by another broker at the same
/// moment wins soon after.
pub const PENDING_TTL: Duration = Duration::from_secs(10);

/// Why the security store failed. Nothing changed in the caches. (The
/// sources are boxed: this error travels inside others.)
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The log refused the write (a single broker).
    #[error("the log refused the write: {0}")]
    Log(Box<vigil_storage::StorageError>),
    /// The cluster coordinator failed.
    #[error("the cluster coordinator failed: {0}")]
    Coord(Box<vigil_coord::CoordError>),
    /// A key that is not an ACL or credential key (a bug, not retriable).
    #[error("{0:?} is not the key of an ACL binding or a SCRAM credential")]
    Key(String),
}

impl From<vigil_storage::StorageError> for StoreError {
    fn from(e: vigil_storage::StorageError) -> Self {
        StoreError::Log(Box::new(e))
    }
}

impl From<vigil_coord::CoordError> for StoreError {
    fn from(e: vigil_coord::CoordError) -> Self {
        StoreError::Coord(Box::new(e))
    }
}

impl StoreError {
    /// Whether retrying can help.
    pub fn is_retriable(&self) -> bool {
        match self {
            StoreError::Log(e) => e.is_retriable(),
            StoreError::Coord(e) => e.is_retriable(),
            StoreError::Key(_) => false,
        }
    }

    /// The Kafka error code for a client whose change failed.
    pub fn code(&self) -> ResponseError {
        match self {
            StoreError::Log(e) => crate::errors::storage_code(e),
            // KAFKA_STORAGE_ERROR is retriable for clients.
            StoreError::Coord(e) if e.is_retriable() => ResponseError::KafkaStorageError,
            StoreError::Coord(_) | StoreError::Key(_) => ResponseError::UnknownServerError,
        }
    }
}

/// The durable home of ACLs and credentials (see the module doc).
pub trait SecurityStore: Send + Sync + 'static {
    /// Every entry whose key starts with `prefix`, as (key, value).
    fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>>;

    /// Writes (or with `None` deletes) entries, durably.
    fn put(&self, entries: Vec<(String, Option<String>)>) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Writes an entry unless one exists; `false` if one did.
    fn put_if_absent(&self, key: String, value: String) -> BoxFuture<'_, Result<bool, StoreError>>;
}

/// A single broker's store: its log's key/value state. Only this broker
/// writes it, so what it read at open plus its own writes is the truth.
pub struct KvSecurityStore {
    log: Arc<Log>,
}

impl KvSecurityStore {
    /// The store of `log`.
    pub fn new(log: Arc<Log>) -> Self {
        KvSecurityStore { log }
    }
}

impl SecurityStore for KvSecurityStore {
    /// The entries in the state at open (callers list once, at open).
    fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>> {
        let kv = self.log.kv_at_open();
        let out = kv
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        futures::future::ready(Ok(out)).boxed()
    }

    fn put(&self, entries: Vec<(String, Option<String>)>) -> BoxFuture<'_, Result<(), StoreError>> {
        async move { Ok(self.log.kv_put(entries).await?) }.boxed()
    }

    /// The only writer is this broker, whose caches already told the caller
    /// the entry is absent: a plain write.
    fn put_if_absent(&self, key: String, value: String) -> BoxFuture<'_, Result<bool, StoreError>> {
        async move {
            self.log.kv_put(vec![(key, Some(value))]).await?;
            Ok(true)
        }
        .boxed()
    }
}

/// One kind of entry as a broker caches it: the store's view as last
/// seen, plus the changes this broker made that the view does not show
/// yet (for at most [`PENDING_TTL`]), so that a view taken just before a
/// change never undoes it.
#[derive(Debug)]
pub struct Synced<V> {
    view: BTreeMap<String, V>,
    pending: BTreeMap<String, (Option<V>, Instant)>,
}

impl<V: Clone + PartialEq> Synced<V> {
    /// A cache of `view`.
    pub fn new(view: BTreeMap<String, V>) -> Self {
        Synced {
            view,
            pending: BTreeMap::new(),
        }
    }

    /// A change this broker made durably.
    pub fn local(&mut self, key: String, value: Option<V>, now: Instant) {
        self.pending.insert(key, (value, now));
    }

    /// A newer view of the whole kind (a resync).
    pub fn replace_view(&mut self, view: BTreeMap<String, V>, now: Instant) {
        self.view = view;
        self.settle(now);
    }

    /// One entry's change in the view (a watch event).
    pub fn view_change(&mut self, key: String, value: Option<V>, now: Instant) {
        match value {
            Some(v) => self.view.insert(key, v),
            None => self.view.remove(&key),
        };
        self.settle(now);
    }

    /// Drops pending changes the view shows, or that are too old.
    fn settle(&mut self, now: Instant) {
        let view = &self.view;
        self.pending.retain(|key, (v, at)| {
            let seen = view.get(key) == v.as_ref();
            !seen && now.duration_since(*at) < PENDING_TTL
        });
    }

    /// The entries in effect: the view with the pending changes over it.
    pub fn effective(&self) -> BTreeMap<String, V> {
        let mut out = self.view.clone();
        for (key, (v, _)) in &self.pending {
            match v {
                Some(v) => out.insert(key.clone(), v.clone()),
                None => out.remove(key),
            };
        }
        out
    }
}

/// A log in `dir` over an in-memory object store, and the security store
/// in its state (unit tests of the caches over it).
#[cfg(test)]
pub(crate) async fn test_store(dir: &std::path::Path) -> (Arc<Log>, Arc<dyn SecurityStore>) {
    let mem: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let log = Log::open(vigil_storage::LogConfig::new(dir.join("data")), mem)
        .await
        .expect("log");
    let kv: Arc<dyn SecurityStore> = Arc::new(KvSecurityStore::new(log.clone()));
    (log, kv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_changes_survive_older_views_until_seen_or_expired() {
        let t0 = Instant::now();
        let mut s = Synced::new(BTreeMap::from([("a".to_string(), 1)]));
        s.local("b".into(), Some(2), t0);
        s.local("a".into(), None, t0);
        // A view taken before the changes: they stay in effect.
        s.replace_view(
            BTreeMap::from([("a".to_string(), 1), ("c".to_string(), 3)]),
            t0,
        );
        assert_eq!(
            s.effective(),
            BTreeMap::from([("b".to_string(), 2), ("c".to_string(), 3)])
        );
        // The watch echoes the write of "b": no longer pending, and a later
        // deletion by another broker applies.
        s.view_change("b".into(), Some(2), t0);
        s.view_change("b".into(), None, t0);
        assert_eq!(s.effective(), BTreeMap::from([("c".to_string(), 3)]));
        // The deletion of "a" was never echoed: after the TTL the view wins.
        s.replace_view(
            BTreeMap::from([("a".to_string(), 1)]),
            t0 + PENDING_TTL + Duration::from_secs(1),
        );
        assert_eq!(s.effective(), BTreeMap::from([("a".to_string(), 1)]));
    }
}
