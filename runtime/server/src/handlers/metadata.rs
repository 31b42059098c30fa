//! Metadata: brokers, topics and partition leaders (this broker alone, or
//! the cluster's live nodes and each partition's leader and epoch).

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use vigil_storage::{StorageError, Topic};

use crate::broker::Broker;
use crate::errors::storage_code;

pub(super) async fn handle(
    b: &Arc<Broker>,
    r: MetadataRequest,
    v: i16,
    listener: usize,
) -> MetadataResponse {
    let (host, port) = b.advertised_on(listener);
    let node = BrokerId(b.settings.server.node_id);
    // v0 sends an empty list to mean all topics; v1+ sends null.
    let requested: Option<Vec<String>> = match r.topics {
        None => None,
        Some(t) if t.is_empty() && v == 0 => None,
        Some(t) => Some(
            t.into_iter()
                .filter_map(|t| t.name.map(|n| n.0.to_string()))
                .collect(),
        ),
    };
    // Before v4 there is no flag and auto-creation is the broker's choice.
    let auto_create =
        b.settings.server.auto_create_topics && (v < 4 || r.allow_auto_topic_creation);
    let leaders = Leaders::of(b, node);
    let topics = match requested {
        None => b
            .log
            .topics()
            .iter()
            .map(|t| topic_entry(t, &leaders, v))
            .collect(),
        Some(names) => {
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                let entry = match b.log.topic(&name) {
                    Some(t) => topic_entry(&t, &leaders, v),
                    None if auto_create => match auto_create_topic(b, &name).await {
                        Ok(t) => topic_entry(&t, &leaders, v),
                        Err(e) => error_entry(&name, create_error_code(&e)),
                    },
                    None => error_entry(&name, ResponseError::UnknownTopicOrPartition),
                };
                out.push(entry);
            }
            out
        }
    };
    let brokers = match &b.cluster {
        None => vec![MetadataResponseBroker::default()
            .with_node_id(node)
            .with_host(StrBytes::from_string(host.to_string()))
            .with_port(port)],
        Some(c) => c
            .brokers()
            .into_iter()
            .map(|(id, h, p)| {
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_string(h))
                    .with_port(p)
            })
            .collect(),
    };
    // The lowest live node id: Kafka clients only need some live broker.
    let controller = brokers.iter().map(|b| b.node_id).min().unwrap_or(node);
    let mut resp = MetadataResponse::default()
        .with_brokers(brokers)
        .with_controller_id(controller)
        .with_topics(topics);
    if v >= 2 {
        resp = resp.with_cluster_id(Some(StrBytes::from_string(b.cluster_id.clone())));
    }
    resp
}

/// Creates a topic on first use. A concurrent creation by another request is
/// fine: the topic then exists either way.
pub(super) async fn auto_create_topic(
    b: &Arc<Broker>,
    name: &str,
) -> Result<Arc<Topic>, StorageError> {
    let cfg = vigil_storage::TopicConfig {
        partitions: b.settings.server.default_partitions,
        configs: Default::default(),
    };
    match b.log.create_topic(name, cfg).await {
        Ok(t) => Ok(t),
        Err(StorageError::TopicExists(_)) => b
            .log
            .topic(name)
            .ok_or_else(|| StorageError::UnknownTopic(name.to_string())),
        Err(e) => Err(e),
    }
}

fn create_error_code(e: &StorageError) -> ResponseError {
    match e {
        StorageError::Invalid(_) => ResponseError::InvalidTopicException,
        // Over the broker's partition limit: auto-creation is refused, as a
        // CreateTopics would be.
        StorageError::TooManyPartitions { .. } => ResponseError::PolicyViolation,
        // Retriable: the client asks again.
        e if e.is_retriable() => ResponseError::LeaderNotAvailable,
        e => storage_code(e),
    }
}

/// Who leads each partition: this broker alone, or the cluster's view.
enum Leaders<'a> {
    Sole(BrokerId),
    Cluster(&'a crate::cluster::Cluster),
}

impl<'a> Leaders<'a> {
    fn of(b: &'a Broker, node: BrokerId) -> Self {
        match &b.cluster {
            Some(c) => Leaders::Cluster(c),
            None => Leaders::Sole(node),
        }
    }

    /// Leader node and epoch of a partition; `None` while it has none
    /// (its leader died and the session has not expired yet, or it is
    /// moving).
    fn of_partition(&self, p: &vigil_storage::Partition) -> Option<(BrokerId, i32)> {
        match self {
            Leaders::Sole(node) => Some((*node, p.leader_epoch())),
            Leaders::Cluster(c) => c
                .leader(&p.topic, p.index)
                .map(|l| (BrokerId(l.node), l.epoch)),
        }
    }
}

fn topic_entry(t: &Topic, leaders: &Leaders<'_>, v: i16) -> MetadataResponseTopic {
    let mut e = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(t.name.clone()))))
        .with_partitions(
            t.partitions
                .iter()
                .map(|p| {
                    let entry = MetadataResponsePartition::default().with_partition_index(p.index);
                    match leaders.of_partition(p) {
                        Some((node, epoch)) => entry
                            .with_leader_id(node)
                            .with_leader_epoch(epoch)
                            .with_replica_nodes(vec![node])
                            .with_isr_nodes(vec![node]),
                        None => entry
                            .with_error_code(ResponseError::LeaderNotAvailable.code())
                            .with_leader_id(BrokerId(-1))
                            .with_leader_epoch(-1),
                    }
                })
                .collect(),
        );
    if v >= 10 {
        e = e.with_topic_id(t.id);
    }
    e
}

fn error_entry(name: &str, code: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
}
