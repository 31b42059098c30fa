//! A blocking, typed client of the admin API (feature `client`): one method
//! per route, every answer decoded into this crate's types, so a renamed or
//! missing field is a [`ClientError::Decode`] naming the route instead of a
//! silent `-` or `0` in a table.
//!
//! Used by the `vigil` command (CLI, demo, eval) and the benches. It blocks
//! the calling thread; async callers run it under `spawn_blocking` (the
//! client is cheap to clone: clones share one connection pool).

use std::io::Read as _;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use url::Url;

use crate::{
    Cancelled, DeploymentSpec, DeploymentStatus, DiffReport, DiffRequest, ErrorBody, ErrorKind,
    LogsPage, LogsQuery, ModuleMeta, ReplaySpec, ReplayStatus, ShadowRequest, SwapRequest,
    Undeployed,
};

/// How long establishing a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole request may take. Generous because uploads and deploys
/// compile the module on the broker, and a diff reads two alert topics.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest answer read. Status lists and diff reports are far smaller; the
/// cap only keeps a misdirected request (e.g. at a file server) bounded.
const MAX_ANSWER: u64 = 64 << 20;

/// Why an admin API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address given for the admin API is not usable.
    #[error("invalid admin API address {url:?}: {reason} (give http://HOST:PORT or HOST:PORT); retrying will not help")]
    BadUrl {
        /// As given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No HTTP answer: connection refused, name not resolved, timeout,
    /// connection reset. Retrying may help once the broker is up.
    #[error("cannot reach the broker's admin API at {base} ({route}): {cause}; retrying may help once the broker is up")]
    Unreachable {
        /// Base URL of the admin API.
        base: String,
        /// `METHOD /path` of the request.
        route: String,
        /// What the transport reported (in the message, not chained as a
        /// source, so `{:#}` does not print it twice).
        cause: Box<ureq::Transport>,
    },
    /// The broker answered with an error status.
    #[error("{route}: {} (HTTP {status}; {})", .body.error, retry_hint(*.status, .body))]
    Api {
        /// `METHOD /path` of the request.
        route: String,
        /// HTTP status.
        status: u16,
        /// The broker's error body; from an older broker (or a proxy) that
        /// answered with something else, `error` holds the raw text and
        /// `kind` is absent.
        body: ErrorBody,
    },
    /// A success answer that is not what the route returns: the broker and
    /// this client disagree on the API. Retrying will not help.
    #[error("{route}: the broker's answer does not decode: {cause}; retrying will not help (do the broker's and this client's versions match?)")]
    Decode {
        /// `METHOD /path` of the request.
        route: String,
        /// The serde error, naming the field.
        cause: serde_json::Error,
    },
    /// A text answer (`/healthz`, `/metrics`) that is not UTF-8.
    #[error("{route}: the answer is not UTF-8 text: {cause}; retrying will not help")]
    NotText {
        /// `METHOD /path` of the request.
        route: String,
        /// Where the bytes went wrong.
        cause: std::string::FromUtf8Error,
    },
    /// The connection broke while the answer was read. Retrying may help.
    #[error("{route}: cannot read the answer: {cause}; retrying may help")]
    Read {
        /// `METHOD /path` of the request.
        route: String,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The request body could not be encoded as JSON (e.g. a non-finite
    /// number). Retrying the same request will not help.
    #[error("{route}: cannot encode the request as JSON: {cause}; retrying will not help")]
    Encode {
        /// `METHOD /path` of the request.
        route: String,
        /// The serde error.
        cause: serde_json::Error,
    },
}

fn retry_hint(status: u16, body: &ErrorBody) -> &'static str {
    if api_retriable(status, body) {
        "retrying may help"
    } else {
        "retrying will not help"
    }
}

/// The class of an error answer: the broker's word, else (older brokers
/// answer `{"error": ...}` only) what its HTTP status means.
fn api_kind(status: u16, body: &ErrorBody) -> Option<ErrorKind> {
    body.kind.or(match status {
        400 => Some(ErrorKind::Invalid),
        404 => Some(ErrorKind::NotFound),
        409 => Some(ErrorKind::Conflict),
        503 => Some(ErrorKind::Unavailable),
        500 => Some(ErrorKind::Internal),
        _ => None,
    })
}

fn api_retriable(status: u16, body: &ErrorBody) -> bool {
    if body.kind.is_some() {
        return body.retriable;
    }
    // Without the broker's word: overload and gateway statuses pass.
    api_kind(status, body).is_some_and(ErrorKind::retriable) || matches!(status, 429 | 502 | 504)
}

impl ClientError {
    /// Whether sending the same request again may succeed.
    pub fn retriable(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } | ClientError::Read { .. } => true,
            ClientError::Api { status, body, .. } => api_retriable(*status, body),
            ClientError::BadUrl { .. }
            | ClientError::Decode { .. }
            | ClientError::NotText { .. }
            | ClientError::Encode { .. } => false,
        }
    }

    /// The class of an error answer (`None` for failures without one).
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ClientError::Api { status, body, .. } => api_kind(*status, body),
            _ => None,
        }
    }

    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the broker could not be reached at all (as opposed to
    /// answering with an error): a restarting broker looks like this.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }
}

/// The error of a non-2xx answer with body `raw`: the broker's
/// [`ErrorBody`], or the raw text when the body is not one.
pub fn error_answer(route: &str, status: u16, raw: &[u8]) -> ClientError {
    let body = match serde_json::from_slice::<ErrorBody>(raw) {
        Ok(b) => b,
        Err(_) => {
            let text = String::from_utf8_lossy(raw).trim().to_string();
            ErrorBody {
                error: if text.is_empty() {
                    "no error message in the answer".into()
                } else {
                    text
                },
                kind: None,
                retriable: false,
            }
        }
    };
    ClientError::Api {
        route: route.to_string(),
        status,
        body,
    }
}

/// Decodes a success answer of `route` as `T`.
pub fn decode_answer<T: DeserializeOwned>(route: &str, raw: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(raw).map_err(|cause| ClientError::Decode {
        route: route.to_string(),
        cause,
    })
}

/// A request body.
enum Body<'a> {
    None,
    Json(Vec<u8>),
    Wasm(&'a [u8]),
}

/// The admin API of one broker.
#[derive(Clone, Debug)]
pub struct AdminClient {
    base: Url,
    agent: ureq::Agent,
}

impl AdminClient {
    /// A client of the admin API at `base` (`http://HOST:PORT` or
    /// `HOST:PORT`, optionally with a path prefix), with the default
    /// timeouts.
    pub fn new(base: &str) -> Result<Self, ClientError> {
        Self::with_timeouts(base, CONNECT_TIMEOUT, REQUEST_TIMEOUT)
    }

    /// As [`AdminClient::new`], with the given connect and whole-request
    /// timeouts.
    pub fn with_timeouts(
        base: &str,
        connect: Duration,
        request: Duration,
    ) -> Result<Self, ClientError> {
        let bad = |reason: String| ClientError::BadUrl {
            url: base.to_string(),
            reason,
        };
        let full = if base.contains("://") {
            base.to_string()
        } else {
            format!("http://{base}")
        };
        let url = Url::parse(&full).map_err(|e| bad(e.to_string()))?;
        if url.scheme() != "http" {
            return Err(bad(format!(
                "scheme {:?} is not supported (the admin API speaks plain http)",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) || url.cannot_be_a_base() {
            return Err(bad("no host".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a query or fragment has no place in it".into()));
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(connect)
            .timeout(request)
            .build();
        Ok(AdminClient { base: url, agent })
    }

    /// The base URL requests go to.
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The URL of `segments` under the base, each one percent-encoded (a
    /// name with `/` or `?` stays one segment).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // Cannot fail: `with_timeouts` refused bases that cannot be one.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends one request; the raw body of a 2xx answer.
    fn send(&self, method: &str, url: Url, body: Body<'_>) -> Result<Vec<u8>, ClientError> {
        let route = format!("{method} {}", url.path());
        let req = self.agent.request_url(method, &url);
        let res = match body {
            Body::None => req.call(),
            Body::Json(b) => req.set("content-type", "application/json").send_bytes(&b),
            Body::Wasm(b) => req.set("content-type", "application/wasm").send_bytes(b),
        };
        match res {
            Ok(r) => read_all(&route, r),
            Err(ureq::Error::Status(status, r)) => {
                let raw = read_all(&route, r)?;
                Err(error_answer(&route, status, &raw))
            }
            Err(ureq::Error::Transport(t)) => Err(ClientError::Unreachable {
                base: self.base().to_string(),
                route,
                cause: Box::new(t),
            }),
        }
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        url: Url,
        body: Body<'_>,
    ) -> Result<T, ClientError> {
        let route = format!("{method} {}", url.path());
        let raw = self.send(method, url, body)?;
        decode_answer(&route, &raw)
    }

    fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(segments);
        let json = serde_json::to_vec(body).map_err(|cause| ClientError::Encode {
            route: format!("POST {}", url.path()),
            cause,
        })?;
        self.call("POST", url, Body::Json(json))
    }

    /// `GET /v1/cluster`: brokers, leaders, movements.
    pub fn cluster(&self) -> Result<crate::ClusterStatus, ClientError> {
        self.call("GET", self.url(&["v1", "cluster"]), Body::None)
    }

    /// `POST /v1/cluster/move`: asks for a partition to move to a node.
    pub fn move_partition(
        &self,
        req: &crate::MoveRequest,
    ) -> Result<crate::MoveRequest, ClientError> {
        self.post_json(&["v1", "cluster", "move"], req)
    }

    /// `POST /v1/modules`: uploads a wasm module.
    pub fn upload_module(&self, wasm: &[u8]) -> Result<ModuleMeta, ClientError> {
        self.call("POST", self.url(&["v1", "modules"]), Body::Wasm(wasm))
    }

    /// `GET /v1/modules[?name=NAME]`: uploaded modules (the versions of
    /// `name` only, when given), oldest first.
    pub fn modules(&self, name: Option<&str>) -> Result<Vec<ModuleMeta>, ClientError> {
        let mut url = self.url(&["v1", "modules"]);
        if let Some(n) = name {
            url.query_pairs_mut().append_pair("name", n);
        }
        self.call("GET", url, Body::None)
    }

    /// `POST /v1/deployments`: deploys a module.
    pub fn deploy(&self, spec: &DeploymentSpec) -> Result<DeploymentStatus, ClientError> {
        self.post_json(&["v1", "deployments"], spec)
    }

    /// `GET /v1/deployments`: every deployment.
    pub fn deployments(&self) -> Result<Vec<DeploymentStatus>, ClientError> {
        self.call("GET", self.url(&["v1", "deployments"]), Body::None)
    }

    /// `GET /v1/deployments/NAME`.
    pub fn status(&self, name: &str) -> Result<DeploymentStatus, ClientError> {
        self.call("GET", self.url(&["v1", "deployments", name]), Body::None)
    }

    /// `POST /v1/deployments/NAME/pause`.
    pub fn pause(&self, name: &str) -> Result<DeploymentStatus, ClientError> {
        let url = self.url(&["v1", "deployments", name, "pause"]);
        self.call("POST", url, Body::None)
    }

    /// `POST /v1/deployments/NAME/resume`.
    pub fn resume(&self, name: &str) -> Result<DeploymentStatus, ClientError> {
        let url = self.url(&["v1", "deployments", name, "resume"]);
        self.call("POST", url, Body::None)
    }

    /// `DELETE /v1/deployments/NAME`.
    pub fn undeploy(&self, name: &str) -> Result<Undeployed, ClientError> {
        self.call("DELETE", self.url(&["v1", "deployments", name]), Body::None)
    }

    /// `GET /v1/deployments/NAME/logs`: the module's recent log lines.
    pub fn logs(&self, name: &str, q: &LogsQuery) -> Result<LogsPage, ClientError> {
        let mut url = self.url(&["v1", "deployments", name, "logs"]);
        if let Some(a) = q.after {
            url.query_pairs_mut().append_pair("after", &a.to_string());
        }
        if let Some(l) = q.limit {
            url.query_pairs_mut().append_pair("limit", &l.to_string());
        }
        self.call("GET", url, Body::None)
    }

    /// `POST /v1/deployments/NAME/module`: hot swap of the module.
    pub fn swap(&self, name: &str, req: &SwapRequest) -> Result<DeploymentStatus, ClientError> {
        self.post_json(&["v1", "deployments", name, "module"], req)
    }

    /// `POST /v1/deployments/NAME/shadow`: the status of the new shadow.
    pub fn shadow(&self, name: &str, req: &ShadowRequest) -> Result<DeploymentStatus, ClientError> {
        self.post_json(&["v1", "deployments", name, "shadow"], req)
    }

    /// `POST /v1/replays`: starts a replay job.
    pub fn replay(&self, spec: &ReplaySpec) -> Result<ReplayStatus, ClientError> {
        self.post_json(&["v1", "replays"], spec)
    }

    /// `GET /v1/replays`: every replay job.
    pub fn replays(&self) -> Result<Vec<ReplayStatus>, ClientError> {
        self.call("GET", self.url(&["v1", "replays"]), Body::None)
    }

    /// `GET /v1/replays/ID`.
    pub fn replay_status(&self, id: &str) -> Result<ReplayStatus, ClientError> {
        self.call("GET", self.url(&["v1", "replays", id]), Body::None)
    }

    /// `DELETE /v1/replays/ID`: cancels a replay job (its topic stays).
    pub fn cancel_replay(&self, id: &str) -> Result<Cancelled, ClientError> {
        self.call("DELETE", self.url(&["v1", "replays", id]), Body::None)
    }

    /// `POST /v1/diff`: compares two deployments' or topics' alerts.
    pub fn diff(&self, req: &DiffRequest) -> Result<DiffReport, ClientError> {
        self.post_json(&["v1", "diff"], req)
    }

    /// `GET /healthz`: `Ok` when the broker answers 2xx.
    pub fn healthz(&self) -> Result<(), ClientError> {
        self.send("GET", self.url(&["healthz"]), Body::None)
            .map(drop)
    }

    /// `GET /metrics`: the OpenMetrics text.
    pub fn metrics(&self) -> Result<String, ClientError> {
        let url = self.url(&["metrics"]);
        let route = format!("GET {}", url.path());
        let raw = self.send("GET", url, Body::None)?;
        String::from_utf8(raw).map_err(|cause| ClientError::NotText { route, cause })
    }
}

fn read_all(route: &str, r: ureq::Response) -> Result<Vec<u8>, ClientError> {
    let mut raw = Vec::new();
    r.into_reader()
        .take(MAX_ANSWER)
        .read_to_end(&mut raw)
        .map_err(|cause| ClientError::Read {
            route: route.to_string(),
            cause,
        })?;
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_with_and_without_scheme_and_encoded_segments() {
        for base in [
            "127.0.0.1:9644",
            "http://127.0.0.1:9644",
            "http://127.0.0.1:9644/",
        ] {
            let c = AdminClient::new(base).unwrap();
            assert_eq!(c.base(), "http://127.0.0.1:9644", "{base}");
            assert_eq!(
                c.url(&["v1", "deployments", "a/b?c d"]).as_str(),
                "http://127.0.0.1:9644/v1/deployments/a%2Fb%3Fc%20d"
            );
        }
        let c = AdminClient::new("localhost:9644/admin").unwrap();
        assert_eq!(
            c.url(&["v1", "replays"]).as_str(),
            "http://localhost:9644/admin/v1/replays"
        );
        for bad in ["https://h:1", "http://", "h:1/?x=1", "ftp://h/"] {
            let e = AdminClient::new(bad).unwrap_err();
            assert!(matches!(e, ClientError::BadUrl { .. }), "{bad}: {e}");
            assert!(!e.retriable());
        }
    }

    #[test]
    fn error_bodies_new_old_and_not_json() {
        let e = error_answer(
            "POST /v1/deployments",
            409,
            br#"{"error": "deployment \"x\" exists", "kind": "conflict", "retriable": false}"#,
        );
        assert_eq!(e.kind(), Some(ErrorKind::Conflict));
        assert_eq!(e.status(), Some(409));
        assert!(!e.retriable());
        let text = e.to_string();
        assert!(
            text.contains("deployment \"x\" exists") && text.contains("HTTP 409"),
            "{text}"
        );
        assert!(text.contains("will not help"), "{text}");

        // An older broker: no kind, the status says it.
        let e = error_answer("GET /v1/replays/r", 503, br#"{"error": "store down"}"#);
        assert_eq!(e.kind(), Some(ErrorKind::Unavailable));
        assert!(e.retriable(), "{e}");
        assert!(e.to_string().contains("may help"), "{e}");

        // The broker's word wins over the status.
        let e = error_answer(
            "GET /x",
            503,
            br#"{"error": "corrupt", "kind": "internal", "retriable": false}"#,
        );
        assert_eq!(e.kind(), Some(ErrorKind::Internal));
        assert!(!e.retriable());

        // Not JSON: the raw text is the message.
        let e = error_answer("GET /nope", 404, b"no such endpoint: /nope\n");
        match &e {
            ClientError::Api { body, .. } => {
                assert_eq!(body.error, "no such endpoint: /nope");
                assert_eq!(body.kind, None);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(e.kind(), Some(ErrorKind::NotFound));
        let e = error_answer("GET /x", 418, b"");
        assert_eq!(e.kind(), None);
        assert!(e.to_string().contains("no error message"), "{e}");
    }

    #[test]
    fn answers_with_a_renamed_or_missing_field_do_not_decode() {
        let good = serde_json::json!({"undeployed": "x"});
        let ok: Undeployed =
            decode_answer("DELETE /v1/deployments/x", good.to_string().as_bytes()).unwrap();
        assert_eq!(ok.undeployed, "x");
        let e = decode_answer::<Undeployed>("DELETE /v1/deployments/x", br#"{"removed": "x"}"#)
            .unwrap_err();
        assert!(matches!(e, ClientError::Decode { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("DELETE /v1/deployments/x") && text.contains("undeployed"),
            "{text}"
        );
        assert!(!e.retriable());
    }
}
