//! Request decoding: header, API/version check, body.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::versions::supported_range;

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    /// The request header (correlation id, client id).
    pub header: RequestHeader,
    /// Which API this is.
    pub api_key: ApiKey,
    /// The API version the client used.
    pub version: i16,
    /// The typed body.
    pub body: RequestKind,
}

/// Why a frame could not be turned into a [`Request`].
///
/// [`DecodeError::correlation_id`] tells whether the client can be answered
/// with an error response; otherwise the connection has to be closed.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Fewer than the 8 bytes every request header starts with.
    #[error("request frame of {0} bytes is too short to hold a request header")]
    TooShort(usize),
    /// The API key is not one vigil serves (or not a Kafka API at all).
    #[error("API key {api_key} (version {version}) is not served by this broker")]
    UnknownApiKey {
        /// Raw API key.
        api_key: i16,
        /// Requested version.
        version: i16,
        /// Correlation id to answer with.
        correlation_id: i32,
    },
    /// A served API at a version outside the served range.
    #[error("{api_key:?} version {version} is not supported (this broker serves {min}..={max})")]
    UnsupportedVersion {
        /// The API.
        api_key: ApiKey,
        /// Requested version.
        version: i16,
        /// Lowest served version.
        min: i16,
        /// Highest served version.
        max: i16,
        /// Correlation id to answer with.
        correlation_id: i32,
    },
    /// Header or body bytes do not match the schema of the API version.
    #[error(
        "malformed {api_key:?} v{version} request (correlation id {correlation_id}): {reason}"
    )]
    Malformed {
        /// The API.
        api_key: ApiKey,
        /// Requested version.
        version: i16,
        /// Correlation id from the fixed header prefix.
        correlation_id: i32,
        /// What the decoder reported.
        reason: String,
    },
}

impl DecodeError {
    /// The correlation id to answer with, when the error deserves an error
    /// response rather than a closed connection. Malformed bodies close the
    /// connection (as Kafka does): the client is broken and a typed answer to
    /// a request we could not read would only confuse it further.
    pub fn answerable(&self) -> Option<i32> {
        match self {
            DecodeError::UnknownApiKey { correlation_id, .. }
            | DecodeError::UnsupportedVersion { correlation_id, .. } => Some(*correlation_id),
            DecodeError::TooShort(_) | DecodeError::Malformed { .. } => None,
        }
    }
}

/// Decodes one request frame (the bytes after the size prefix).
pub fn decode_request(mut frame: Bytes) -> Result<Request, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = match ApiKey::try_from(raw_key) {
        Ok(k) if supported_range(k).is_some() => k,
        _ => {
            return Err(DecodeError::UnknownApiKey {
                api_key: raw_key,
                version,
                correlation_id,
            })
        }
    };
    let (min, max) = supported_range(api_key).unwrap_or((0, -1));
    if version < min || version > max {
        return Err(DecodeError::UnsupportedVersion {
            api_key,
            version,
            min,
            max,
            correlation_id,
        });
    }
    let malformed = |reason: String| DecodeError::Malformed {
        api_key,
        version,
        correlation_id,
        reason,
    };
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| malformed(format!("header: {e:#}")))?;
    let body = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| malformed(format!("{e:#}")))?;
    // Trailing bytes are tolerated, as Kafka's own parser does: librdkafka
    // 2.16, for one, sends three extra bytes after a Metadata v12 body that
    // asks for all topics.
    Ok(Request {
        header,
        api_key,
        version,
        body,
    })
}
