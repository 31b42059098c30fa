//! ACL enforcement on the Kafka APIs (`--authorizer on`; issue 13,
//! docs/design/0015-security.md "ACLs"), in front of the handlers so that
//! they stay unaware of it.
//!
//! [`gate`] looks at a decoded request before it is dispatched. A request
//! the principal may not make at all is answered here with the API's
//! authorization error ([`Gated::Answer`]). A request naming several
//! resources (topics, groups, config resources) loses the denied ones
//! before dispatch, and a [`Fixup`] adds their error entries to the
//! handler's response, as Kafka answers a partly authorized request.
//! Listings (Metadata for all topics, ListGroups, OffsetFetch for all
//! topics) are filtered afterwards: what may not be described is left out.
//!
//! The operations per API are Kafka's (`KafkaApis`): Produce WRITE, Fetch
//! READ, ListOffsets/Metadata/OffsetForLeaderEpoch DESCRIBE on topics;
//! group membership READ, DescribeGroups/OffsetFetch DESCRIBE,
//! DeleteGroups DELETE on groups; CreateTopics CREATE (cluster or topic),
//! DeleteTopics/DeleteRecords DELETE, CreatePartitions ALTER, configs
//! DESCRIBE_CONFIGS/ALTER_CONFIGS; DescribeLogDirs DESCRIBE and SCRAM
//! management DESCRIBE/ALTER on the cluster; InitProducerId WRITE on the
//! transactional id, or for idempotence IDEMPOTENT_WRITE on the cluster or
//! WRITE on some topic.

use std::sync::Arc;

use kafka_protocol::messages::{RequestKind, ResponseKind, TopicName};
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::connection::ConnInfo;
use crate::security::Check;

mod admin;
mod groups;
mod ops;
mod topics;

/// Adds the denied parts' error entries to a handler's response, or
/// filters out what may not be seen.
pub(crate) type Fixup = Box<dyn FnOnce(ResponseKind) -> ResponseKind + Send>;

/// What the gate decided.
pub(crate) enum Gated {
    /// Dispatch this (possibly reduced) request; apply the fixup to its
    /// response.
    Pass(RequestKind, Option<Fixup>),
    /// Answer this instead of dispatching.
    Answer(ResponseKind),
}

/// A fixup for one response kind: `$f` maps the typed response.
macro_rules! fixup {
    ($kind:ident, $f:expr) => {{
        let f = $f;
        Some(
            Box::new(move |r: kafka_protocol::messages::ResponseKind| match r {
                kafka_protocol::messages::ResponseKind::$kind(x) => {
                    kafka_protocol::messages::ResponseKind::$kind(f(x))
                }
                other => other,
            }) as $crate::handlers::authz::Fixup,
        )
    }};
}
pub(crate) use fixup;

/// The error code of a denial on a topic.
pub(crate) const TOPIC_DENIED: i16 = ResponseError::TopicAuthorizationFailed.code();
/// The error code of a denial on a group.
pub(crate) const GROUP_DENIED: i16 = ResponseError::GroupAuthorizationFailed.code();
/// The error code of a denial on the cluster.
pub(crate) const CLUSTER_DENIED: i16 = ResponseError::ClusterAuthorizationFailed.code();
/// The error code of a denial on a transactional id.
pub(crate) const TXN_DENIED: i16 = ResponseError::TransactionalIdAuthorizationFailed.code();

/// The authorization decisions for a connection's principal.
pub(crate) fn check<'a>(b: &'a Broker, conn: &'a ConnInfo) -> Check<'a> {
    b.security.authz.check(
        &conn.principal,
        conn.peer.ip().to_string(),
        &b.metrics.authz_denied,
    )
}

/// Splits `items` into the allowed and the denied ones, in order.
pub(crate) fn split<T>(items: Vec<T>, mut allowed: impl FnMut(&T) -> bool) -> (Vec<T>, Vec<T>) {
    items.into_iter().partition(|t| allowed(t))
}

/// Denied topics with the partitions the request named.
pub(crate) type Denied = Vec<(TopicName, Vec<i32>)>;

/// Removes the topic entries of a request the principal may not act on;
/// returns them as `key` makes them (topic, partitions).
pub(crate) fn take_denied<T>(
    items: &mut Vec<T>,
    allowed: impl FnMut(&T) -> bool,
    key: impl Fn(T) -> (TopicName, Vec<i32>),
) -> Denied {
    let (keep, out) = split(std::mem::take(items), allowed);
    *items = keep;
    out.into_iter().map(key).collect()
}

/// Response entries for denied topics: `topic(name, its partitions)`, each
/// partition made by `partition(index)`.
pub(crate) fn entries<T, P>(
    denied: Denied,
    topic: impl Fn(TopicName, Vec<P>) -> T,
    partition: impl Fn(i32) -> P,
) -> impl Iterator<Item = T> {
    denied
        .into_iter()
        .map(move |(name, parts)| topic(name, parts.into_iter().map(&partition).collect()))
}

/// Decides `body` for the connection's principal (see the module doc), and
/// fills the `*_authorized_operations` fields the request asks for
/// (whether or not ACLs are enforced, see `ops`).
pub(crate) fn gate(b: &Arc<Broker>, body: RequestKind, v: i16, conn: &ConnInfo) -> Gated {
    let ops = ops::fixup(b, &body, v, conn);
    match enforce(b, body, v, conn) {
        Gated::Pass(body, fix) => Gated::Pass(body, then(fix, ops)),
        answer => answer,
    }
}

/// `first`, then `second`.
fn then(first: Option<Fixup>, second: Option<Fixup>) -> Option<Fixup> {
    match (first, second) {
        (Some(a), Some(b)) => Some(Box::new(move |r| b(a(r)))),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The ACL part of [`gate`].
fn enforce(b: &Arc<Broker>, body: RequestKind, v: i16, conn: &ConnInfo) -> Gated {
    if !b.security.authz.enabled() {
        return Gated::Pass(body, None);
    }
    let c = check(b, conn);
    if c.bypass() {
        return Gated::Pass(body, None);
    }
    match body {
        RequestKind::Produce(r) => topics::produce(&c, r),
        RequestKind::Fetch(r) => topics::fetch(&c, r),
        RequestKind::ListOffsets(r) => topics::list_offsets(&c, r),
        RequestKind::OffsetForLeaderEpoch(r) => topics::leader_epoch(&c, r),
        RequestKind::DescribeProducers(r) => topics::describe_producers(&c, r),
        RequestKind::DeleteRecords(r) => topics::delete_records(&c, r),
        RequestKind::Metadata(r) => topics::metadata(b, &c, r, v, conn),
        RequestKind::CreateTopics(r) => admin::create_topics(&c, r),
        RequestKind::DeleteTopics(r) => admin::delete_topics(b, &c, r),
        RequestKind::CreatePartitions(r) => admin::create_partitions(&c, r),
        RequestKind::DescribeConfigs(r) => admin::describe_configs(&c, r),
        RequestKind::AlterConfigs(r) => admin::alter_configs(&c, r),
        RequestKind::IncrementalAlterConfigs(r) => admin::incremental_alter_configs(&c, r),
        RequestKind::DescribeLogDirs(r) => admin::describe_log_dirs(&c, r, v),
        RequestKind::InitProducerId(r) => admin::init_producer_id(&c, r),
        RequestKind::AlterUserScramCredentials(r) => admin::alter_scram(&c, r),
        RequestKind::DescribeUserScramCredentials(r) => admin::describe_scram(&c, r),
        RequestKind::FindCoordinator(r) => groups::find_coordinator(&c, r, v),
        RequestKind::JoinGroup(r) => groups::join(&c, r),
        RequestKind::SyncGroup(r) => groups::sync(&c, r),
        RequestKind::Heartbeat(r) => groups::heartbeat(&c, r),
        RequestKind::LeaveGroup(r) => groups::leave(&c, r),
        RequestKind::OffsetCommit(r) => groups::offset_commit(&c, r),
        RequestKind::OffsetFetch(r) => groups::offset_fetch(b, &c, r, v, conn),
        RequestKind::OffsetDelete(r) => groups::offset_delete(&c, r),
        RequestKind::DescribeGroups(r) => groups::describe(&c, r),
        RequestKind::ListGroups(r) => groups::list(b, &c, r, conn),
        RequestKind::DeleteGroups(r) => groups::delete(&c, r),
        // ApiVersions, SASL, DescribeCluster: no ACL (as in Kafka); the ACL
        // APIs check the cluster themselves (handlers/acls.rs).
        other => Gated::Pass(other, None),
    }
}

/// Runs `f` with the decisions of a connection's principal, for fixups
/// that filter a response after the handler ran (they outlive the
/// request's borrows, so they own what they need).
pub(crate) struct Later {
    b: Arc<Broker>,
    principal: String,
    host: String,
}

impl Later {
    pub(crate) fn new(b: &Arc<Broker>, conn: &ConnInfo) -> Later {
        Later {
            b: b.clone(),
            principal: conn.principal.clone(),
            host: conn.peer.ip().to_string(),
        }
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&Check<'_>) -> R) -> R {
        let c = self.b.security.authz.check(
            &self.principal,
            self.host.clone(),
            &self.b.metrics.authz_denied,
        );
        f(&c)
    }
}
