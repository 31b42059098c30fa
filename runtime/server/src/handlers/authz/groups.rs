//! ACLs on the consumer group APIs and FindCoordinator.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, RequestKind, ResponseKind, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use vigil_auth::acl::{Operation, ResourceType};

use super::{
    entries, fixup, split, take_denied, Denied, Gated, Later, GROUP_DENIED, TOPIC_DENIED,
    TXN_DENIED,
};
use crate::broker::Broker;
use crate::connection::ConnInfo;
use crate::handlers::msg;
use crate::security::Check;

/// FindCoordinator key types.
const KEY_GROUP: i8 = 0;

/// Whether the principal may DESCRIBE the coordinator key, and the error
/// code if not.
fn coordinator_key(c: &Check<'_>, key_type: i8, key: &str) -> Result<(), i16> {
    if key_type == KEY_GROUP {
        c.group(Operation::Describe, key)
            .then_some(())
            .ok_or(GROUP_DENIED)
    } else {
        c.can(Operation::Describe, ResourceType::TransactionalId, key)
            .then_some(())
            .ok_or(TXN_DENIED)
    }
}

pub(super) fn find_coordinator(c: &Check<'_>, mut r: FindCoordinatorRequest, v: i16) -> Gated {
    if v < 4 {
        return match coordinator_key(c, r.key_type, &r.key) {
            Ok(()) => Gated::Pass(RequestKind::FindCoordinator(r), None),
            Err(code) => {
                let resp = FindCoordinatorResponse::default()
                    .with_error_code(code)
                    .with_node_id(BrokerId(-1))
                    .with_port(-1);
                let resp = if v >= 1 {
                    resp.with_error_message(msg("not authorized to DESCRIBE the coordinator key"))
                } else {
                    resp
                };
                Gated::Answer(ResponseKind::FindCoordinator(resp))
            }
        };
    }
    let ty = r.key_type;
    let mut denied = Vec::new();
    r.coordinator_keys
        .retain(|k| match coordinator_key(c, ty, k) {
            Ok(()) => true,
            Err(code) => {
                denied.push((k.clone(), code));
                false
            }
        });
    if denied.is_empty() {
        return Gated::Pass(RequestKind::FindCoordinator(r), None);
    }
    let f = fixup!(FindCoordinator, move |mut resp: FindCoordinatorResponse| {
        for (key, code) in denied {
            resp.coordinators.push(
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(code),
            );
        }
        resp
    });
    Gated::Pass(RequestKind::FindCoordinator(r), f)
}

/// Group membership: READ on the group, else the API's response with
/// GROUP_AUTHORIZATION_FAILED.
macro_rules! membership {
    ($name:ident, $kind:ident, $req:ident, $resp:ident) => {
        pub(super) fn $name(c: &Check<'_>, r: $req) -> Gated {
            if c.group(Operation::Read, &r.group_id.0) {
                Gated::Pass(RequestKind::$kind(r), None)
            } else {
                Gated::Answer(ResponseKind::$kind(
                    $resp::default().with_error_code(GROUP_DENIED),
                ))
            }
        }
    };
}

membership!(join, JoinGroup, JoinGroupRequest, JoinGroupResponse);
membership!(sync, SyncGroup, SyncGroupRequest, SyncGroupResponse);
membership!(heartbeat, Heartbeat, HeartbeatRequest, HeartbeatResponse);
membership!(leave, LeaveGroup, LeaveGroupRequest, LeaveGroupResponse);

pub(super) fn offset_commit(c: &Check<'_>, mut r: OffsetCommitRequest) -> Gated {
    let group_ok = c.group(Operation::Read, &r.group_id.0);
    let denied = take_denied(
        &mut r.topics,
        |t| group_ok && c.topic(Operation::Read, &t.name.0),
        |t| {
            (
                t.name,
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        },
    );
    let code = if group_ok { TOPIC_DENIED } else { GROUP_DENIED };
    let add = move |mut resp: OffsetCommitResponse| {
        resp.topics.extend(entries(
            denied,
            |name, parts| {
                OffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(parts)
            },
            |i| {
                OffsetCommitResponsePartition::default()
                    .with_partition_index(i)
                    .with_error_code(code)
            },
        ));
        resp
    };
    if !group_ok {
        return Gated::Answer(ResponseKind::OffsetCommit(add(
            OffsetCommitResponse::default(),
        )));
    }
    Gated::Pass(RequestKind::OffsetCommit(r), fixup!(OffsetCommit, add))
}

pub(super) fn offset_delete(c: &Check<'_>, mut r: OffsetDeleteRequest) -> Gated {
    if !c.group(Operation::Delete, &r.group_id.0) {
        return Gated::Answer(ResponseKind::OffsetDelete(
            OffsetDeleteResponse::default().with_error_code(GROUP_DENIED),
        ));
    }
    let denied = take_denied(
        &mut r.topics,
        |t| c.topic(Operation::Read, &t.name.0),
        |t| {
            (
                t.name,
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        },
    );
    if denied.is_empty() {
        return Gated::Pass(RequestKind::OffsetDelete(r), None);
    }
    let f = fixup!(OffsetDelete, move |mut resp: OffsetDeleteResponse| {
        resp.topics.extend(entries(
            denied,
            |name, parts| {
                OffsetDeleteResponseTopic::default()
                    .with_name(name)
                    .with_partitions(parts)
            },
            |i| {
                OffsetDeleteResponsePartition::default()
                    .with_partition_index(i)
                    .with_error_code(TOPIC_DENIED)
            },
        ));
        resp
    });
    Gated::Pass(RequestKind::OffsetDelete(r), f)
}

/// OffsetFetch: DESCRIBE on the group (else GROUP_AUTHORIZATION_FAILED)
/// and on each topic: a named topic that may not be described answers
/// TOPIC_AUTHORIZATION_FAILED, and "all topics" leaves such topics out.
pub(super) fn offset_fetch(
    b: &Arc<Broker>,
    c: &Check<'_>,
    mut r: OffsetFetchRequest,
    v: i16,
    conn: &ConnInfo,
) -> Gated {
    if v >= 8 {
        return offset_fetch_groups(b, c, r, conn);
    }
    let listed: Option<Denied> = r.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.clone(), t.partition_indexes.clone()))
            .collect()
    });
    let topic = |(name, parts): (TopicName, Vec<i32>), code: i16| {
        OffsetFetchResponseTopic::default()
            .with_name(name)
            .with_partitions(
                parts
                    .into_iter()
                    .map(|i| {
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(i)
                            .with_committed_offset(-1)
                            .with_error_code(code)
                    })
                    .collect(),
            )
    };
    if !c.group(Operation::Describe, &r.group_id.0) {
        let topics = listed
            .unwrap_or_default()
            .into_iter()
            .map(|t| topic(t, GROUP_DENIED))
            .collect();
        return Gated::Answer(ResponseKind::OffsetFetch(
            OffsetFetchResponse::default()
                .with_error_code(GROUP_DENIED)
                .with_topics(topics),
        ));
    }
    let denied: Denied = match r.topics.take() {
        Some(ts) => {
            let (keep, out) = split(ts, |t| c.topic(Operation::Describe, &t.name.0));
            r.topics = Some(keep);
            out.into_iter()
                .map(|t| (t.name, t.partition_indexes))
                .collect()
        }
        None => Vec::new(),
    };
    let later = Later::new(b, conn);
    let f = fixup!(OffsetFetch, move |mut resp: OffsetFetchResponse| {
        later.with(|c| {
            resp.topics
                .retain(|t| c.can_quietly(Operation::Describe, ResourceType::Topic, &t.name.0))
        });
        resp.topics
            .extend(denied.into_iter().map(|t| topic(t, TOPIC_DENIED)));
        resp
    });
    Gated::Pass(RequestKind::OffsetFetch(r), f)
}

/// OffsetFetch v8+: the same per group of the request.
fn offset_fetch_groups(
    b: &Arc<Broker>,
    c: &Check<'_>,
    mut r: OffsetFetchRequest,
    conn: &ConnInfo,
) -> Gated {
    let mut denied_groups: Vec<GroupId> = Vec::new();
    let mut denied_topics: Vec<(GroupId, Denied)> = Vec::new();
    r.groups.retain_mut(|g| {
        if !c.group(Operation::Describe, &g.group_id.0) {
            denied_groups.push(g.group_id.clone());
            return false;
        }
        if let Some(ts) = g.topics.take() {
            let (keep, out) = split(ts, |t| c.topic(Operation::Describe, &t.name.0));
            g.topics = Some(keep);
            if !out.is_empty() {
                denied_topics.push((
                    g.group_id.clone(),
                    out.into_iter()
                        .map(|t| (t.name, t.partition_indexes))
                        .collect(),
                ));
            }
        }
        true
    });
    let later = Later::new(b, conn);
    let f = fixup!(OffsetFetch, move |mut resp: OffsetFetchResponse| {
        later.with(|c| {
            for g in &mut resp.groups {
                g.topics
                    .retain(|t| c.can_quietly(Operation::Describe, ResourceType::Topic, &t.name.0));
            }
        });
        for (group, denied) in denied_topics {
            if let Some(g) = resp.groups.iter_mut().find(|g| g.group_id == group) {
                g.topics.extend(denied.into_iter().map(|(name, parts)| {
                    OffsetFetchResponseTopics::default()
                        .with_name(name)
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|i| {
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(i)
                                        .with_committed_offset(-1)
                                        .with_error_code(TOPIC_DENIED)
                                })
                                .collect(),
                        )
                }));
            }
        }
        resp.groups.extend(denied_groups.into_iter().map(|g| {
            OffsetFetchResponseGroup::default()
                .with_group_id(g)
                .with_error_code(GROUP_DENIED)
        }));
        resp
    });
    Gated::Pass(RequestKind::OffsetFetch(r), f)
}

pub(super) fn describe(c: &Check<'_>, mut r: DescribeGroupsRequest) -> Gated {
    let (keep, denied) = split(std::mem::take(&mut r.groups), |g| {
        c.group(Operation::Describe, &g.0)
    });
    r.groups = keep;
    if denied.is_empty() {
        return Gated::Pass(RequestKind::DescribeGroups(r), None);
    }
    let f = fixup!(DescribeGroups, move |mut resp: DescribeGroupsResponse| {
        resp.groups.extend(denied.into_iter().map(|g| {
            DescribedGroup::default()
                .with_group_id(g)
                .with_error_code(GROUP_DENIED)
        }));
        resp
    });
    Gated::Pass(RequestKind::DescribeGroups(r), f)
}

/// ListGroups: every group with DESCRIBE on the cluster, else the groups
/// the principal may DESCRIBE.
pub(super) fn list(b: &Arc<Broker>, c: &Check<'_>, r: ListGroupsRequest, conn: &ConnInfo) -> Gated {
    if c.can_quietly(
        Operation::Describe,
        ResourceType::Cluster,
        vigil_auth::acl::CLUSTER_NAME,
    ) {
        return Gated::Pass(RequestKind::ListGroups(r), None);
    }
    let later = Later::new(b, conn);
    let f = fixup!(ListGroups, move |mut resp: ListGroupsResponse| {
        later.with(|c| {
            resp.groups
                .retain(|g| c.can_quietly(Operation::Describe, ResourceType::Group, &g.group_id.0))
        });
        resp
    });
    Gated::Pass(RequestKind::ListGroups(r), f)
}

pub(super) fn delete(c: &Check<'_>, mut r: DeleteGroupsRequest) -> Gated {
    let (keep, denied) = split(std::mem::take(&mut r.groups_names), |g| {
        c.group(Operation::Delete, &g.0)
    });
    r.groups_names = keep;
    if denied.is_empty() {
        return Gated::Pass(RequestKind::DeleteGroups(r), None);
    }
    let f = fixup!(DeleteGroups, move |mut resp: DeleteGroupsResponse| {
        resp.results.extend(denied.into_iter().map(|g| {
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(GROUP_DENIED)
        }));
        resp
    });
    Gated::Pass(RequestKind::DeleteGroups(r), f)
}
