//! `/v1/modules`: upload and list detector modules.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::error::{json_response, ApiError};
use super::extract::{Body, ModulesQuery, Params};
use super::AdminState;

/// `POST /v1/modules`, body: the `.wasm` bytes → 201 with the module's
/// metadata.
pub async fn upload(State(s): State<AdminState>, Body(wasm): Body) -> Result<Response, ApiError> {
    let meta = s.detectors.registry().upload(wasm).await?;
    Ok(json_response(StatusCode::CREATED, &meta))
}

/// `GET /v1/modules[?name=NAME]` → the modules' metadata, oldest first.
pub async fn list(
    State(s): State<AdminState>,
    Params(q): Params<ModulesQuery>,
) -> Result<Response, ApiError> {
    let registry = s.detectors.registry();
    let list = match &q.name {
        Some(name) => registry.versions(name).await?,
        None => registry.list().await?,
    };
    Ok(json_response(StatusCode::OK, &list))
}
