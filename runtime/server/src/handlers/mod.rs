//! One file per Kafka API (or small family of APIs). `dispatch` runs the
//! order-sensitive part of a request inline and returns the rest as a future.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::{RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use vigil_protocol::Request;

use crate::broker::Broker;
use crate::connection::ConnInfo;

mod acls;
mod alter_configs;
pub(crate) mod authz;
mod cluster;
mod compacted;
mod configs;
mod describe_log;
mod fetch;
mod groups;
mod leader_epoch;
mod list_offsets;
mod metadata;
mod produce;
mod reassign;
mod records;
mod scram_users;
mod topic_configs;
mod topics;

/// The rest of a request: resolves to the response body, or `None` when the
/// protocol wants no response (acks=0 produce).
pub type Pending = BoxFuture<'static, Option<ResponseKind>>;

fn ready(r: ResponseKind) -> Pending {
    futures::future::ready(Some(r)).boxed()
}

/// Routes a decoded request to its handler.
pub async fn dispatch(broker: &Arc<Broker>, req: Request, conn: &ConnInfo) -> Pending {
    let v = req.version;
    let client_id = req
        .header
        .client_id
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default();
    // ACLs first: a denied request is answered here, a partly denied one
    // goes on without the denied parts, whose errors the fixup adds.
    let (body, fixup) = match authz::gate(broker, req.body, v, conn) {
        authz::Gated::Pass(body, fixup) => (body, fixup),
        authz::Gated::Answer(r) => return ready(r),
    };
    let pending = route(broker, body, v, client_id, conn).await;
    match fixup {
        Some(f) => pending.map(|r| r.map(f)).boxed(),
        None => pending,
    }
}

async fn route(
    broker: &Arc<Broker>,
    body: RequestKind,
    v: i16,
    client_id: String,
    conn: &ConnInfo,
) -> Pending {
    let b = broker.clone();
    match body {
        RequestKind::ApiVersions(_) => ready(ResponseKind::ApiVersions(cluster::api_versions())),
        RequestKind::Metadata(r) => {
            let listener = conn.listener;
            async move {
                Some(ResponseKind::Metadata(
                    metadata::handle(&b, r, v, listener).await,
                ))
            }
            .boxed()
        }
        RequestKind::Produce(r) => produce::handle(broker, r, v).await,
        RequestKind::Fetch(r) => {
            async move { Some(ResponseKind::Fetch(fetch::handle(&b, r, v).await)) }.boxed()
        }
        RequestKind::ListOffsets(r) => async move {
            Some(ResponseKind::ListOffsets(
                list_offsets::handle(&b, r, v).await,
            ))
        }
        .boxed(),
        RequestKind::CreateTopics(r) => {
            async move { Some(ResponseKind::CreateTopics(topics::create(&b, r, v).await)) }.boxed()
        }
        RequestKind::DeleteTopics(r) => {
            async move { Some(ResponseKind::DeleteTopics(topics::delete(&b, r, v).await)) }.boxed()
        }
        RequestKind::CreatePartitions(r) => async move {
            Some(ResponseKind::CreatePartitions(
                topics::create_partitions(&b, r).await,
            ))
        }
        .boxed(),
        RequestKind::DescribeConfigs(r) => ready(ResponseKind::DescribeConfigs(configs::describe(
            broker, r, v,
        ))),
        RequestKind::FindCoordinator(r) => ready(ResponseKind::FindCoordinator(
            cluster::find_coordinator(broker, r, v, conn.listener),
        )),
        RequestKind::DescribeCluster(_) => ready(ResponseKind::DescribeCluster(
            cluster::describe_cluster(broker, conn.listener),
        )),
        RequestKind::InitProducerId(r) => async move {
            Some(ResponseKind::InitProducerId(
                cluster::init_producer_id(&b, r).await,
            ))
        }
        .boxed(),
        RequestKind::AlterConfigs(r) => async move {
            Some(ResponseKind::AlterConfigs(
                alter_configs::alter(&b, r).await,
            ))
        }
        .boxed(),
        RequestKind::IncrementalAlterConfigs(r) => async move {
            Some(ResponseKind::IncrementalAlterConfigs(
                alter_configs::incremental(&b, r).await,
            ))
        }
        .boxed(),
        RequestKind::DeleteRecords(r) => async move {
            Some(ResponseKind::DeleteRecords(
                records::delete_records(&b, r).await,
            ))
        }
        .boxed(),
        RequestKind::DescribeLogDirs(r) => ready(ResponseKind::DescribeLogDirs(
            describe_log::log_dirs(broker, r),
        )),
        RequestKind::DescribeProducers(r) => ready(ResponseKind::DescribeProducers(
            describe_log::producers(broker, r),
        )),
        RequestKind::OffsetForLeaderEpoch(r) => ready(ResponseKind::OffsetForLeaderEpoch(
            leader_epoch::handle(broker, r),
        )),
        RequestKind::ElectLeaders(r) => ready(ResponseKind::ElectLeaders(reassign::elect_leaders(
            broker, r,
        ))),
        RequestKind::AlterPartitionReassignments(r) => async move {
            Some(ResponseKind::AlterPartitionReassignments(
                reassign::alter(&b, r).await,
            ))
        }
        .boxed(),
        RequestKind::ListPartitionReassignments(r) => ready(
            ResponseKind::ListPartitionReassignments(reassign::list(broker, r)),
        ),
        RequestKind::AlterUserScramCredentials(r) => {
            let principal = conn.principal.clone();
            async move {
                Some(ResponseKind::AlterUserScramCredentials(
                    scram_users::alter(&b, r, &principal).await,
                ))
            }
            .boxed()
        }
        RequestKind::DescribeUserScramCredentials(r) => {
            ready(ResponseKind::DescribeUserScramCredentials(
                scram_users::describe(broker, r, &conn.principal),
            ))
        }
        RequestKind::CreateAcls(r) => {
            let conn = conn.clone();
            async move { Some(ResponseKind::CreateAcls(acls::create(&b, r, &conn).await)) }.boxed()
        }
        RequestKind::DescribeAcls(r) => {
            ready(ResponseKind::DescribeAcls(acls::describe(broker, r, conn)))
        }
        RequestKind::DeleteAcls(r) => {
            let conn = conn.clone();
            async move { Some(ResponseKind::DeleteAcls(acls::delete(&b, r, &conn).await)) }.boxed()
        }
        other => groups::dispatch(broker, other, v, client_id, conn),
    }
}

/// `Some(message)` as the protocol's nullable string.
pub(crate) fn msg(s: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(s.into()))
}
