//! Running deployments under ACLs (issue 13, must-have 4): a deployment
//! may read only topics its principal may read and write only topics it
//! may write, after it was created too. Its principal's ACLs are checked
//! again whenever the bindings change (a grant revoked through any broker
//! of a cluster arrives through the watch, see `cluster/security.rs`), and
//! every [`RECHECK_EVERY`] as a safety net; a deployment that may no
//! longer do what it does is stopped as failed, with a status error naming
//! principal, operation and topic. `resume` (a super user's) restarts it
//! once the ACL is back; it is stopped again if it is not.
//!
//! Host-restricted ACLs: a deployment runs in the broker, not from a client
//! address, so it is stopped only when no host would be allowed (a grant
//! for one host keeps it; a deny for one host does not stop it).
//! Deployments made before ACLs (no principal) and super users' are not
//! checked; neither is anything with `--authorizer off`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::watch;
use vigil_auth::acl::{AclBinding, Operation, WILDCARD};
use vigil_engine::Grant;

use super::Authorizer;
use crate::broker::Broker;
use crate::metrics::DenialLabel;

/// How often running deployments are checked without an ACL change.
pub const RECHECK_EVERY: Duration = Duration::from_secs(30);

/// Re-checks running deployments on every ACL change and every
/// [`RECHECK_EVERY`], until shutdown.
pub async fn follow(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    if !broker.security.authz.enabled() {
        return;
    }
    let mut changes = broker.security.authz.acls.subscribe();
    loop {
        recheck(&broker).await;
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(RECHECK_EVERY) => {}
            _ = crate::server::until_shutdown(&mut shutdown) => return,
        }
    }
}

/// Stops every running deployment whose principal may no longer do what
/// it does; returns how many were stopped.
pub async fn recheck(broker: &Broker) -> usize {
    let authz = &broker.security.authz;
    let mut stopped = 0;
    for grant in broker.detectors.grants() {
        let Some(why) = lost(authz, &grant) else {
            continue;
        };
        match broker.detectors.revoke(&grant.deployment, why).await {
            Ok(_) => stopped += 1,
            // Retried on the next change or tick.
            Err(e) => tracing::warn!(deployment = %grant.deployment, error = %e,
                "cannot stop a deployment whose principal lost an ACL"),
        }
    }
    stopped
}

/// Why `grant`'s deployment may not go on (`None`: it may).
pub fn lost(authz: &Authorizer, grant: &Grant) -> Option<String> {
    let principal = grant.principal.as_deref()?;
    if !authz.enabled() || authz.is_super_user(principal) {
        return None;
    }
    let bindings = authz.acls.snapshot();
    let hosts = hosts(&bindings, principal);
    // Not counted as Kafka request denials, nor logged per check: the
    // revoke logs once.
    let uncounted = Family::<DenialLabel, Counter>::default();
    let wanted = grant
        .reads
        .iter()
        .map(|t| (Operation::Read, t))
        .chain(grant.writes.iter().map(|t| (Operation::Write, t)));
    for (op, topic) in wanted {
        let somewhere = hosts.iter().any(|h| {
            authz.check(principal, h.clone(), &uncounted).can_quietly(
                op,
                vigil_auth::acl::ResourceType::Topic,
                topic,
            )
        });
        if !somewhere {
            return Some(format!(
                "principal {principal} may no longer {} topic {topic:?}: a deployment runs under its creator's ACLs (grant the ACL again, then resume it)",
                op.name()
            ));
        }
    }
    None
}

/// Hosts that decide differently for `principal`: each host its bindings
/// name, and one no binding names.
fn hosts(bindings: &[AclBinding], principal: &str) -> Vec<String> {
    let mut hosts: Vec<String> = bindings
        .iter()
        .filter(|b| b.host != WILDCARD && b.applies_to(principal, &b.host))
        .map(|b| b.host.clone())
        .collect();
    hosts.sort();
    hosts.dedup();
    // No address is empty: this one matches only `*` bindings.
    hosts.push(String::new());
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::AclStore;
    use vigil_auth::acl::{PatternType, Permission, ResourceType};

    fn acl(op: Operation, topic: &str, host: &str, permission: Permission) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: topic.into(),
            pattern_type: PatternType::Literal,
            principal: "User:alice".into(),
            host: host.into(),
            operation: op,
            permission,
        }
    }

    #[tokio::test]
    async fn a_deployment_loses_its_grant_only_when_no_host_keeps_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, kv) = crate::security::store::test_store(dir.path()).await;
        let acls = AclStore::load(kv).await.expect("load");
        let changes = acls.subscribe();
        acls.create(vec![
            acl(Operation::Read, "in", "10.0.0.7", Permission::Allow),
            acl(Operation::Write, "out", "*", Permission::Allow),
        ])
        .await
        .expect("grant");
        assert!(changes.has_changed().expect("open"), "a grant is a change");
        let authz = Authorizer::new(true, vec!["admin".into()], acls);
        let grant = Grant {
            deployment: "d".into(),
            principal: Some("User:alice".into()),
            reads: vec!["in".into()],
            writes: vec!["out".into()],
        };
        // READ from one host only: kept.
        assert_eq!(lost(&authz, &grant), None);
        // A deny for one host does not stop it either.
        authz
            .acls
            .create(vec![acl(
                Operation::Write,
                "out",
                "10.0.0.9",
                Permission::Deny,
            )])
            .await
            .expect("deny one host");
        assert_eq!(lost(&authz, &grant), None);
        // Denied everywhere: stopped, naming principal, operation, topic.
        authz
            .acls
            .create(vec![acl(Operation::Write, "out", "*", Permission::Deny)])
            .await
            .expect("deny");
        let why = lost(&authz, &grant).expect("lost");
        assert!(
            why.starts_with("principal User:alice may no longer WRITE topic \"out\""),
            "{why}"
        );
        // Super users and deployments without a principal are not checked.
        let admin = Grant {
            principal: Some("User:admin".into()),
            ..grant.clone()
        };
        assert_eq!(lost(&authz, &admin), None);
        let old = Grant {
            principal: None,
            ..grant
        };
        assert_eq!(lost(&authz, &old), None);
        log.close().await;
    }
}
