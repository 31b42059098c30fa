//! ACLs and SCRAM credentials shared by the brokers of a cluster, in the
//! coordinator's metadata (`security/<kind>/<hex id>`, vigil-coord
//! `keys::meta::security`), one key per binding or credential. Every
//! broker writes there ([`MetaSecurityStore`]) and follows the prefix with
//! a watch ([`Cluster::follow_security`]), applying each change to its
//! caches, so a grant, a revoke or a new password made through one broker
//! applies on all of them as soon as the watch delivers it (etcd: at once;
//! the object store: within a poll interval). A full re-read every
//! [`RESYNC`] is the safety net for a watch that missed something.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use vigil_coord::keys::meta;
use vigil_coord::{CoordError, Coordinator, Expect, MetaEvent, Versioned, Watched};
use vigil_storage::{kvkeys, Log};

use super::Cluster;
use crate::security::store::{SecurityStore, StoreError};
use crate::security::{acls, credentials, Security};

/// How often a follower re-reads every entry although its watch runs.
pub const RESYNC: Duration = Duration::from_secs(30);

/// [`SecurityStore`] over the coordinator's metadata.
pub struct MetaSecurityStore {
    coord: Arc<dyn Coordinator>,
}

fn meta_key(kv_key: &str) -> Result<String, StoreError> {
    meta::security(kv_key).ok_or_else(|| StoreError::Key(kv_key.to_string()))
}

/// (key/value-state key, value) of a metadata entry; `None` (logged) for
/// one that is not a readable security entry.
fn entry_of(key: &str, value: &[u8]) -> Option<(String, String)> {
    let parsed = meta::parse_security(key).zip(std::str::from_utf8(value).ok());
    if parsed.is_none() {
        tracing::warn!(%key, "skipping an unreadable security entry in the cluster metadata");
    }
    parsed.map(|(k, v)| (k, v.to_string()))
}

impl SecurityStore for MetaSecurityStore {
    fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>> {
        async move {
            let entries = self.coord.meta_list(&meta_key(prefix)?).await?;
            Ok(entries
                .iter()
                .filter_map(|v| entry_of(&v.key, &v.value))
                .filter(|(k, _)| k.starts_with(prefix))
                .collect())
        }
        .boxed()
    }

    fn put(&self, entries: Vec<(String, Option<String>)>) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            // One key per entry: a failure part-way leaves the earlier
            // entries written, which the caller reports as failed; writing
            // them again is harmless (creating a binding twice is a no-op).
            let writes = entries.into_iter().map(|(key, value)| async move {
                let key = meta_key(&key)?;
                match value {
                    Some(v) => self
                        .coord
                        .meta_put(&key, Bytes::from(v), Expect::Any)
                        .await
                        .map(|_| ())?,
                    None => self.coord.meta_delete(&key, Expect::Any).await?,
                }
                Ok::<(), StoreError>(())
            });
            futures::future::try_join_all(writes).await.map(|_| ())
        }
        .boxed()
    }

    fn put_if_absent(&self, key: String, value: String) -> BoxFuture<'_, Result<bool, StoreError>> {
        async move {
            match self
                .coord
                .meta_put(&meta_key(&key)?, Bytes::from(value), Expect::Absent)
                .await
            {
                Ok(_) => Ok(true),
                Err(CoordError::Conflict { .. }) => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
        .boxed()
    }
}

/// Applies one entry's change (`value` `None`: deleted) to the caches.
fn apply_change(
    acl_cache: &acls::AclStore,
    cred_cache: &credentials::CredentialStore,
    key: &str,
    value: Option<&[u8]>,
) {
    let Some(kv_key) = meta::parse_security(key) else {
        tracing::warn!(%key, "skipping an unreadable security entry in the cluster metadata");
        return;
    };
    let text = match value.map(std::str::from_utf8).transpose() {
        Ok(t) => t,
        Err(_) => {
            tracing::warn!(%key, "skipping a security entry that is not UTF-8");
            return;
        }
    };
    if kv_key.starts_with(kvkeys::acl_prefix()) {
        let binding = match text {
            Some(_) => match acls::parse(&kv_key) {
                Some(b) => Some(b),
                None => return,
            },
            None => None,
        };
        acl_cache.changed(kv_key, binding);
    } else if kv_key.starts_with(kvkeys::scram_credential_prefix()) {
        let cred = match text {
            Some(t) => match credentials::parse(&kv_key, t) {
                Some(c) => Some(c),
                None => return,
            },
            None => None,
        };
        cred_cache.changed(kv_key, cred);
    }
}

/// Replaces the caches' views with every entry in `all`.
fn apply_all(
    acl_cache: &acls::AclStore,
    cred_cache: &credentials::CredentialStore,
    all: &[Versioned],
) {
    let mut acl_entries = Vec::new();
    let mut cred_entries = Vec::new();
    for (k, v) in all.iter().filter_map(|v| entry_of(&v.key, &v.value)) {
        if k.starts_with(kvkeys::acl_prefix()) {
            acl_entries.push((k, v));
        } else if k.starts_with(kvkeys::scram_credential_prefix()) {
            cred_entries.push((k, v));
        }
    }
    acl_cache.resync(acls::bindings_in(acl_entries));
    cred_cache.resync(credentials::credentials_in(cred_entries));
}

impl Cluster {
    /// The cluster's security store. ACLs and credentials this node's own
    /// state still holds (it served as a single broker before) are moved
    /// into it first, unless the cluster has an entry of the same key
    /// already, and removed from the node's state, so that a later restart
    /// cannot bring back what the cluster revoked meanwhile.
    pub(crate) async fn security_store(
        &self,
        log: &Arc<Log>,
    ) -> Result<Arc<dyn SecurityStore>, StoreError> {
        let store = MetaSecurityStore {
            coord: self.coord.clone(),
        };
        let kv = log.kv_at_open();
        let mut moved = Vec::new();
        for prefix in [kvkeys::acl_prefix(), kvkeys::scram_credential_prefix()] {
            for (key, value) in kv
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
            {
                store.put_if_absent(key.clone(), value.clone()).await?;
                moved.push((key.clone(), None));
            }
        }
        if !moved.is_empty() {
            tracing::info!(
                entries = moved.len(),
                "moved this node's ACLs and SCRAM credentials into the cluster's metadata"
            );
            log.kv_put(moved).await?;
        }
        Ok(Arc::new(store))
    }

    /// Follows the cluster's ACLs and credentials into `security`'s caches
    /// until `shutdown`.
    pub fn follow_security(
        &self,
        security: Arc<Security>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let coord = self.coord.clone();
        async move { follow(coord, &security.authz.acls, &security.credentials, shutdown).await }
    }
}

/// Applies every change under the security prefix to the caches until
/// `shutdown`.
async fn follow(
    coord: Arc<dyn Coordinator>,
    acl_cache: &acls::AclStore,
    cred_cache: &credentials::CredentialStore,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let mut rx = match coord.watch_meta(meta::securities()).await {
            Ok(rx) => rx,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the cluster's ACLs and credentials; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        };
        let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + RESYNC, RESYNC);
        loop {
            // Pick the next thing to do; act outside the select so
            // that no guard of `shutdown` lives across an await.
            let item = tokio::select! {
                item = rx.recv() => Some(item),
                _ = resync.tick() => None,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            match item {
                // The watch failed: watch again (its first item is
                // a full resync).
                Some(None) => break,
                Some(Some(Watched::Resync(all))) => apply_all(acl_cache, cred_cache, &all),
                Some(Some(Watched::Change(MetaEvent::Put(v)))) => {
                    apply_change(acl_cache, cred_cache, &v.key, Some(&v.value))
                }
                Some(Some(Watched::Change(MetaEvent::Deleted(key)))) => {
                    apply_change(acl_cache, cred_cache, &key, None)
                }
                None => match coord.meta_list(meta::securities()).await {
                    Ok(all) => apply_all(acl_cache, cred_cache, &all),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot re-read the cluster's ACLs and credentials")
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::store::PENDING_TTL;
    use crate::security::{AclStore, CredentialStore};
    use vigil_auth::acl::{
        AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType,
    };
    use vigil_auth::{Credential, Mechanism};

    fn binding(name: &str) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type: PatternType::Prefixed,
            principal: "User:we/ird ~user".into(),
            host: "*".into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        }
    }

    /// Waits (bounded) until `done` holds.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn changes_through_one_broker_reach_the_other_through_the_watch() {
        let mem: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::memory::InMemory::new());
        let coord: Arc<dyn Coordinator> = Arc::new(vigil_coord::store::StoreCoordinator::new(
            mem,
            vigil_coord::store::StoreSettings {
                poll_interval: Duration::from_millis(50),
                ..Default::default()
            },
        ));
        let store = || -> Arc<dyn SecurityStore> {
            Arc::new(MetaSecurityStore {
                coord: coord.clone(),
            })
        };
        let (acls_a, creds_a) = (
            AclStore::load(store()).await.expect("load"),
            CredentialStore::load(store()).await.expect("load"),
        );
        let (acls_b, creds_b) = (
            AclStore::load(store()).await.expect("load"),
            CredentialStore::load(store()).await.expect("load"),
        );
        let (stop, rx) = tokio::sync::watch::channel(false);
        let user = "we/ird ~user";
        let body = async {
            acls_a
                .create(vec![binding("orders."), binding("..")])
                .await
                .expect("create on A");
            until("B sees A's grants", || acls_b.snapshot().len() == 2).await;

            let cred = Credential::new(Mechanism::ScramSha512, "pw", 4096).expect("credential");
            creds_a
                .apply(vec![(
                    user.into(),
                    Mechanism::ScramSha512,
                    Some(cred.clone()),
                )])
                .await
                .expect("user on A");
            until("B sees A's user", || {
                creds_b.get(user, Mechanism::ScramSha512).as_ref() == Some(&cred)
            })
            .await;
            // A bootstrap on B does not overwrite the credential A set.
            let other = Credential::new(Mechanism::ScramSha512, "other", 4096).expect("credential");
            assert!(!creds_b.create(user, other).await.expect("create"));
            assert_eq!(
                creds_b.get(user, Mechanism::ScramSha512),
                Some(cred.clone())
            );

            // Revoked through B: gone on A.
            let gone = acls_b
                .delete(&[AclFilter {
                    resource_name: Some("orders.".into()),
                    ..AclFilter::default()
                }])
                .await
                .expect("delete on B");
            assert_eq!(gone, vec![vec![binding("orders.")]]);
            until("A sees B's revoke", || {
                acls_a
                    .snapshot()
                    .iter()
                    .map(|b| b.resource_name.as_str())
                    .eq([".."])
            })
            .await;
            creds_b
                .apply(vec![(user.into(), Mechanism::ScramSha512, None)])
                .await
                .expect("delete user on B");
            until("A sees B's user deletion", || {
                creds_a.get(user, Mechanism::ScramSha512).is_none()
            })
            .await;

            // A newcomer loads everything from the store.
            let late = AclStore::load(store()).await.expect("load");
            assert_eq!(late.snapshot().len(), 1);
            let _ = stop.send(true);
        };
        tokio::time::timeout(PENDING_TTL * 6, async {
            tokio::join!(
                follow(coord.clone(), &acls_a, &creds_a, rx.clone()),
                follow(coord.clone(), &acls_b, &creds_b, rx.clone()),
                body
            )
        })
        .await
        .expect("the test finishes");
    }
}
