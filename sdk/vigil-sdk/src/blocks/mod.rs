//! Streaming building blocks for detectors.
//!
//! Everything here is deterministic pure Rust (no clocks, no randomness,
//! no hash-order dependence), so a module behaves identically natively and
//! in wasm, and implements serde's `Serialize`/`Deserialize`, so a detector
//! built from these blocks snapshots with one
//! [`state::to_bytes(&self)`](crate::state::to_bytes).

mod hygiene;
mod keyed;
mod likelihood;
mod per_key;
mod quantile;
mod series_key;
mod stats;
mod window;

pub use hygiene::{
    score_record, IncidentEvent, Incidents, Label, PeakSuppressor, INCIDENT_CLOSED, INCIDENT_FIELD,
    INCIDENT_OPENED, LABELS_TOPIC_SUFFIX, SCORE_ALERT_FIELD, SCORE_STREAM_FIELD,
    SCORE_STREAM_VALUE,
};
pub use keyed::KeyedState;
pub use likelihood::{log_tail_score, normal_tail, AnomalyLikelihood};
pub use per_key::{KeyedIncidents, KeyedModels, Verdict, KEYS_EVICTED_FIELD, KEYS_TRACKED_FIELD};
pub use quantile::QuantileSketch;
pub use series_key::{KeySpec, SeriesKeys};
pub use stats::{deviation, zscore, Ewma, RollingStats, ZScore, CONSTANT_DEVIATION};
pub use window::{ClosedWindow, SlidingWindow, TumblingWindow};
