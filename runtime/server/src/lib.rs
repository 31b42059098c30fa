//! The vigil broker process: a Kafka-compatible server over vigil's
//! object-store log, with the detector engine running beside it.
//!
//! `listener → connection → frame → request → handler → log`, the
//! consumer-group coordinator (`vigil_groups`) beside the log, the detector
//! engine (`vigil_engine`) fed from it, and an admin HTTP endpoint whose
//! routes are thin calls into the engine, plus `/healthz` and `/metrics`.

pub mod admin;
pub mod broker;
pub mod cluster;
mod completion;
pub mod connection;
pub mod console;
pub mod drills;
pub mod errors;
pub mod handlers;
pub mod metrics;
pub mod security;
pub mod server;
pub mod settings;

pub use broker::{Broker, Components};
pub use settings::Settings;
