//! Every error answer of the admin API: a [`vigil_api::ErrorBody`] with the
//! HTTP status of its [`ErrorKind`] (400/404/409/503/500), or of the HTTP
//! layer itself (405, 413).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use vigil_api::{ErrorBody, ErrorKind};
use vigil_engine::registry::RegistryError;
use vigil_engine::DetectorError;

/// An error answer: status and body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    /// An error of `kind`, answered with that kind's status.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let status =
            StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::with_status(status, kind, message)
    }

    /// An error of `kind` answered with a status of the HTTP layer (405, 413,
    /// 504) rather than the kind's own.
    pub fn with_status(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                error: message.into(),
                kind: Some(kind),
                retriable: kind.retriable(),
            },
        }
    }

    /// A request the API refuses as it stands (400).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The body this error is answered with.
    pub fn body(&self) -> &ErrorBody {
        &self.body
    }
}

impl From<DetectorError> for ApiError {
    fn from(e: DetectorError) -> Self {
        ApiError::new(e.kind(), e.to_string())
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        DetectorError::Registry(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body)
    }
}

/// `value` as a pretty-printed JSON answer with `status`; a value that cannot
/// be serialized (a bug) becomes a 500 that says so.
pub fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => {
            let mut resp = (status, body).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => {
            let body = ErrorBody {
                error: format!("cannot encode the answer as JSON: {e}"),
                kind: Some(ErrorKind::Internal),
                retriable: false,
            };
            // An ErrorBody is strings and booleans: it always serializes.
            let raw = serde_json::to_vec(&body).unwrap_or_default();
            let mut resp = (StatusCode::INTERNAL_SERVER_ERROR, raw).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
    }
}
