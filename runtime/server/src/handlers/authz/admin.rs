//! ACLs on the administrative APIs: topics, partitions, configs, log dirs,
//! producer ids and SCRAM credentials.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    DescribeLogDirsRequest, DescribeLogDirsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, InitProducerIdRequest, InitProducerIdResponse, ProducerId,
    RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use vigil_auth::acl::{Operation, ResourceType};

use super::{fixup, split, Gated, CLUSTER_DENIED, TOPIC_DENIED, TXN_DENIED};
use crate::broker::Broker;
use crate::handlers::msg;
use crate::security::Check;

/// Config resource type codes (Kafka's `ConfigResource.Type`).
const CONFIG_TOPIC: i8 = 2;

/// The error for a config resource the principal may not `op`: topics
/// answer TOPIC_AUTHORIZATION_FAILED, brokers (and their loggers) answer
/// CLUSTER_AUTHORIZATION_FAILED, as their ACLs live on the cluster.
fn config_denied(c: &Check<'_>, op: Operation, ty: i8, name: &str) -> Option<i16> {
    if ty == CONFIG_TOPIC {
        (!c.topic(op, name)).then_some(TOPIC_DENIED)
    } else {
        (!c.cluster(op)).then_some(CLUSTER_DENIED)
    }
}

fn denial(op: Operation, what: &str) -> Option<StrBytes> {
    msg(format!("not authorized to {} {what}", op.name()))
}

pub(super) fn create_topics(c: &Check<'_>, mut r: CreateTopicsRequest) -> Gated {
    let (keep, denied) = split(std::mem::take(&mut r.topics), |t| c.create_topic(&t.name.0));
    r.topics = keep;
    if denied.is_empty() {
        return Gated::Pass(RequestKind::CreateTopics(r), None);
    }
    let denied: Vec<TopicName> = denied.into_iter().map(|t| t.name).collect();
    let f = fixup!(CreateTopics, move |mut resp: CreateTopicsResponse| {
        for name in denied {
            let why = denial(Operation::Create, &format!("topic {:?}", &*name.0));
            resp.topics.push(
                CreatableTopicResult::default()
                    .with_name(name)
                    .with_error_code(TOPIC_DENIED)
                    .with_error_message(why)
                    .with_topic_config_error_code(TOPIC_DENIED),
            );
        }
        resp
    });
    Gated::Pass(RequestKind::CreateTopics(r), f)
}

/// DeleteTopics: DELETE on each topic, by name (v0-5) or by name or id
/// (v6; an id is resolved to its topic's name to decide).
pub(super) fn delete_topics(b: &Arc<Broker>, c: &Check<'_>, mut r: DeleteTopicsRequest) -> Gated {
    let mut denied: Vec<DeletableTopicResult> = Vec::new();
    let (keep, out) = split(std::mem::take(&mut r.topic_names), |n| {
        c.topic(Operation::Delete, &n.0)
    });
    r.topic_names = keep;
    denied.extend(
        out.into_iter()
            .map(|n| DeletableTopicResult::default().with_name(Some(n))),
    );
    let (keep, out) = split(std::mem::take(&mut r.topics), |t| {
        let name = match &t.name {
            Some(n) => Some(n.0.to_string()),
            None => b
                .log
                .topics()
                .into_iter()
                .find(|x| x.id == t.topic_id)
                .map(|x| x.name.clone()),
        };
        // An unknown id passes: the handler answers UNKNOWN_TOPIC_ID.
        name.is_none_or(|n| c.topic(Operation::Delete, &n))
    });
    r.topics = keep;
    denied.extend(out.into_iter().map(|t| {
        DeletableTopicResult::default()
            .with_name(t.name)
            .with_topic_id(t.topic_id)
    }));
    if denied.is_empty() {
        return Gated::Pass(RequestKind::DeleteTopics(r), None);
    }
    let f = fixup!(DeleteTopics, move |mut resp: DeleteTopicsResponse| {
        for d in denied {
            resp.responses.push(
                d.with_error_code(TOPIC_DENIED)
                    .with_error_message(denial(Operation::Delete, "the topic")),
            );
        }
        resp
    });
    Gated::Pass(RequestKind::DeleteTopics(r), f)
}

pub(super) fn create_partitions(c: &Check<'_>, mut r: CreatePartitionsRequest) -> Gated {
    let (keep, denied) = split(std::mem::take(&mut r.topics), |t| {
        c.topic(Operation::Alter, &t.name.0)
    });
    r.topics = keep;
    if denied.is_empty() {
        return Gated::Pass(RequestKind::CreatePartitions(r), None);
    }
    let denied: Vec<TopicName> = denied.into_iter().map(|t| t.name).collect();
    let f = fixup!(
        CreatePartitions,
        move |mut resp: CreatePartitionsResponse| {
            for name in denied {
                resp.results.push(
                    CreatePartitionsTopicResult::default()
                        .with_name(name)
                        .with_error_code(TOPIC_DENIED)
                        .with_error_message(denial(Operation::Alter, "the topic")),
                );
            }
            resp
        }
    );
    Gated::Pass(RequestKind::CreatePartitions(r), f)
}

pub(super) fn describe_configs(c: &Check<'_>, mut r: DescribeConfigsRequest) -> Gated {
    let mut denied = Vec::new();
    r.resources.retain(|res| {
        match config_denied(
            c,
            Operation::DescribeConfigs,
            res.resource_type,
            &res.resource_name,
        ) {
            None => true,
            Some(code) => {
                denied.push((res.resource_type, res.resource_name.clone(), code));
                false
            }
        }
    });
    if denied.is_empty() {
        return Gated::Pass(RequestKind::DescribeConfigs(r), None);
    }
    let f = fixup!(DescribeConfigs, move |mut resp: DescribeConfigsResponse| {
        for (ty, name, code) in denied {
            resp.results.push(
                DescribeConfigsResult::default()
                    .with_resource_type(ty)
                    .with_resource_name(name)
                    .with_error_code(code)
                    .with_error_message(denial(Operation::DescribeConfigs, "the resource")),
            );
        }
        resp
    });
    Gated::Pass(RequestKind::DescribeConfigs(r), f)
}

/// The config resources of an alter request the principal may not
/// ALTER_CONFIGS, removed from `resources`.
macro_rules! split_alter {
    ($c:expr, $resources:expr) => {{
        let mut denied = Vec::new();
        $resources.retain(|res| {
            match config_denied(
                $c,
                Operation::AlterConfigs,
                res.resource_type,
                &res.resource_name,
            ) {
                None => true,
                Some(code) => {
                    denied.push((res.resource_type, res.resource_name.clone(), code));
                    false
                }
            }
        });
        denied
    }};
}

pub(super) fn alter_configs(c: &Check<'_>, mut r: AlterConfigsRequest) -> Gated {
    let denied = split_alter!(c, r.resources);
    if denied.is_empty() {
        return Gated::Pass(RequestKind::AlterConfigs(r), None);
    }
    let f = fixup!(AlterConfigs, move |mut resp: AlterConfigsResponse| {
        for (ty, name, code) in denied {
            resp.responses.push(
                alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(ty)
                    .with_resource_name(name)
                    .with_error_code(code)
                    .with_error_message(denial(Operation::AlterConfigs, "the resource")),
            );
        }
        resp
    });
    Gated::Pass(RequestKind::AlterConfigs(r), f)
}

pub(super) fn incremental_alter_configs(
    c: &Check<'_>,
    mut r: IncrementalAlterConfigsRequest,
) -> Gated {
    let denied = split_alter!(c, r.resources);
    if denied.is_empty() {
        return Gated::Pass(RequestKind::IncrementalAlterConfigs(r), None);
    }
    let f = fixup!(
        IncrementalAlterConfigs,
        move |mut resp: IncrementalAlterConfigsResponse| {
            for (ty, name, code) in denied {
                resp.responses.push(
                    incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_resource_type(ty)
                        .with_resource_name(name)
                        .with_error_code(code)
                        .with_error_message(denial(Operation::AlterConfigs, "the resource")),
                );
            }
            resp
        }
    );
    Gated::Pass(RequestKind::IncrementalAlterConfigs(r), f)
}

pub(super) fn describe_log_dirs(c: &Check<'_>, r: DescribeLogDirsRequest, v: i16) -> Gated {
    if c.cluster(Operation::Describe) {
        return Gated::Pass(RequestKind::DescribeLogDirs(r), None);
    }
    // Before v3 there is no error field: Kafka answers no log dirs.
    let resp = DescribeLogDirsResponse::default();
    let resp = if v >= 3 {
        resp.with_error_code(CLUSTER_DENIED)
    } else {
        resp
    };
    Gated::Answer(ResponseKind::DescribeLogDirs(resp))
}

pub(super) fn init_producer_id(c: &Check<'_>, r: InitProducerIdRequest) -> Gated {
    let (ok, code) = match &r.transactional_id {
        Some(id) => (
            c.can(Operation::Write, ResourceType::TransactionalId, &id.0),
            TXN_DENIED,
        ),
        None => (c.idempotent_write(), CLUSTER_DENIED),
    };
    if ok {
        return Gated::Pass(RequestKind::InitProducerId(r), None);
    }
    Gated::Answer(ResponseKind::InitProducerId(
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    ))
}

pub(super) fn alter_scram(c: &Check<'_>, r: AlterUserScramCredentialsRequest) -> Gated {
    if c.cluster(Operation::Alter) {
        return Gated::Pass(RequestKind::AlterUserScramCredentials(r), None);
    }
    let users: BTreeSet<StrBytes> = r
        .upsertions
        .iter()
        .map(|u| u.name.clone())
        .chain(r.deletions.iter().map(|d| d.name.clone()))
        .collect();
    let results = users
        .into_iter()
        .map(|u| {
            AlterUserScramCredentialsResult::default()
                .with_user(u)
                .with_error_code(CLUSTER_DENIED)
                .with_error_message(denial(Operation::Alter, "the cluster"))
        })
        .collect();
    Gated::Answer(ResponseKind::AlterUserScramCredentials(
        AlterUserScramCredentialsResponse::default().with_results(results),
    ))
}

pub(super) fn describe_scram(c: &Check<'_>, r: DescribeUserScramCredentialsRequest) -> Gated {
    if c.cluster(Operation::Describe) {
        return Gated::Pass(RequestKind::DescribeUserScramCredentials(r), None);
    }
    Gated::Answer(ResponseKind::DescribeUserScramCredentials(
        DescribeUserScramCredentialsResponse::default()
            .with_error_code(CLUSTER_DENIED)
            .with_error_message(denial(Operation::Describe, "the cluster")),
    ))
}
