//! The small answers of the admin routes that remove something.

use serde::{Deserialize, Serialize};

/// `DELETE /v1/deployments/NAME` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Undeployed {
    /// The deployment that was removed.
    pub undeployed: String,
}

/// `DELETE /v1/replays/ID` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Cancelled {
    /// The replay job that was cancelled.
    pub cancelled: String,
}
