//! ApiVersions, FindCoordinator, DescribeCluster, InitProducerId: the
//! questions about the cluster itself.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, DescribeClusterResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, InitProducerIdRequest, InitProducerIdResponse, ProducerId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::errors::storage_code;

pub(super) fn api_versions() -> ApiVersionsResponse {
    vigil_protocol::response::api_versions_body(0)
}

/// The broker coordinating group `key`: this one, or in a cluster the
/// node the group hashes to among the live nodes.
fn group_coordinator(b: &Broker, key: &str, listener: usize) -> (BrokerId, StrBytes, i32) {
    let owner = b.cluster.as_ref().and_then(|c| c.group_coordinator(key));
    if let Some((id, host, port)) = owner.as_ref().and_then(crate::cluster::kafka_address) {
        return (BrokerId(id), StrBytes::from_string(host), port);
    }
    let (host, port) = b.advertised_on(listener);
    (
        BrokerId(b.settings.server.node_id),
        StrBytes::from_string(host.to_string()),
        port,
    )
}

pub(super) fn find_coordinator(
    b: &Arc<Broker>,
    r: FindCoordinatorRequest,
    v: i16,
    listener: usize,
) -> FindCoordinatorResponse {
    // Key type 0 is a group, 1 a transaction; this broker coordinates groups.
    let error = (r.key_type != 0).then_some(ResponseError::CoordinatorNotAvailable);
    if v >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(
            r.coordinator_keys
                .into_iter()
                .map(|key| match error {
                    None => {
                        let (node, host, port) = group_coordinator(b, &key, listener);
                        Coordinator::default()
                            .with_key(key)
                            .with_node_id(node)
                            .with_host(host)
                            .with_port(port)
                    }
                    Some(e) => Coordinator::default()
                        .with_key(key)
                        .with_node_id(BrokerId(-1))
                        .with_error_code(e.code())
                        .with_error_message(super::msg("transactions are not supported")),
                })
                .collect(),
        );
    }
    match error {
        None => {
            let (node, host, port) = group_coordinator(b, &r.key, listener);
            FindCoordinatorResponse::default()
                .with_node_id(node)
                .with_host(host)
                .with_port(port)
        }
        Some(e) => {
            let resp = FindCoordinatorResponse::default()
                .with_error_code(e.code())
                .with_node_id(BrokerId(-1));
            if v >= 1 {
                resp.with_error_message(super::msg("transactions are not supported"))
            } else {
                resp
            }
        }
    }
}

pub(super) fn describe_cluster(b: &Arc<Broker>, listener: usize) -> DescribeClusterResponse {
    let (host, port) = b.advertised_on(listener);
    let me = DescribeClusterBroker::default()
        .with_broker_id(BrokerId(b.settings.server.node_id))
        .with_host(StrBytes::from_string(host.to_string()))
        .with_port(port);
    let brokers: Vec<DescribeClusterBroker> = match &b.cluster {
        None => vec![me],
        Some(c) => c
            .brokers()
            .into_iter()
            .map(|(id, h, p)| {
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(id))
                    .with_host(StrBytes::from_string(h))
                    .with_port(p)
            })
            .collect(),
    };
    let controller = brokers
        .iter()
        .map(|b| b.broker_id)
        .min()
        .unwrap_or(BrokerId(b.settings.server.node_id));
    DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(b.cluster_id.clone()))
        .with_controller_id(controller)
        .with_brokers(brokers)
}

pub(super) async fn init_producer_id(
    b: &Arc<Broker>,
    r: InitProducerIdRequest,
) -> InitProducerIdResponse {
    if r.transactional_id.is_some() {
        tracing::warn!(
            transactional_id = ?r.transactional_id,
            "refusing InitProducerId for a transactional producer: transactions are not supported (idempotence is)"
        );
        return InitProducerIdResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_producer_id(ProducerId(-1));
    }
    // KIP-360: a producer that already has an id asks for an epoch bump.
    if r.producer_id.0 >= 0 && r.producer_epoch >= 0 {
        return match r.producer_epoch.checked_add(1) {
            Some(epoch) => InitProducerIdResponse::default()
                .with_producer_id(r.producer_id)
                .with_producer_epoch(epoch),
            None => fresh_id(b).await,
        };
    }
    fresh_id(b).await
}

async fn fresh_id(b: &Arc<Broker>) -> InitProducerIdResponse {
    match b.log.allocate_producer_id().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::warn!(error = %e, "cannot allocate a producer id");
            // Clients retry COORDINATOR_NOT_AVAILABLE on their own.
            let code = if e.is_retriable() {
                ResponseError::CoordinatorNotAvailable
            } else {
                storage_code(&e)
            };
            InitProducerIdResponse::default()
                .with_error_code(code.code())
                .with_producer_id(ProducerId(-1))
        }
    }
}
