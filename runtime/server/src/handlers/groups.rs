//! The consumer-group APIs, forwarded to the coordinator.

use std::sync::Arc;

use futures::FutureExt;
use kafka_protocol::messages::{RequestKind, ResponseKind};

use super::Pending;
use crate::broker::Broker;
use crate::connection::ConnInfo;
use vigil_groups::ClientInfo;

pub(super) fn dispatch(
    b: &Arc<Broker>,
    req: RequestKind,
    v: i16,
    client_id: String,
    conn: &ConnInfo,
) -> Pending {
    let g = b.groups.clone();
    let client = ClientInfo {
        client_id,
        client_host: format!("/{}", conn.peer.ip()),
    };
    async move {
        Some(match req {
            RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(g.join_group_with_client(r, v, client).await),
            RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(g.sync_group(r, v).await),
            RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(g.heartbeat(r, v).await),
            RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(g.leave_group(r, v).await),
            RequestKind::ListGroups(r) => ResponseKind::ListGroups(g.list_groups(r, v)),
            RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(g.describe_groups(r, v)),
            RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(g.offset_commit(r, v).await),
            RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(g.offset_fetch(r, v)),
            other => {
                // decode_request only lets served APIs through, and every
                // served API has a handler; reaching here is a broker bug.
                tracing::error!(request = ?std::mem::discriminant(&other), "no handler for a served API");
                return None;
            }
        })
    }
    .boxed()
}
