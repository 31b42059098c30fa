//! Uploaded detector modules and hot swap / shadow requests.

use serde::{Deserialize, Serialize};

/// Registry metadata of an uploaded module.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ModuleMeta {
    /// sha256 of the bytes, lowercase hex.
    pub hash: String,
    /// Crate name the module was built from, when it says.
    pub name: Option<String>,
    /// Crate version, when it says.
    pub version: Option<String>,
    /// Detector ABI version.
    pub abi_version: i32,
    /// SDK version it was built with.
    pub sdk_version: String,
    /// Size in bytes.
    pub size: usize,
    /// Upload time, ms since the epoch.
    pub uploaded_at_ms: i64,
}

/// `POST /v1/deployments/NAME/module`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwapRequest {
    /// The new module (any reference the registry resolves).
    pub module: String,
    /// A new config (default: keep the current one).
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// When the new version declines the old state: how many records
    /// before the swap point (per partition) it is re-warmed on, with their
    /// alerts suppressed (default 10 000).
    #[serde(default)]
    pub rebuild_records: Option<i64>,
}

/// `POST /v1/deployments/NAME/shadow`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowRequest {
    /// The candidate module.
    pub module: String,
    /// Shadow deployment name (default `<live>.shadow`).
    #[serde(default)]
    pub name: Option<String>,
    /// Shadow alert topic (default: the shadow deployment's name).
    #[serde(default)]
    pub output: Option<String>,
    /// Config for the candidate (default: the live one's).
    #[serde(default)]
    pub config: Option<serde_json::Value>,
}
