//! DescribeConfigs for topics and the broker (the topic configs themselves
//! are in [`super::topic_configs`]).

use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::topic_configs::{Effect, Kind, TOPIC_CONFIGS};
use crate::broker::Broker;

/// Kafka's ConfigResource type of a topic.
pub(super) const RESOURCE_TOPIC: i8 = 2;
/// Kafka's ConfigResource type of a broker.
pub(super) const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
/// DescribeConfigs documentation of a config vigil keeps without acting on it.
const STORED_ONLY: &str =
    "Stored and reported; vigil does not act on this config (see docs/design/0013-kafka-admin.md).";
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn entry(
    name: &str,
    value: String,
    source: i8,
    kind: Kind,
    v: i16,
) -> DescribeConfigsResourceResult {
    let e = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(Some(StrBytes::from_string(value)))
        .with_config_source(source);
    if v >= 3 {
        e.with_config_type(kind.code())
    } else {
        e
    }
}

pub(super) fn describe(
    b: &Arc<Broker>,
    r: DescribeConfigsRequest,
    v: i16,
) -> DescribeConfigsResponse {
    let results = r
        .resources
        .into_iter()
        .map(|res| {
            let wanted = |name: &str| {
                res.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            let base = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            match res.resource_type {
                RESOURCE_TOPIC => match b.log.topic(res.resource_name.as_str()) {
                    None => base
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_error_message(super::msg(format!(
                            "unknown topic {:?}",
                            res.resource_name.as_str()
                        ))),
                    Some(t) => base.with_configs(
                        TOPIC_CONFIGS
                            .iter()
                            .filter(|s| wanted(s.name))
                            .map(|s| {
                                let e = match t.configs.get(s.name) {
                                    Some(set) => {
                                        entry(s.name, set.clone(), SOURCE_TOPIC, s.kind, v)
                                    }
                                    // The broker's setting is the default it enforces.
                                    None if s.name == "max.message.bytes" => entry(
                                        s.name,
                                        b.settings.server.message_max_bytes.to_string(),
                                        SOURCE_DEFAULT,
                                        s.kind,
                                        v,
                                    ),
                                    None => entry(
                                        s.name,
                                        s.default.to_string(),
                                        SOURCE_DEFAULT,
                                        s.kind,
                                        v,
                                    ),
                                };
                                // Tools show this text: say which configs
                                // are only kept, not acted on.
                                if v >= 3 && s.effect == Effect::Stored {
                                    e.with_documentation(super::msg(STORED_ONLY))
                                } else {
                                    e
                                }
                            })
                            .collect(),
                    ),
                },
                RESOURCE_BROKER => {
                    let c = &b.settings.server;
                    let all = [
                        (
                            "auto.create.topics.enable",
                            c.auto_create_topics.to_string(),
                            Kind::Bool,
                        ),
                        (
                            "num.partitions",
                            c.default_partitions.to_string(),
                            Kind::Int(1),
                        ),
                        ("broker.id", c.node_id.to_string(), Kind::Int(0)),
                    ];
                    base.with_configs(
                        all.into_iter()
                            .filter(|(n, _, _)| wanted(n))
                            .map(|(n, val, kind)| entry(n, val, SOURCE_STATIC_BROKER, kind, v))
                            .collect(),
                    )
                }
                other => base
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(super::msg(format!(
                        "resource type {other} is not supported (topics: 2, brokers: 4)"
                    ))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
