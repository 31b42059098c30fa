//! `/v1/replays`: bounded runs of a module over a range of a topic.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use vigil_api::{FailurePolicy, ReplaySpec};

use super::error::{json_response, ApiError};
use super::extract::{decode, Body, Name, NoQuery, Params};
use super::run_as::{run_as, AdminPrincipal};
use super::AdminState;

/// `POST /v1/replays`, body: a replay spec → 201 with the job's status.
pub async fn create(
    State(s): State<AdminState>,
    who: Option<Extension<AdminPrincipal>>,
    _: Params<NoQuery>,
    Body(raw): Body,
) -> Result<Response, ApiError> {
    let mut spec: ReplaySpec = decode(&raw, "replay spec")?;
    // The id and alert topic are fixed here, so that the topic checked is
    // the one the job writes.
    let id = spec
        .id
        .get_or_insert_with(vigil_engine::replay::default_id)
        .clone();
    let output = spec
        .output
        .get_or_insert_with(|| vigil_engine::replay::default_output(&spec.topic, &id))
        .clone();
    let mut writes = vec![output];
    if spec.on_failure == Some(FailurePolicy::DeadLetter) {
        // A replay's dead letters go to its deployment's default topic.
        writes.push(format!(
            "{}.dlq",
            vigil_engine::replay::deployment_name(&id)
        ));
    }
    let reads = std::slice::from_ref(&spec.topic);
    spec.principal = Some(run_as(&s, who.as_deref(), reads, &writes)?);
    let status = s.detectors.replay(spec).await?;
    Ok(json_response(StatusCode::CREATED, &status))
}

/// `GET /v1/replays` → every job's status.
pub async fn list(State(s): State<AdminState>, _: Params<NoQuery>) -> Response {
    json_response(StatusCode::OK, &s.detectors.replays().await)
}

/// `GET /v1/replays/{id}` → the job's status.
pub async fn get(
    State(s): State<AdminState>,
    Name(id): Name,
    _: Params<NoQuery>,
) -> Result<Response, ApiError> {
    let status = s.detectors.replay_status(&id).await?;
    Ok(json_response(StatusCode::OK, &status))
}

/// `DELETE /v1/replays/{id}` → `{"cancelled": ID}`.
pub async fn cancel(
    State(s): State<AdminState>,
    Name(id): Name,
    _: Params<NoQuery>,
) -> Result<Response, ApiError> {
    s.detectors.cancel_replay(&id).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "cancelled": id }),
    ))
}
