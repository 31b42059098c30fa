//! Request decoding with error answers in the API's own form: bodies (within
//! the route's size limit), JSON whatever the content type says (clients have
//! always sent JSON without insisting on the header), and query strings
//! whose unknown parameters are refused.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use vigil_api::ErrorKind;

use super::error::ApiError;

/// The raw request body, refused with 413 past the route's
/// [`DefaultBodyLimit`](axum::extract::DefaultBodyLimit).
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|r| {
                let status = r.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::with_status(
                        status,
                        ErrorKind::Invalid,
                        format!(
                            "request body too large for this endpoint: {}",
                            r.body_text()
                        ),
                    )
                } else {
                    ApiError::invalid(format!("cannot read the request body: {}", r.body_text()))
                }
            })
    }
}

/// Parses `raw` as the JSON `what` (named in the error, e.g. "deployment
/// spec").
pub fn decode<T: DeserializeOwned>(raw: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(raw).map_err(|e| ApiError::invalid(format!("invalid {what}: {e}")))
}

/// Decoded query parameters; `T` should deny unknown fields so that a
/// misspelt parameter is an error rather than silently ignored.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(q)| Params(q))
            .map_err(|e| {
                ApiError::invalid(format!(
                    "invalid query string {:?}: {}",
                    parts.uri.query().unwrap_or_default(),
                    e.body_text()
                ))
            })
    }
}

/// For routes that take no query parameters: any is refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoQuery {}

/// `GET /v1/modules` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModulesQuery {
    /// Only the uploads of the module built from this crate name.
    pub name: Option<String>,
}

/// The one `{name}` or `{id}` segment of a route, percent-decoded.
pub struct Name(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Name {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(name)| Name(name))
            .map_err(|e| ApiError::invalid(format!("invalid path: {}", e.body_text())))
    }
}
