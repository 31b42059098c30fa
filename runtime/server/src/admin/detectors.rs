//! `/v1` admin API: modules and deployments, as JSON.
//!
//! ```text
//! POST   /v1/modules                      body: .wasm bytes → module metadata
//! GET    /v1/modules[?name=NAME]          → [module metadata], oldest first
//! POST   /v1/deployments                  body: deployment spec → status
//! GET    /v1/deployments                  → [status]
//! GET    /v1/deployments/NAME             → status
//! POST   /v1/deployments/NAME/pause       → status
//! POST   /v1/deployments/NAME/resume      → status
//! DELETE /v1/deployments/NAME             → {"undeployed": NAME}
//! POST   /v1/deployments/NAME/module      body: {"module", "config"?, "rebuild_records"?} → status (hot swap)
//! POST   /v1/deployments/NAME/shadow      body: {"module", "name"?, "output"?, "config"?} → status of the shadow
//! POST   /v1/replays                      body: replay spec → replay status
//! GET    /v1/replays                      → [replay status]
//! GET    /v1/replays/ID                   → replay status
//! DELETE /v1/replays/ID                   → {"cancelled": ID}
//! ```
//! Errors are `{"error": "..."}` with 400 (bad input), 404 (unknown), 409
//! (exists) or 503 (storage trouble; retry).

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Serialize;

use super::Reply;
use crate::broker::Broker;
use vigil_api::ReplaySpec;
use vigil_api::{ShadowRequest, SwapRequest};
use vigil_engine::registry::RegistryError;
use vigil_engine::spec::{DeploymentSpec, Kind};
use vigil_engine::DetectorError;

/// Largest accepted request body (modules are a few MiB at most).
const MAX_BODY: usize = 64 << 20;

pub(super) fn json<T: Serialize>(status: StatusCode, v: &T) -> Reply {
    match serde_json::to_vec_pretty(v) {
        Ok(b) => (status, "application/json", Bytes::from(b)),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

pub(super) fn error(status: StatusCode, msg: &str) -> Reply {
    let body = serde_json::json!({ "error": msg });
    (status, "application/json", Bytes::from(body.to_string()))
}

fn status_of(e: &DetectorError) -> StatusCode {
    match e {
        DetectorError::Spec(_)
        | DetectorError::Init { .. }
        | DetectorError::Schema(_)
        | DetectorError::Registry(RegistryError::Invalid(_))
        | DetectorError::Registry(RegistryError::Ambiguous(_)) => StatusCode::BAD_REQUEST,
        DetectorError::NotFound(_)
        | DetectorError::ReplayNotFound(_)
        | DetectorError::UnknownTopic(_)
        | DetectorError::Registry(RegistryError::NotFound(_)) => StatusCode::NOT_FOUND,
        DetectorError::Exists(_) => StatusCode::CONFLICT,
        DetectorError::Storage(vigil_storage::StorageError::Invalid(_)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

pub(super) fn fail(e: DetectorError) -> Reply {
    error(status_of(&e), &e.to_string())
}

/// Reads and parses a JSON request body; `what` names it in errors.
pub(super) async fn parse<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
    what: &str,
) -> Result<T, Reply> {
    let raw = body(req).await?;
    serde_json::from_slice(&raw)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("invalid {what}: {e}")))
}

pub(super) async fn body(req: Request<Incoming>) -> Result<Bytes, Reply> {
    Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the request body (limit {MAX_BODY} bytes): {e}"),
            )
        })
}

/// Serves one `/v1/...` request.
pub(super) async fn route(broker: &Broker, req: Request<Incoming>) -> Reply {
    let d = &broker.detectors;
    let method = req.method().as_str().to_string();
    let name_filter = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("name="))
            .map(str::to_string)
    });
    let path = req.uri().path().trim_end_matches('/').to_string();
    let parts: Vec<&str> = path.split('/').skip(2).collect();
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["modules"]) => {
            let wasm = match body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            match d.registry().upload(wasm).await {
                Ok(meta) => json(StatusCode::CREATED, &meta),
                Err(e) => fail(e.into()),
            }
        }
        ("GET", ["modules"]) => match match &name_filter {
            Some(n) => d.registry().versions(n).await,
            None => d.registry().list().await,
        } {
            Ok(list) => json(StatusCode::OK, &list),
            Err(e) => fail(e.into()),
        },
        ("POST", ["deployments"]) => {
            let spec: DeploymentSpec = match parse(req, "deployment spec").await {
                Ok(s) => s,
                Err(r) => return r,
            };
            if spec.kind != Kind::Live {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid deployment spec: `kind` is set by the broker (use /v1/replays or /v1/deployments/NAME/shadow)",
                );
            }
            match d.deploy(spec).await {
                Ok(s) => json(StatusCode::CREATED, &s),
                Err(e) => fail(e),
            }
        }
        ("GET", ["deployments"]) => json(StatusCode::OK, &d.list().await),
        ("GET", ["deployments", name]) => match d.status(name).await {
            Ok(s) => json(StatusCode::OK, &s),
            Err(e) => fail(e),
        },
        ("POST", ["deployments", name, "pause"]) => match d.pause(name).await {
            Ok(s) => json(StatusCode::OK, &s),
            Err(e) => fail(e),
        },
        ("POST", ["deployments", name, "resume"]) => match d.resume(name).await {
            Ok(s) => json(StatusCode::OK, &s),
            Err(e) => fail(e),
        },
        ("DELETE", ["deployments", name]) => match d.undeploy(name).await {
            Ok(()) => json(StatusCode::OK, &serde_json::json!({ "undeployed": name })),
            Err(e) => fail(e),
        },
        ("POST", ["deployments", name, "module"]) => {
            let name = name.to_string();
            match parse::<SwapRequest>(req, "swap request").await {
                Ok(r) => match d.swap(&name, r).await {
                    Ok(s) => json(StatusCode::OK, &s),
                    Err(e) => fail(e),
                },
                Err(r) => r,
            }
        }
        ("POST", ["deployments", name, "shadow"]) => {
            let name = name.to_string();
            match parse::<ShadowRequest>(req, "shadow request").await {
                Ok(r) => match d.shadow(&name, r).await {
                    Ok(s) => json(StatusCode::CREATED, &s),
                    Err(e) => fail(e),
                },
                Err(r) => r,
            }
        }
        ("POST", ["replays"]) => match parse::<ReplaySpec>(req, "replay spec").await {
            Ok(r) => match d.replay(r).await {
                Ok(s) => json(StatusCode::CREATED, &s),
                Err(e) => fail(e),
            },
            Err(r) => r,
        },
        ("GET", ["replays"]) => json(StatusCode::OK, &d.replays().await),
        ("GET", ["replays", id]) => match d.replay_status(id).await {
            Ok(s) => json(StatusCode::OK, &s),
            Err(e) => fail(e),
        },
        ("DELETE", ["replays", id]) => match d.cancel_replay(id).await {
            Ok(()) => json(StatusCode::OK, &serde_json::json!({ "cancelled": id })),
            Err(e) => fail(e),
        },
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("no such endpoint: {method} {path} (see `vigil detector --help`)"),
        ),
    }
}
