//! vigil's log.
//!
//! Data path: a produced batch gets its offsets from its partition
//! ([`partition`]), goes through the write-ahead log ([`wal`]: group commit,
//! fsync) and becomes visible (high watermark) once durable. The uploader
//! ([`upload`]) moves durable data into segment objects in the object store and
//! records them in the manifest ([`manifest`]: compare-and-swap with a writer
//! epoch), after which the WAL space is reclaimed. Reads are served from the
//! in-memory log cache or, below it, from segment objects ([`read`]).
//!
//! The object store is the source of truth: topic metadata, segment lists,
//! idempotent producer state and the key/value state the broker keeps (group
//! offsets) live in the manifest. The local disk holds only the WAL tail.

pub mod activity;
pub mod admin;
pub mod cache;
pub mod catalog;
pub mod clock;
pub mod compact;
pub mod config;
pub mod dataobj;
pub mod epochs;
pub mod error;
pub mod fence;
mod gentle;
pub mod keycompact;
pub mod kv;
pub mod kvkeys;
pub mod leadership;
pub mod lease;
pub mod log;
pub mod manifest;
pub mod partition;
pub mod parts;
pub mod paths;
pub mod pool;
pub mod producer;
pub mod read;
pub mod retention;
pub mod state;
pub mod store;
pub mod upload;
pub mod wal;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{LogConfig, DEFAULT_UPLOAD_BYTES, DEFAULT_WAL_GROUP_HOLD};
pub use error::StorageError;
pub use log::{Log, Topic, TopicConfig};
pub use partition::{AppendError, AppendOutcome, Partition, PendingAppend};
pub use read::{FetchedBatches, TimestampLookup};
pub use store::{object_store_from_url, object_store_from_url_with, StoreOptions};
