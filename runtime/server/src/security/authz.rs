//! The authorizer: Kafka ACLs ([`AclStore`]) applied to a principal, with
//! `--authorizer off` (everything allowed, as before) and super users
//! (always allowed). Denials are counted by the caller's metric and logged,
//! rate-limited per principal, operation and resource type.
//!
//! A [`Check`] takes one snapshot of the bindings, so every decision about
//! one request sees the same ACLs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use vigil_auth::acl::{self, AclBinding, Operation, ResourceType, CLUSTER_NAME};

use super::acls::AclStore;
use crate::metrics::DenialLabel;

/// How often one (principal, operation, resource type) denial is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Most distinct denial keys remembered for rate limiting; when full, the
/// table starts over (so memory stays bounded under a flood of names).
const LOG_KEYS: usize = 10_000;

/// What denials are rate-limited by: principal, operation, resource type.
type DenialKey = (String, Operation, ResourceType);

/// The broker's authorizer.
pub struct Authorizer {
    enabled: bool,
    super_users: Vec<String>,
    /// The ACL bindings.
    pub acls: AclStore,
    logged: Mutex<HashMap<DenialKey, (Instant, u64)>>,
}

impl Authorizer {
    /// An authorizer over `acls`; `enabled` is `--authorizer`; super users
    /// are named as in `--superuser` (without `User:`).
    pub fn new(enabled: bool, super_users: Vec<String>, acls: AclStore) -> Authorizer {
        Authorizer {
            enabled,
            super_users,
            acls,
            logged: Mutex::new(HashMap::new()),
        }
    }

    /// Whether ACLs are enforced (`--authorizer on`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `principal` (`User:NAME`) is a super user.
    pub fn is_super_user(&self, principal: &str) -> bool {
        principal
            .strip_prefix("User:")
            .is_some_and(|name| self.super_users.iter().any(|s| s == name))
    }

    /// Decisions for `principal` connected from `host` (an IP address),
    /// counting denials in `denied`.
    pub fn check<'a>(
        &'a self,
        principal: &'a str,
        host: String,
        denied: &'a Family<DenialLabel, Counter>,
    ) -> Check<'a> {
        let bypass = !self.enabled || self.is_super_user(principal);
        Check {
            authz: self,
            principal,
            host,
            acls: if bypass {
                Arc::new(Vec::new())
            } else {
                self.acls.snapshot()
            },
            bypass,
            denied,
        }
    }

    fn log_denial(&self, principal: &str, host: &str, op: Operation, ty: ResourceType, name: &str) {
        let now = Instant::now();
        let mut logged = self.logged.lock();
        if logged.len() >= LOG_KEYS {
            logged.clear();
        }
        let entry = logged
            .entry((principal.to_string(), op, ty))
            .or_insert((now - LOG_EVERY, 0));
        if now.duration_since(entry.0) >= LOG_EVERY {
            let suppressed = entry.1;
            *entry = (now, 0);
            drop(logged);
            tracing::warn!(
                %principal, %host, operation = op.name(), resource_type = ty.name(),
                resource = %name, suppressed,
                "authorization denied"
            );
        } else {
            entry.1 += 1;
        }
    }
}

/// Authorization decisions for one principal over one snapshot of the ACLs.
pub struct Check<'a> {
    authz: &'a Authorizer,
    principal: &'a str,
    host: String,
    acls: Arc<Vec<AclBinding>>,
    bypass: bool,
    denied: &'a Family<DenialLabel, Counter>,
}

impl Check<'_> {
    /// Whether every decision is "allowed" (authorizer off, or a super
    /// user): callers may skip their filtering.
    pub fn bypass(&self) -> bool {
        self.bypass
    }

    /// The principal decided for.
    pub fn principal(&self) -> &str {
        self.principal
    }

    /// Whether `op` on resource `name` of `ty` is allowed; a denial is
    /// counted and logged.
    pub fn can(&self, op: Operation, ty: ResourceType, name: &str) -> bool {
        let ok = self.can_quietly(op, ty, name);
        if !ok {
            self.record(op, ty, name);
        }
        ok
    }

    /// Like [`can`](Check::can), without counting or logging: for listings
    /// that simply leave out what may not be seen (Kafka does not log
    /// those either).
    pub fn can_quietly(&self, op: Operation, ty: ResourceType, name: &str) -> bool {
        self.bypass || acl::authorize(self.acls.iter(), self.principal, &self.host, op, ty, name)
    }

    /// `op` on topic `name`.
    pub fn topic(&self, op: Operation, name: &str) -> bool {
        self.can(op, ResourceType::Topic, name)
    }

    /// `op` on group `name`.
    pub fn group(&self, op: Operation, name: &str) -> bool {
        self.can(op, ResourceType::Group, name)
    }

    /// `op` on the cluster.
    pub fn cluster(&self, op: Operation) -> bool {
        self.can(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// CREATE on the cluster or on topic `name` (Kafka accepts either for
    /// topic creation).
    pub fn create_topic(&self, name: &str) -> bool {
        self.can_quietly(Operation::Create, ResourceType::Cluster, CLUSTER_NAME)
            || self.topic(Operation::Create, name)
    }

    /// Idempotent produce: IDEMPOTENT_WRITE on the cluster, or WRITE on
    /// some topic (KIP-679).
    pub fn idempotent_write(&self) -> bool {
        let ok = self.can_quietly(
            Operation::IdempotentWrite,
            ResourceType::Cluster,
            CLUSTER_NAME,
        ) || acl::authorize_any(
            &self.acls,
            self.principal,
            &self.host,
            Operation::Write,
            ResourceType::Topic,
        );
        if !ok {
            self.record(
                Operation::IdempotentWrite,
                ResourceType::Cluster,
                CLUSTER_NAME,
            );
        }
        ok
    }

    fn record(&self, op: Operation, ty: ResourceType, name: &str) {
        self.denied
            .get_or_create(&DenialLabel {
                operation: op.name().to_string(),
                resource_type: ty.name().to_string(),
            })
            .inc();
        self.authz
            .log_denial(self.principal, &self.host, op, ty, name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_auth::acl::{PatternType, Permission};

    #[tokio::test]
    async fn off_super_users_and_acls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, kv) = crate::security::store::test_store(dir.path()).await;
        let denied = Family::<DenialLabel, Counter>::default();
        let store = AclStore::load(kv.clone()).await.expect("load");
        store
            .create(vec![AclBinding {
                resource_type: ResourceType::Topic,
                resource_name: "t".into(),
                pattern_type: PatternType::Literal,
                principal: "User:alice".into(),
                host: "*".into(),
                operation: Operation::Write,
                permission: Permission::Allow,
            }])
            .await
            .expect("create");
        let on = Authorizer::new(true, vec!["admin".into()], store);
        let alice = on.check("User:alice", "127.0.0.1".into(), &denied);
        assert!(alice.topic(Operation::Write, "t"));
        assert!(alice.topic(Operation::Describe, "t"));
        assert!(!alice.topic(Operation::Read, "t"));
        assert!(
            alice.idempotent_write(),
            "WRITE on a topic allows idempotence"
        );
        let bob = on.check("User:bob", "127.0.0.1".into(), &denied);
        assert!(!bob.idempotent_write());
        assert!(!bob.cluster(Operation::Alter));
        let label = DenialLabel {
            operation: "ALTER".into(),
            resource_type: "CLUSTER".into(),
        };
        assert_eq!(denied.get_or_create(&label).get(), 1);
        assert!(on
            .check("User:admin", "h".into(), &denied)
            .cluster(Operation::Alter));
        let off = Authorizer::new(false, Vec::new(), AclStore::load(kv).await.expect("load"));
        assert!(off
            .check("User:ANONYMOUS", "h".into(), &denied)
            .topic(Operation::Read, "x"));
        log.close().await;
    }
}
