//! The consumer-group APIs, forwarded to the coordinator.
//!
//! Decoded requests share the request frame's buffer: a `Bytes` field is a
//! view into it. The coordinator keeps JoinGroup metadata and SyncGroup
//! assignments for as long as a member lives, so those are copied out first
//! ([`detach`]); otherwise a few bytes of metadata would pin a whole frame
//! (up to `socket-request-max-bytes`) per member.

use std::sync::Arc;

use bytes::Bytes;
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
    let req = detach(req);
    if let Some(refused) = not_coordinator(b, &req) {
        return async move { Some(refused) }.boxed();
    }
    let g = b.groups.clone();
    let client = ClientInfo {
        client_id,
        client_host: format!("/{}", conn.peer.ip()),
    };
    async move {
        Some(match req {
            RequestKind::JoinGroup(r) => {
                ResponseKind::JoinGroup(g.join_group_with_client(r, v, client).await)
            }
            RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(g.sync_group(r, v).await),
            RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(g.heartbeat(r, v).await),
            RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(g.leave_group(r, v).await),
            RequestKind::ListGroups(r) => ResponseKind::ListGroups(g.list_groups(r, v)),
            RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(g.describe_groups(r, v)),
            RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(g.offset_commit(r, v).await),
            RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(g.offset_fetch(r, v)),
            RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(g.delete_groups(r).await),
            RequestKind::OffsetDelete(r) => ResponseKind::OffsetDelete(g.offset_delete(r).await),
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

/// In a cluster, NOT_COORDINATOR for a group another node coordinates now
/// (the nodes changed since the client's FindCoordinator): the client looks
/// the coordinator up again. Offsets are shared, so nothing is lost.
fn not_coordinator(b: &Broker, req: &RequestKind) -> Option<ResponseKind> {
    use kafka_protocol::messages::offset_commit_response::{
        OffsetCommitResponsePartition, OffsetCommitResponseTopic,
    };
    use kafka_protocol::messages::{
        HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse, OffsetCommitResponse,
        SyncGroupResponse,
    };
    use kafka_protocol::ResponseError;
    let cluster = b.cluster.as_ref()?;
    let group = match req {
        RequestKind::JoinGroup(r) => &r.group_id,
        RequestKind::SyncGroup(r) => &r.group_id,
        RequestKind::Heartbeat(r) => &r.group_id,
        RequestKind::LeaveGroup(r) => &r.group_id,
        RequestKind::OffsetCommit(r) => &r.group_id,
        _ => return None,
    };
    let owner = cluster.group_coordinator(group.as_str())?;
    if owner.node_id == b.settings.server.node_id {
        return None;
    }
    let code = ResponseError::NotCoordinator.code();
    Some(match req {
        RequestKind::JoinGroup(_) => {
            ResponseKind::JoinGroup(JoinGroupResponse::default().with_error_code(code))
        }
        RequestKind::SyncGroup(_) => {
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(code))
        }
        RequestKind::Heartbeat(_) => {
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code))
        }
        RequestKind::LeaveGroup(_) => {
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(code))
        }
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(
            OffsetCommitResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        OffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        _ => return None,
    })
}

/// `req` with the byte fields the coordinator keeps copied out of the
/// request frame, so that the frame is freed once the request is handled.
fn detach(req: RequestKind) -> RequestKind {
    match req {
        RequestKind::JoinGroup(mut r) => {
            for p in &mut r.protocols {
                p.metadata = Bytes::copy_from_slice(&p.metadata);
            }
            RequestKind::JoinGroup(r)
        }
        RequestKind::SyncGroup(mut r) => {
            for a in &mut r.assignments {
                a.assignment = Bytes::copy_from_slice(&a.assignment);
            }
            RequestKind::SyncGroup(r)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::{JoinGroupRequest, SyncGroupRequest};

    fn inside(part: &Bytes, frame: &Bytes) -> bool {
        let start = frame.as_ptr() as usize;
        let p = part.as_ptr() as usize;
        p >= start && p < start + frame.len()
    }

    #[test]
    fn kept_group_bytes_do_not_share_the_request_frame() {
        let frame = Bytes::from(vec![7u8; 1 << 20]);
        let join = JoinGroupRequest::default().with_protocols(vec![
            JoinGroupRequestProtocol::default().with_metadata(frame.slice(10..20)),
        ]);
        let sync = SyncGroupRequest::default().with_assignments(vec![
            SyncGroupRequestAssignment::default().with_assignment(frame.slice(30..40)),
        ]);
        match detach(RequestKind::JoinGroup(join)) {
            RequestKind::JoinGroup(r) => {
                let m = &r.protocols[0].metadata;
                assert_eq!(m.as_ref(), &[7u8; 10]);
                assert!(!inside(m, &frame), "metadata still points into the frame");
            }
            other => panic!("unexpected {other:?}"),
        }
        match detach(RequestKind::SyncGroup(sync)) {
            RequestKind::SyncGroup(r) => {
                let a = &r.assignments[0].assignment;
                assert_eq!(a.as_ref(), &[7u8; 10]);
                assert!(!inside(a, &frame), "assignment still points into the frame");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
