//! Sans-io Kafka wire codec for vigil.
//!
//! This crate turns bytes into typed requests and typed responses into bytes,
//! and knows the layout of magic-v2 record batches. It owns no sockets, no
//! clocks and no storage, so every path through it can be tested (and fuzzed)
//! with plain byte slices.
//!
//! Message bodies are decoded and encoded by the `kafka-protocol` crate; this
//! crate adds what a broker needs around it: frame limits, the table of
//! API versions vigil serves, error responses for requests it cannot decode,
//! and record batch validation (CRC-32C) without re-encoding.

pub mod alloc;
pub mod batch;
pub mod frame;
pub mod request;
pub mod response;
pub mod versions;

pub use batch::{BatchBuilder, BatchError, BatchHeader, RecordBatches};
pub use frame::{FrameDecoder, FrameError, Head, DEFAULT_MAX_FRAME_BYTES};
pub use request::{decode_request, DecodeError, Request};
pub use response::{encode_error_response, encode_response, EncodeError};
pub use versions::{empty_request, supported_range, SUPPORTED_APIS};

pub use kafka_protocol;
