//! An ACL or credential change whose caller stops waiting (its client hung
//! up, so the connection dropped the request's future) must still reach
//! the cache once the store took it: the store is only read again at the
//! next start, so the broker would enforce other ACLs and logins than it
//! lists and stores until then (docs/design/0021).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::Notify;
use vigil_auth::acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};
use vigil_auth::{Credential, Mechanism};

use super::acls::AclStore;
use super::credentials::CredentialStore;
use super::store::{SecurityStore, StoreError};

/// A store that takes each write at once (counts it) but answers it only
/// when its gate is opened, like a write-ahead log that took a record and
/// has not synced it yet.
#[derive(Default)]
struct Gated {
    taken: parking_lot::Mutex<usize>,
    gate: Notify,
}

impl SecurityStore for Gated {
    fn list<'a>(
        &'a self,
        _prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>> {
        futures::future::ready(Ok(Vec::new())).boxed()
    }

    fn put(
        &self,
        _entries: Vec<(String, Option<String>)>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        *self.taken.lock() += 1;
        async move {
            self.gate.notified().await;
            Ok(())
        }
        .boxed()
    }

    fn put_if_absent(
        &self,
        _key: String,
        _value: String,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        futures::future::ready(Ok(true)).boxed()
    }
}

/// Polls `request` until it waits and drops it, as the connection does
/// with the answers of a client that hung up.
async fn abandon(request: impl Future) {
    let mut request = std::pin::pin!(request);
    assert!(
        futures::poll!(request.as_mut()).is_pending(),
        "the change finished before the store answered"
    );
}

/// Polls `cond` until it holds; fails after 5 s.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Lets the store answer its `n`th write, once it has it.
async fn answer(store: &Gated, n: usize) {
    until("the write to reach the store", || *store.taken.lock() == n).await;
    store.gate.notify_one();
}

fn binding(name: &str) -> AclBinding {
    AclBinding {
        resource_type: ResourceType::Topic,
        resource_name: name.into(),
        pattern_type: PatternType::Literal,
        principal: "User:a".into(),
        host: "*".into(),
        operation: Operation::Read,
        permission: Permission::Deny,
    }
}

#[tokio::test]
async fn acl_changes_whose_client_hangs_up_reach_the_cache() {
    let store = Arc::new(Gated::default());
    let acls = AclStore::load(store.clone()).await.expect("load");

    abandon(acls.create(vec![binding("a")])).await;
    answer(&store, 1).await;
    until("the created binding to be in effect", || {
        acls.snapshot().as_slice() == [binding("a")]
    })
    .await;

    let filter = AclFilter {
        resource_name: Some("a".into()),
        ..AclFilter::default()
    };
    abandon(acls.delete(&[filter])).await;
    answer(&store, 2).await;
    until("the deleted binding to be gone", || {
        acls.snapshot().is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_credential_change_whose_client_hangs_up_reaches_memory() {
    let store = Arc::new(Gated::default());
    let creds = CredentialStore::load(store.clone()).await.expect("load");
    let cred = Credential::new(Mechanism::ScramSha256, "secret", 4096).expect("credential");

    abandon(creds.apply(vec![("u".into(), Mechanism::ScramSha256, Some(cred))])).await;
    answer(&store, 1).await;
    until("the credential to log in", || creds.any("u").is_some()).await;

    abandon(creds.apply(vec![("u".into(), Mechanism::ScramSha256, None)])).await;
    answer(&store, 2).await;
    until("the deleted credential to stop logging in", || {
        creds.any("u").is_none()
    })
    .await;
}
