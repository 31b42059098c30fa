//! `/v1/replays`: bounded runs of a module over a range of a topic.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use vigil_api::ReplaySpec;

use super::error::{json_response, ApiError};
use super::extract::{decode, Body, Name, NoQuery, Params};
use super::AdminState;

/// `POST /v1/replays`, body: a replay spec → 201 with the job's status.
pub async fn create(
    State(s): State<AdminState>,
    _: Params<NoQuery>,
    Body(raw): Body,
) -> Result<Response, ApiError> {
    super::cluster::detectors_here(&s)?;
    let spec: ReplaySpec = decode(&raw, "replay spec")?;
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
