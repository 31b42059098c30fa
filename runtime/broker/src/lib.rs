//! The vigil broker: a Kafka-compatible server over vigil's object-store log.
//!
//! `listener → connection → frame → request → handler → log`, with the
//! consumer-group coordinator beside the log and an admin HTTP endpoint for
//! health and metrics.

pub mod admin;
pub mod broker;
pub mod client;
pub mod config;
pub mod connection;
pub mod detectors;
pub mod errors;
pub mod group_store;
pub mod groups;
pub mod handlers;
pub mod metrics;
pub mod server;
pub mod wasm_build;

pub use broker::Broker;
pub use config::ServeConfig;
