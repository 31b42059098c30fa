//! DescribeConfigs for topics and the broker, and validation of the topic
//! configs CreateTopics accepts.

use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Long,
    Int,
    Str(&'static [&'static str]),
}

impl Kind {
    /// Kafka's ConfigType numbering (DescribeConfigs v3+).
    fn code(self) -> i8 {
        match self {
            Kind::Bool => 1,
            Kind::Long => 5,
            Kind::Int => 3,
            Kind::Str(_) => 2,
        }
    }
}

/// Topic configs vigil knows, with Kafka's defaults. `retention.ms` and
/// `retention.bytes` are enforced by the storage layer's retention pass.
const TOPIC_CONFIGS: &[(&str, &str, Kind)] = &[
    ("cleanup.policy", "delete", Kind::Str(&["delete"])),
    ("compression.type", "producer", Kind::Str(&["producer"])),
    ("max.message.bytes", "1048588", Kind::Int),
    (
        "message.timestamp.type",
        "CreateTime",
        Kind::Str(&["CreateTime"]),
    ),
    ("retention.bytes", "-1", Kind::Long),
    ("retention.ms", "604800000", Kind::Long),
    ("segment.bytes", "1073741824", Kind::Int),
];

/// Checks one topic config from CreateTopics.
pub(super) fn validate_topic_config(name: &str, value: &str) -> Result<(), String> {
    let Some((_, _, kind)) = TOPIC_CONFIGS.iter().find(|(n, _, _)| *n == name) else {
        let known: Vec<_> = TOPIC_CONFIGS.iter().map(|(n, _, _)| *n).collect();
        return Err(format!(
            "unknown topic config {name:?}; vigil supports {}",
            known.join(", ")
        ));
    };
    let ok = match kind {
        Kind::Bool => value.parse::<bool>().is_ok(),
        Kind::Long => value.parse::<i64>().is_ok(),
        Kind::Int => value.parse::<i32>().is_ok(),
        Kind::Str(allowed) => allowed.contains(&value),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "topic config {name}={value:?} is not a valid value"
        ))
    }
}

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
                            .filter(|(n, _, _)| wanted(n))
                            .map(|(n, default, kind)| match t.configs.get(*n) {
                                Some(set) => entry(n, set.clone(), SOURCE_TOPIC, *kind, v),
                                // The broker's setting is the default it enforces.
                                None if *n == "max.message.bytes" => entry(
                                    n,
                                    b.settings.server.message_max_bytes.to_string(),
                                    SOURCE_DEFAULT,
                                    *kind,
                                    v,
                                ),
                                None => entry(n, default.to_string(), SOURCE_DEFAULT, *kind, v),
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
                            Kind::Int,
                        ),
                        ("broker.id", c.node_id.to_string(), Kind::Int),
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
