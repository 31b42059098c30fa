//! `GET /openapi.json`: the admin API's description, generated from the
//! types in `vigil_api` (see `vigil_api::openapi`).

use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::response::Response;

use super::error::json_response;
use super::extract::{NoQuery, Params};

/// Built once: it only depends on the types compiled in.
static DOCUMENT: LazyLock<serde_json::Value> = LazyLock::new(vigil_api::openapi::document);

/// `GET /openapi.json` → the OpenAPI 3.1 document.
pub async fn get(_: Params<NoQuery>) -> Response {
    json_response(StatusCode::OK, &*DOCUMENT)
}
