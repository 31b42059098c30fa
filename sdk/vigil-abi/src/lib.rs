//! The contract between the vigil broker (host) and detector modules
//! (guests). Both sides compile this crate, so the layout code exists once;
//! the format is described in `docs/design/0003-detector-abi.md`.

mod alerts;
mod batch;
#[cfg(feature = "limits")]
mod limits;
mod wire;

pub use alerts::{decode_alerts, encode_alerts, Alert, Severity};
pub use batch::{decode_batch, EncodedBatch};
#[cfg(feature = "limits")]
pub use limits::Limits;

/// The ABI version this crate speaks. Bumped on any incompatible change; the
/// host refuses modules built for another version.
pub const ABI_VERSION: i32 = 1;

/// Names of the functions a detector module exports.
pub mod exports {
    /// `() -> i32`: the module's ABI version.
    pub const ABI_VERSION: &str = "vigil_abi_version";
    /// `() -> i32`: the SDK version, `major<<16 | minor<<8 | patch`.
    pub const SDK_VERSION: &str = "vigil_sdk_version";
    /// `(len) -> ptr`: the guest buffer the host writes the next input into.
    pub const INPUT: &str = "vigil_input";
    /// `(len) -> status`: construct the detector from config JSON.
    pub const INIT: &str = "vigil_init";
    /// `(len) -> status`: process one encoded batch.
    pub const PROCESS: &str = "vigil_process";
    /// `() -> status`: snapshot state through `emit_state`.
    pub const SNAPSHOT: &str = "vigil_snapshot";
    /// `(len) -> status`: restore state from snapshot bytes.
    pub const RESTORE: &str = "vigil_restore";
    /// The guest's linear memory.
    pub const MEMORY: &str = "memory";
}

/// Names of the host functions, all in module [`imports::MODULE`].
pub mod imports {
    /// The import module name.
    pub const MODULE: &str = "vigil";
    /// `(level, ptr, len)`: a log line.
    pub const LOG: &str = "log";
    /// `(ptr, len) -> i32`: encoded alerts; -1 means the limit was exceeded.
    pub const EMIT_ALERTS: &str = "emit_alerts";
    /// `(ptr, len)`: error message for the failing call.
    pub const SET_ERROR: &str = "set_error";
    /// `(ptr, len)`: snapshot bytes.
    pub const EMIT_STATE: &str = "emit_state";
}

/// Status codes returned by guest exports.
pub mod status {
    /// Success.
    pub const OK: i32 = 0;
    /// The detector reported an error (see `set_error`).
    pub const ERROR: i32 = 1;
    /// The detector does not support this call (snapshot/restore).
    pub const UNSUPPORTED: i32 = 2;
}

/// Log levels passed to the `log` import.
pub mod log_level {
    /// Error.
    pub const ERROR: i32 = 0;
    /// Warning.
    pub const WARN: i32 = 1;
    /// Info.
    pub const INFO: i32 = 2;
    /// Debug.
    pub const DEBUG: i32 = 3;
    /// Trace.
    pub const TRACE: i32 = 4;
}

/// Names of the record columns every batch carries.
pub mod columns {
    /// Int32: partition of the record.
    pub const PARTITION: &str = "_partition";
    /// Int64: offset of the record.
    pub const OFFSET: &str = "_offset";
    /// Timestamp(ms): record timestamp.
    pub const TIMESTAMP: &str = "_timestamp";
    /// Binary, nullable: record key.
    pub const KEY: &str = "_key";
    /// Binary, nullable: record value.
    pub const VALUE: &str = "_value";
    /// List<Struct<key Utf8, value Binary?>>: record headers.
    pub const HEADERS: &str = "_headers";

    use std::sync::Arc;

    use arrow_schema::{DataType, Field, Fields, TimeUnit};

    /// The children of one header entry: `key` Utf8, `value` Binary?.
    pub fn header_fields() -> Fields {
        Fields::from(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Binary, true),
        ])
    }

    /// Type of the [`HEADERS`] column: `List<Struct<key, value>>`.
    pub fn headers_type() -> DataType {
        DataType::List(Arc::new(Field::new_list_field(
            DataType::Struct(header_fields()),
            true,
        )))
    }

    /// The record columns every batch starts with, in ABI order. Host and
    /// SDK build their batches from this one definition.
    pub fn record_fields() -> Vec<Field> {
        vec![
            Field::new(PARTITION, DataType::Int32, false),
            Field::new(OFFSET, DataType::Int64, false),
            Field::new(
                TIMESTAMP,
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new(KEY, DataType::Binary, true),
            Field::new(VALUE, DataType::Binary, true),
            Field::new(HEADERS, headers_type(), false),
        ]
    }
}

/// Packs an SDK version as `vigil_sdk_version` returns it.
pub const fn pack_version(major: u8, minor: u8, patch: u8) -> i32 {
    ((major as i32) << 16) | ((minor as i32) << 8) | patch as i32
}

/// Unpacks a value returned by `vigil_sdk_version` into `major.minor.patch`.
pub fn unpack_version(v: i32) -> String {
    format!("{}.{}.{}", (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff)
}

/// Why bytes crossing the ABI could not be encoded or decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AbiError {
    /// The input ended before a complete value was read.
    #[error("ABI payload truncated: needed {needed} bytes at offset {at}, have {len}")]
    Truncated {
        /// Where the read started.
        at: usize,
        /// Bytes it needed.
        needed: usize,
        /// Total payload length.
        len: usize,
    },
    /// The batch region does not start with the magic number.
    #[error("not a vigil batch region (magic {0:#010x})")]
    BadMagic(u32),
    /// A data type tag this version does not know.
    #[error("unknown data type tag {0} in batch descriptor")]
    UnknownType(u8),
    /// The host tried to encode a type the ABI cannot carry.
    #[error("column {column:?} has type {data_type}, which ABI v1 cannot carry")]
    UnsupportedType {
        /// Column name.
        column: String,
        /// Its Arrow type.
        data_type: String,
    },
    /// An array with a non-zero Arrow offset (a slice) was passed to the encoder.
    #[error("column {0:?} is a sliced array; normalize it before encoding")]
    Sliced(String),
    /// A string in the payload is not UTF-8.
    #[error("invalid UTF-8 in {0}")]
    Utf8(&'static str),
    /// A size does not fit the 32-bit fields of the format.
    #[error("{0} exceeds the 4 GiB limit of ABI v1")]
    TooLarge(&'static str),
    /// An unknown severity byte.
    #[error("unknown severity {0}")]
    BadSeverity(u8),
    /// The descriptor is structurally inconsistent.
    #[error("malformed batch descriptor: {0}")]
    Malformed(String),
}
