//! Every error answer of the admin API: a [`vigil_api::ErrorBody`] with the
//! HTTP status of its [`ErrorKind`] (400/404/409/503/500), or of the HTTP
//! layer itself (405, 413).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use vigil_api::{ErrorBody, ErrorKind};
use vigil_engine::registry::RegistryError;
use vigil_engine::DetectorError;
use vigil_storage::StorageError;

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
        ApiError::new(detector_error_kind(&e), e.to_string())
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

// TODO(lead): replace with DetectorError::kind() after merging the engine branch
/// The class of an engine error, hence its HTTP status. Exhaustive on
/// purpose (no catch-all arm): a new variant must be classified here before
/// the server builds.
pub fn detector_error_kind(e: &DetectorError) -> ErrorKind {
    match e {
        DetectorError::Spec(_) | DetectorError::Init { .. } | DetectorError::Schema(_) => {
            ErrorKind::Invalid
        }
        DetectorError::NotFound(_)
        | DetectorError::ReplayNotFound(_)
        | DetectorError::UnknownTopic(_) => ErrorKind::NotFound,
        DetectorError::Exists(_) => ErrorKind::Conflict,
        // The engine uses `Store` for object store and state I/O failures
        // (its docs: retriable).
        DetectorError::Store(_) => ErrorKind::Unavailable,
        DetectorError::Registry(r) => match r {
            RegistryError::Invalid(_) | RegistryError::Ambiguous(_) => ErrorKind::Invalid,
            RegistryError::NotFound(_) => ErrorKind::NotFound,
            RegistryError::Store { .. } => ErrorKind::Unavailable,
            // Stored bytes or metadata that do not read back: retrying the
            // same request reads the same bytes.
            RegistryError::Corrupt(_) | RegistryError::Meta(..) => ErrorKind::Internal,
        },
        DetectorError::Storage(s) => match s {
            StorageError::Invalid(_) | StorageError::OffsetOutOfRange { .. } => ErrorKind::Invalid,
            StorageError::UnknownTopic(_) | StorageError::UnknownPartition { .. } => {
                ErrorKind::NotFound
            }
            StorageError::TopicExists(_) => ErrorKind::Conflict,
            // The disk or the store may come back; a fenced or shutting-down
            // broker cannot serve, but the one that owns the log now can.
            StorageError::WalIo { .. }
            | StorageError::WalClosed
            | StorageError::ObjectStore { .. }
            | StorageError::Fenced { .. }
            | StorageError::OwnedElsewhere { .. } => ErrorKind::Unavailable,
            StorageError::Corrupt { .. } => ErrorKind::Internal,
        },
    }
}
