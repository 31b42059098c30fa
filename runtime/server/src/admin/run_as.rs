//! Detectors under ACLs (issue 13, must-have 4): a deployment or replay
//! records the principal that created it and is refused unless that
//! principal may READ every input and WRITE every topic the deployment
//! writes (alerts, dead letters).
//!
//! The principal is the admin API user (`admin-auth`). Without
//! `admin-auth` the admin API is open, so whoever reaches it is trusted as
//! before: the deployment is recorded as the first `--superuser` (or
//! `User:ANONYMOUS` if none is configured) and no ACL is checked. With
//! `--authorizer off` nothing is checked either.

use axum::http::StatusCode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use vigil_api::ErrorKind;
use vigil_auth::acl::Operation;

use super::error::ApiError;
use super::AdminState;
use crate::metrics::DenialLabel;

/// The admin API user of a request, put there by the `admin-auth`
/// middleware.
#[derive(Debug, Clone)]
pub struct AdminPrincipal {
    /// `User:NAME`.
    pub principal: String,
    /// The client's IP address (for host-restricted ACLs).
    pub host: String,
}

/// The principal a new deployment runs as; `Err(403)` naming the topic and
/// operation it may not do.
pub(super) fn run_as(
    s: &AdminState,
    who: Option<&AdminPrincipal>,
    reads: &[String],
    writes: &[String],
) -> Result<String, ApiError> {
    let (Some(security), Some(who)) = (&s.auth, who) else {
        let first = s
            .auth
            .as_ref()
            .and_then(|sec| sec.settings().superuser.first().cloned());
        return Ok(first.map_or_else(
            || crate::security::ANONYMOUS.to_string(),
            |u| format!("User:{u}"),
        ));
    };
    // Denials here are answered 403 and counted by the admin request
    // metrics; the Kafka-side counter is not shared with this path.
    let uncounted = Family::<DenialLabel, Counter>::default();
    let check = security
        .authz
        .check(&who.principal, who.host.clone(), &uncounted);
    let wanted = reads
        .iter()
        .map(|t| (Operation::Read, t))
        .chain(writes.iter().map(|t| (Operation::Write, t)));
    for (op, topic) in wanted {
        if !check.topic(op, topic) {
            return Err(ApiError::with_status(
                StatusCode::FORBIDDEN,
                ErrorKind::Invalid,
                format!(
                    "{} may not {} topic {topic:?}: a deployment runs as the principal that creates it (grant the ACL, or ask a super user)",
                    who.principal,
                    op.name()
                ),
            ));
        }
    }
    Ok(who.principal.clone())
}
