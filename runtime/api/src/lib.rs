//! The admin API's types: what `vigil serve` accepts and answers on
//! `/v1/...`, shared by the server (which serializes them), the engine
//! (which produces them) and every client (CLI, demo, eval, benches), so a
//! renamed field is a compile error instead of a silent `-` in a table.
//!
//! Nothing here does I/O; the typed HTTP client lives behind the `client`
//! feature so the broker does not link an HTTP client it never uses.

pub mod acks;
#[cfg(feature = "client")]
pub mod client;
pub mod cluster;
pub mod console;
pub mod diff;
pub mod error;
pub mod logs;
pub mod modules;
pub mod openapi;
pub mod replay;
pub mod spec;
pub mod status;

pub use acks::{Cancelled, Undeployed};
pub use cluster::{ClusterNode, ClusterStatus, MoveRequest, Movement, PartitionLeader};
pub use diff::{DiffReport, DiffRequest, DiffTotal, PartitionDiff};
pub use error::{ErrorBody, ErrorKind};
pub use logs::{LogLine, LogsPage, LogsQuery};
pub use modules::{ModuleMeta, ShadowRequest, SwapRequest};
pub use replay::{ReplayPartition, ReplaySpec, ReplayStatus};
pub use spec::{
    Budget, DeploymentSpec, FailurePolicy, Kind, SpecError, StartPosition, REPLAY_PREFIX,
};
pub use status::{DeploymentState, DeploymentStatus, PartitionStatus, VersionStatus};
pub use vigil_abi::Limits;
