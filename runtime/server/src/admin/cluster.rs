//! `GET /v1/cluster`: brokers, partition leaders and epochs, movements in
//! progress; `POST /v1/cluster/move`: move a partition to a node.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use vigil_api::ErrorKind;

use super::error::{json_response, ApiError};
use super::extract::{decode, Body, NoQuery, Params};
use super::AdminState;
use crate::cluster::Movement;

/// One broker of the cluster.
#[derive(Debug, Serialize)]
struct Node {
    node_id: i32,
    kafka_listener: String,
    admin_addr: String,
}

/// One partition's leadership.
#[derive(Debug, Serialize)]
struct PartitionLeader {
    topic: String,
    partition: i32,
    /// `None` while the partition has no live leader.
    leader: Option<i32>,
    epoch: Option<i32>,
}

#[derive(Debug, Serialize)]
struct Status {
    /// `none` for a single broker, else the coordinator backend.
    coordinator: &'static str,
    node_id: i32,
    nodes: Vec<Node>,
    partitions: Vec<PartitionLeader>,
    movements: Vec<Movement>,
}

/// `GET /v1/cluster`.
pub async fn status(State(s): State<AdminState>, _: Params<NoQuery>) -> Result<Response, ApiError> {
    let mut partitions = Vec::new();
    for t in s.log.topics() {
        for p in &t.partitions {
            let (leader, epoch) = match &s.cluster {
                Some(c) => match c.leader(&t.name, p.index) {
                    Some(l) => (Some(l.node), Some(l.epoch)),
                    None => (None, None),
                },
                None => (Some(s.node_id), Some(p.leader_epoch())),
            };
            partitions.push(PartitionLeader {
                topic: t.name.clone(),
                partition: p.index,
                leader,
                epoch,
            });
        }
    }
    let status = match &s.cluster {
        Some(c) => Status {
            coordinator: c.backend(),
            node_id: c.node_id(),
            nodes: c
                .members()
                .into_iter()
                .map(|m| Node {
                    node_id: m.node_id,
                    kafka_listener: m.kafka_listener,
                    admin_addr: m.admin_addr,
                })
                .collect(),
            partitions,
            movements: c.movements(),
        },
        None => Status {
            coordinator: "none",
            node_id: s.node_id,
            nodes: Vec::new(),
            partitions,
            movements: Vec::new(),
        },
    };
    Ok(json_response(StatusCode::OK, &status))
}

/// Body of `POST /v1/cluster/move`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveSpec {
    topic: String,
    partition: i32,
    to: i32,
}

/// `POST /v1/cluster/move`: the partition's leader hands it over to `to`
/// at its next placement round (any node accepts the request: every node
/// pins the move for itself, and only the leader acts on it). 202.
pub async fn move_partition(
    State(s): State<AdminState>,
    _: Params<NoQuery>,
    Body(raw): Body,
) -> Result<Response, ApiError> {
    let spec: MoveSpec = decode(&raw, "move")?;
    let Some(c) = &s.cluster else {
        return Err(ApiError::new(
            ErrorKind::Invalid,
            "this broker is not part of a cluster (start it with --coordinator)",
        ));
    };
    c.request_move(&spec.topic, spec.partition, spec.to)
        .await
        .map_err(|e| ApiError::new(ErrorKind::Invalid, e))?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &serde_json::json!({"topic": spec.topic, "partition": spec.partition, "to": spec.to}),
    ))
}
