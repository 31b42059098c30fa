//! AlterConfigs (replace a topic's configs) and IncrementalAlterConfigs
//! (set / delete / append / subtract single configs). Topic changes are
//! validated against [`super::topic_configs`] as a whole before anything is
//! written, persisted in the manifest, and take effect at once. Broker
//! configs are static (command line / config file) and are refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::msg;
use super::topic_configs::{self, Op};
use crate::broker::Broker;
use crate::errors::storage_code;

/// What became of one resource: `Ok` or the error and its message.
type Outcome = Result<(), (ResponseError, String)>;

pub(super) async fn alter(b: &Arc<Broker>, r: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut out = Vec::with_capacity(r.resources.len());
    for res in r.resources {
        let outcome = match topic_of(b, res.resource_type, &res.resource_name) {
            Err(e) => Err(e),
            Ok(topic) => {
                // AlterConfigs replaces the whole set: configs not named
                // return to their defaults, as in Kafka.
                match topic_configs::validate_all(
                    res.configs
                        .iter()
                        .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
                ) {
                    Err(why) => Err((ResponseError::InvalidConfig, why)),
                    Ok(_) if r.validate_only => Ok(()),
                    Ok(configs) => store(b, &topic, configs).await,
                }
            }
        };
        let (code, message) = split(outcome);
        out.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name)
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    AlterConfigsResponse::default().with_responses(out)
}

pub(super) async fn incremental(
    b: &Arc<Broker>,
    r: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut out = Vec::with_capacity(r.resources.len());
    for res in r.resources {
        let outcome = match topic_of(b, res.resource_type, &res.resource_name) {
            Err(e) => Err(e),
            Ok(topic) => {
                let mut configs = b
                    .log
                    .topic(&topic)
                    .map(|t| t.configs.clone())
                    .unwrap_or_default();
                let applied = res.configs.iter().try_for_each(|c| {
                    let op = Op::from_code(c.config_operation).ok_or_else(|| {
                        format!(
                            "config operation {} on {} is not one of SET (0), DELETE (1), APPEND (2), SUBTRACT (3)",
                            c.config_operation,
                            c.name.as_str()
                        )
                    })?;
                    topic_configs::apply_op(
                        &mut configs,
                        c.name.as_str(),
                        op,
                        c.value.as_ref().map(|v| v.as_str()),
                    )
                });
                match applied {
                    Err(why) => Err((ResponseError::InvalidConfig, why)),
                    Ok(()) if r.validate_only => Ok(()),
                    Ok(()) => store(b, &topic, configs).await,
                }
            }
        };
        let (code, message) = split(outcome);
        out.push(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name)
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(out)
}

/// The topic a resource names, if it is an existing topic.
fn topic_of(b: &Broker, kind: i8, name: &StrBytes) -> Result<String, (ResponseError, String)> {
    match kind {
        RESOURCE_TOPIC => match b.log.topic(name.as_str()) {
            Some(t) => Ok(t.name.clone()),
            None => Err((
                ResponseError::UnknownTopicOrPartition,
                format!("unknown topic {:?}", name.as_str()),
            )),
        },
        RESOURCE_BROKER => Err((
            ResponseError::InvalidRequest,
            "broker configs are static in vigil: set them on the command line or in the config file and restart".into(),
        )),
        other => Err((
            ResponseError::InvalidRequest,
            format!("resource type {other} cannot be altered (topics: 2)"),
        )),
    }
}

async fn store(b: &Broker, topic: &str, configs: BTreeMap<String, String>) -> Outcome {
    b.log
        .set_topic_configs(topic, configs)
        .await
        .map(|_| ())
        .map_err(|e| (storage_code(&e), e.to_string()))
}

fn split(outcome: Outcome) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err((code, m)) => (code.code(), msg(m)),
    }
}
