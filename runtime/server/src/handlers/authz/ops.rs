//! The `*_authorized_operations` bit sets a client may ask for: Metadata
//! v8+ (per topic; for the cluster in v8–10), DescribeCluster and
//! DescribeGroups v3+. Each is Kafka's `authorizedOperations`: bit `code`
//! set for every operation the resource type supports that the principal
//! may do, decided quietly (no denial is counted or logged, as in Kafka).
//! With `--authorizer off`, or for a super user, every supported operation.
//! Entries answered with an authorization error keep the "not provided"
//! value (`i32::MIN`).

use std::sync::Arc;

use kafka_protocol::messages::{
    DescribeClusterResponse, DescribeGroupsResponse, MetadataResponse, RequestKind,
};
use vigil_auth::acl::{Operation, ResourceType, CLUSTER_NAME};

use super::{fixup, Fixup, Later, GROUP_DENIED, TOPIC_DENIED};
use crate::broker::Broker;
use crate::connection::ConnInfo;
use crate::security::Check;

/// What can be done to a topic (Kafka's `AclEntry.supportedOperations`).
const TOPIC_OPS: [Operation; 8] = [
    Operation::Read,
    Operation::Write,
    Operation::Create,
    Operation::Describe,
    Operation::Delete,
    Operation::Alter,
    Operation::DescribeConfigs,
    Operation::AlterConfigs,
];

/// What can be done to a group.
const GROUP_OPS: [Operation; 3] = [Operation::Read, Operation::Describe, Operation::Delete];

/// What can be done to the cluster.
const CLUSTER_OPS: [Operation; 7] = [
    Operation::Create,
    Operation::ClusterAction,
    Operation::DescribeConfigs,
    Operation::AlterConfigs,
    Operation::IdempotentWrite,
    Operation::Alter,
    Operation::Describe,
];

/// The bit set of `ops` the principal may do on `name`.
fn bits(c: &Check<'_>, ty: ResourceType, name: &str, ops: &[Operation]) -> i32 {
    ops.iter()
        .filter(|op| c.can_quietly(**op, ty, name))
        .fold(0, |acc, op| acc | (1 << op.code()))
}

fn cluster_bits(c: &Check<'_>) -> i32 {
    bits(c, ResourceType::Cluster, CLUSTER_NAME, &CLUSTER_OPS)
}

/// The fixup filling the fields `body` asks for, if it asks for any.
pub(super) fn fixup(b: &Arc<Broker>, body: &RequestKind, v: i16, conn: &ConnInfo) -> Option<Fixup> {
    match body {
        RequestKind::Metadata(r) if v >= 8 => {
            // The cluster field left the response in v11 (KIP-700).
            let cluster = r.include_cluster_authorized_operations && v <= 10;
            let topics = r.include_topic_authorized_operations;
            if !cluster && !topics {
                return None;
            }
            let later = Later::new(b, conn);
            fixup!(Metadata, move |mut resp: MetadataResponse| {
                later.with(|c| {
                    if cluster {
                        resp.cluster_authorized_operations = cluster_bits(c);
                    }
                    if topics {
                        for t in resp
                            .topics
                            .iter_mut()
                            .filter(|t| t.error_code != TOPIC_DENIED)
                        {
                            let name = t.name.as_ref().map_or("", |n| n.0.as_str());
                            t.topic_authorized_operations =
                                bits(c, ResourceType::Topic, name, &TOPIC_OPS);
                        }
                    }
                });
                resp
            })
        }
        RequestKind::DescribeCluster(r) if r.include_cluster_authorized_operations => {
            let later = Later::new(b, conn);
            fixup!(DescribeCluster, move |mut resp: DescribeClusterResponse| {
                resp.cluster_authorized_operations = later.with(cluster_bits);
                resp
            })
        }
        RequestKind::DescribeGroups(r) if v >= 3 && r.include_authorized_operations => {
            let later = Later::new(b, conn);
            fixup!(DescribeGroups, move |mut resp: DescribeGroupsResponse| {
                later.with(|c| {
                    for g in resp
                        .groups
                        .iter_mut()
                        .filter(|g| g.error_code != GROUP_DENIED)
                    {
                        g.authorized_operations =
                            bits(c, ResourceType::Group, &g.group_id.0, &GROUP_OPS);
                    }
                });
                resp
            })
        }
        _ => None,
    }
}
