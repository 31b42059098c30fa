//! `/v1/deployments`: live deployments, their hot swaps and shadows.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use vigil_api::{ShadowRequest, SwapRequest};
use vigil_engine::spec::{DeploymentSpec, FailurePolicy, Kind};

use super::error::{json_response, ApiError};
use super::extract::{decode, Body, Name, NoQuery, Params};
use super::run_as::{run_as, AdminPrincipal};
use super::AdminState;

/// `POST /v1/deployments`, body: a deployment spec → 201 with its status.
pub async fn create(
    State(s): State<AdminState>,
    who: Option<Extension<AdminPrincipal>>,
    _: Params<NoQuery>,
    Body(raw): Body,
) -> Result<Response, ApiError> {
    let mut spec: DeploymentSpec = decode(&raw, "deployment spec")?;
    if spec.kind != Kind::Live {
        return Err(ApiError::invalid(
            "invalid deployment spec: `kind` is set by the broker (use /v1/replays or /v1/deployments/NAME/shadow)",
        ));
    }
    let mut writes = vec![spec.output.clone()];
    if spec.on_failure == FailurePolicy::DeadLetter {
        writes.push(spec.dead_letter_topic());
    }
    spec.principal = Some(run_as(&s, who.as_deref(), &spec.inputs, &writes)?);
    let status = s.detectors.deploy(spec).await?;
    Ok(json_response(StatusCode::CREATED, &status))
}

/// `GET /v1/deployments` → every deployment's status.
pub async fn list(State(s): State<AdminState>, _: Params<NoQuery>) -> Response {
    json_response(StatusCode::OK, &s.detectors.list().await)
}

/// `GET /v1/deployments/{name}` → its status.
pub async fn get(
    State(s): State<AdminState>,
    Name(name): Name,
    _: Params<NoQuery>,
) -> Result<Response, ApiError> {
    let status = s.detectors.status(&name).await?;
    Ok(json_response(StatusCode::OK, &status))
}

/// `POST /v1/deployments/{name}/pause` → its status.
pub async fn pause(
    State(s): State<AdminState>,
    Name(name): Name,
    _: Params<NoQuery>,
) -> Result<Response, ApiError> {
    let status = s.detectors.pause(&name).await?;
    Ok(json_response(StatusCode::OK, &status))
}

/// `POST /v1/deployments/{name}/resume` → its status.
pub async fn resume(
    State(s): State<AdminState>,
    Name(name): Name,
    _: Params<NoQuery>,
) -> Result<Response, ApiError> {
    let status = s.detectors.resume(&name).await?;
    Ok(json_response(StatusCode::OK, &status))
}

/// `DELETE /v1/deployments/{name}` → `{"undeployed": NAME}`.
pub async fn delete(
    State(s): State<AdminState>,
    Name(name): Name,
    _: Params<NoQuery>,
) -> Result<Response, ApiError> {
    s.detectors.undeploy(&name).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "undeployed": name }),
    ))
}

/// `POST /v1/deployments/{name}/module`, body: a swap request → its status
/// (hot swap).
pub async fn swap(
    State(s): State<AdminState>,
    Name(name): Name,
    _: Params<NoQuery>,
    Body(raw): Body,
) -> Result<Response, ApiError> {
    let request: SwapRequest = decode(&raw, "swap request")?;
    let status = s.detectors.swap(&name, request).await?;
    Ok(json_response(StatusCode::OK, &status))
}

/// `POST /v1/deployments/{name}/shadow`, body: a shadow request → 201 with
/// the shadow's status.
pub async fn shadow(
    State(s): State<AdminState>,
    Name(name): Name,
    _: Params<NoQuery>,
    Body(raw): Body,
) -> Result<Response, ApiError> {
    let request: ShadowRequest = decode(&raw, "shadow request")?;
    let status = s.detectors.shadow(&name, request).await?;
    Ok(json_response(StatusCode::CREATED, &status))
}

/// `GET /v1/deployments/{name}/logs[?after=SEQ&limit=N]` → the module's
/// recent log lines (see `vigil_engine::logs`).
pub async fn logs(
    State(s): State<AdminState>,
    Name(name): Name,
    Params(q): Params<vigil_api::LogsQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(vigil_engine::logs::MAX_PAGE);
    let page = s.detectors.logs(&name, q.after.unwrap_or(0), limit)?;
    Ok(json_response(StatusCode::OK, &page))
}
