//! `GET /v1/cluster`: brokers, partition leaders and epochs, movements in
//! progress; `POST /v1/cluster/move`: move a partition to a node.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use vigil_api::{ClusterNode as Node, ClusterStatus as Status, ErrorKind, MoveRequest};

use super::error::{json_response, ApiError};
use super::extract::{decode, Body, NoQuery, Params};
use super::AdminState;

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
            partitions.push(vigil_api::PartitionLeader {
                topic: t.name.clone(),
                partition: p.index,
                leader,
                epoch,
            });
        }
    }
    let status = match &s.cluster {
        Some(c) => Status {
            coordinator: c.backend().to_string(),
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
            coordinator: "none".to_string(),
            node_id: s.node_id,
            nodes: Vec::new(),
            partitions,
            movements: Vec::new(),
        },
    };
    Ok(json_response(StatusCode::OK, &status))
}

/// `POST /v1/cluster/move`: the partition's leader hands it over to `to`
/// at its next placement round (any node accepts the request: every node
/// pins the move for itself, and only the leader acts on it). 202.
pub async fn move_partition(
    State(s): State<AdminState>,
    _: Params<NoQuery>,
    Body(raw): Body,
) -> Result<Response, ApiError> {
    let spec: MoveRequest = decode(&raw, "move")?;
    let Some(c) = &s.cluster else {
        return Err(ApiError::new(
            ErrorKind::Invalid,
            "this broker is not part of a cluster (start it with --coordinator)",
        ));
    };
    c.request_move(&spec.topic, spec.partition, spec.to)
        .await
        .map_err(|e| ApiError::new(ErrorKind::Invalid, e))?;
    Ok(json_response(StatusCode::ACCEPTED, &spec))
}
