//! What kind of failure an operation had, independent of its cause: the one
//! vocabulary the engine, the admin routes (HTTP status) and clients (retry
//! or not) share.

use serde::{Deserialize, Serialize};

/// The class of an admin operation's failure. Every library error that can
/// reach the admin API says which one it is, and the server maps each to
/// exactly one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is wrong (bad spec, bad module, bad config): HTTP 400.
    /// Retrying the same request cannot help.
    Invalid,
    /// The named thing (deployment, replay, module, topic) does not exist:
    /// HTTP 404. Retrying cannot help until someone creates it.
    NotFound,
    /// The request conflicts with current state (a name that exists, an
    /// operation the current state does not allow): HTTP 409.
    Conflict,
    /// A dependency (object store, log) failed in a way that may pass:
    /// HTTP 503. Retrying may help.
    Unavailable,
    /// A bug or corrupt stored data: HTTP 500. Retrying will not help.
    Internal,
}

impl ErrorKind {
    /// Whether sending the same request again may succeed.
    pub fn retriable(self) -> bool {
        matches!(self, ErrorKind::Unavailable)
    }

    /// The HTTP status the admin API answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Invalid => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }
}

/// The body of every admin API error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorBody {
    /// What went wrong, naming the deployment/module/topic/key involved.
    pub error: String,
    /// The class of failure (absent in answers from older brokers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ErrorKind>,
    /// Whether the same request may succeed later.
    #[serde(default)]
    pub retriable: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_is_retriable_and_statuses_are_distinct() {
        let all = [
            ErrorKind::Invalid,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::Unavailable,
            ErrorKind::Internal,
        ];
        let statuses: std::collections::HashSet<u16> =
            all.iter().map(|k| k.http_status()).collect();
        assert_eq!(statuses.len(), all.len());
        assert_eq!(
            all.iter().filter(|k| k.retriable()).collect::<Vec<_>>(),
            vec![&ErrorKind::Unavailable]
        );
    }
}
