//! Response encoding: size prefix, response header, body.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;
use kafka_protocol::ResponseError;

use crate::versions::SUPPORTED_APIS;

/// A response could not be encoded: a broker bug (a field set that the
/// negotiated version cannot carry), never the client's fault.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {api_key:?} v{version} response: {reason}")]
pub struct EncodeError {
    /// The API.
    pub api_key: ApiKey,
    /// The negotiated version.
    pub version: i16,
    /// What the encoder reported.
    pub reason: String,
}

/// Encodes a complete response frame, size prefix included.
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> Result<Bytes, EncodeError> {
    let err = |reason: String| EncodeError {
        api_key,
        version,
        reason,
    };
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, body.header_version(version))
        .map_err(|e| err(format!("header: {e:#}")))?;
    body.encode(&mut buf, version)
        .map_err(|e| err(format!("{e:#}")))?;
    patch_size(&mut buf);
    Ok(buf.freeze())
}

/// The answer to a request for an API or version vigil does not serve.
///
/// ApiVersions gets a v0-format `ApiVersionsResponse` carrying
/// UNSUPPORTED_VERSION and the served ranges, which is how clients learn to
/// retry with a version both sides know (KIP-511). Any other API gets a v0
/// header followed by the error code, the common prefix of an error answer.
pub fn encode_error_response(correlation_id: i32, raw_api_key: i16) -> Bytes {
    let mut buf = BytesMut::with_capacity(16);
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    let code = ResponseError::UnsupportedVersion.code();
    if raw_api_key == ApiKey::ApiVersions as i16 {
        let body = api_versions_body(code);
        if body.encode(&mut buf, 0).is_err() {
            // v0 can carry every field set by `api_versions_body`; fall back to
            // the bare error code rather than sending nothing.
            buf.truncate(8);
            buf.put_i16(code);
        }
    } else {
        buf.put_i16(code);
    }
    patch_size(&mut buf);
    buf.freeze()
}

/// The ApiVersions body listing every served API, with `error_code`.
pub fn api_versions_body(error_code: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(
            SUPPORTED_APIS
                .iter()
                .map(|&(k, min, max)| {
                    ApiVersion::default()
                        .with_api_key(k as i16)
                        .with_min_version(min)
                        .with_max_version(max)
                })
                .collect(),
        )
}

fn patch_size(buf: &mut BytesMut) {
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
}
