//! The admin API's OpenAPI 3.1 description (`GET /openapi.json`), generated
//! from this crate's types: request and answer schemas are derived from the
//! same serde types the server and clients use, so they cannot drift from
//! the wire format. The route table below is the one hand-written part; the
//! server's tests request every route in it to check that it is served.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::console::{GroupInfo, History, Overview, RecordsPage, TopicInfo};
use crate::{
    Cancelled, ClusterStatus, DeploymentSpec, DeploymentStatus, DiffReport, DiffRequest, ErrorBody,
    LogsPage, ModuleMeta, MoveRequest, ReplaySpec, ReplayStatus, ShadowRequest, SwapRequest,
    Undeployed,
};

/// How [`crate::Limits`] looks on the wire (it lives in `vigil-abi`, which
/// does not depend on schemars).
#[derive(JsonSchema)]
#[allow(dead_code)] // only its schema is used
pub(crate) struct LimitsDoc {
    /// Ceiling of the instance's linear memory, MiB (default 64).
    memory_mb: Option<u64>,
    /// Wall-clock budget of one call, ms (default 500).
    cpu_ms_per_batch: Option<u64>,
    /// Alerts one batch may emit (default 10 000).
    max_alerts_per_batch: Option<u32>,
}

/// A request or answer body.
#[derive(Clone, Copy)]
pub enum Body {
    /// No body.
    None,
    /// JSON of the type whose schema this generates.
    Json(fn(&mut SchemaGenerator) -> Schema),
    /// A `.wasm` module.
    Wasm,
    /// Plain or OpenMetrics text.
    Text(&'static str),
}

/// One query parameter: name, JSON type, description.
pub type Query = (&'static str, &'static str, &'static str);

/// One operation of the admin API.
#[derive(Clone, Copy)]
pub struct Route {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// Path with `{name}` / `{id}` parameters, as the server routes it.
    pub path: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// Query parameters.
    pub query: &'static [Query],
    /// Request body.
    pub request: Body,
    /// Success status.
    pub status: u16,
    /// Success body.
    pub response: Body,
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

const fn route(method: &'static str, path: &'static str, summary: &'static str) -> Route {
    Route {
        method,
        path,
        summary,
        query: &[],
        request: Body::None,
        status: 200,
        response: Body::None,
    }
}

/// Every route of the admin API.
pub fn routes() -> Vec<Route> {
    let status = Body::Json(schema::<DeploymentStatus>);
    vec![
        Route {
            response: Body::Text("text/plain"),
            ..route("GET", "/healthz", "Liveness: `ok`.")
        },
        Route {
            response: Body::Text("application/openmetrics-text"),
            ..route(
                "GET",
                "/metrics",
                "The broker's metrics (OpenMetrics text).",
            )
        },
        Route {
            response: Body::Json(schema::<Value>),
            ..route("GET", "/openapi.json", "This description.")
        },
        Route {
            request: Body::Wasm,
            status: 201,
            response: Body::Json(schema::<ModuleMeta>),
            ..route("POST", "/v1/modules", "Upload a detector module.")
        },
        Route {
            query: &[(
                "name",
                "string",
                "Only the versions of the module built from this crate.",
            )],
            response: Body::Json(schema::<Vec<ModuleMeta>>),
            ..route("GET", "/v1/modules", "Uploaded modules, oldest first.")
        },
        Route {
            request: Body::Json(schema::<DeploymentSpec>),
            status: 201,
            response: status,
            ..route(
                "POST",
                "/v1/deployments",
                "Deploy a module on input topics.",
            )
        },
        Route {
            response: Body::Json(schema::<Vec<DeploymentStatus>>),
            ..route("GET", "/v1/deployments", "Every deployment's status.")
        },
        Route {
            response: status,
            ..route("GET", "/v1/deployments/{name}", "One deployment's status.")
        },
        Route {
            response: Body::Json(schema::<Undeployed>),
            ..route(
                "DELETE",
                "/v1/deployments/{name}",
                "Stop and remove a deployment (its alert topic stays).",
            )
        },
        Route {
            response: status,
            ..route(
                "POST",
                "/v1/deployments/{name}/pause",
                "Pause a deployment.",
            )
        },
        Route {
            response: status,
            ..route(
                "POST",
                "/v1/deployments/{name}/resume",
                "Resume a paused or failed deployment.",
            )
        },
        Route {
            query: &[
                (
                    "after",
                    "integer",
                    "Only lines with a greater `seq` (default 0).",
                ),
                (
                    "limit",
                    "integer",
                    "At most this many lines (default and cap 1000).",
                ),
            ],
            response: Body::Json(schema::<LogsPage>),
            ..route(
                "GET",
                "/v1/deployments/{name}/logs",
                "The module's recent log lines.",
            )
        },
        Route {
            request: Body::Json(schema::<SwapRequest>),
            response: status,
            ..route(
                "POST",
                "/v1/deployments/{name}/module",
                "Hot swap of the module.",
            )
        },
        Route {
            request: Body::Json(schema::<ShadowRequest>),
            status: 201,
            response: status,
            ..route(
                "POST",
                "/v1/deployments/{name}/shadow",
                "Run another module beside a deployment.",
            )
        },
        Route {
            request: Body::Json(schema::<ReplaySpec>),
            status: 201,
            response: Body::Json(schema::<ReplayStatus>),
            ..route("POST", "/v1/replays", "Start a replay job.")
        },
        Route {
            response: Body::Json(schema::<Vec<ReplayStatus>>),
            ..route("GET", "/v1/replays", "Every replay job.")
        },
        Route {
            response: Body::Json(schema::<ReplayStatus>),
            ..route("GET", "/v1/replays/{id}", "One replay job.")
        },
        Route {
            response: Body::Json(schema::<Cancelled>),
            ..route(
                "DELETE",
                "/v1/replays/{id}",
                "Cancel a replay job (its topic stays).",
            )
        },
        Route {
            request: Body::Json(schema::<DiffRequest>),
            response: Body::Json(schema::<DiffReport>),
            ..route(
                "POST",
                "/v1/diff",
                "Compare two deployments' or alert topics' alerts.",
            )
        },
        Route {
            response: Body::Json(schema::<ClusterStatus>),
            ..route(
                "GET",
                "/v1/cluster",
                "Brokers, each partition's leader and epoch, movements in progress.",
            )
        },
        Route {
            request: Body::Json(schema::<MoveRequest>),
            status: 202,
            response: Body::Json(schema::<MoveRequest>),
            ..route(
                "POST",
                "/v1/cluster/move",
                "Move a partition to a broker (its leader hands it over).",
            )
        },
        // The web console's read-only views.
        Route {
            response: Body::Json(schema::<Overview>),
            ..route("GET", "/v1/overview", "Counts, rates and storage values.")
        },
        Route {
            query: &[(
                "prefix",
                "string",
                "Only series whose name starts with this.",
            )],
            response: Body::Json(schema::<History>),
            ..route("GET", "/v1/history", "The sampled time series (bounded).")
        },
        Route {
            response: Body::Json(schema::<Vec<TopicInfo>>),
            ..route("GET", "/v1/topics", "Topics with their partitions.")
        },
        Route {
            query: &[
                ("partition", "integer", "Partition (default 0)."),
                (
                    "offset",
                    "integer",
                    "First offset (default: the last `limit` records).",
                ),
                (
                    "limit",
                    "integer",
                    "Records at most (default 50, at most 500).",
                ),
            ],
            response: Body::Json(schema::<RecordsPage>),
            ..route(
                "GET",
                "/v1/topics/{name}/records",
                "A page of a partition's records (key, value, headers).",
            )
        },
        Route {
            response: Body::Json(schema::<Vec<GroupInfo>>),
            ..route("GET", "/v1/groups", "Consumer groups, members and lag.")
        },
        Route {
            query: &[(
                "limit",
                "integer",
                "Alerts at most (default 50, at most 500).",
            )],
            response: Body::Json(schema::<RecordsPage>),
            ..route(
                "GET",
                "/v1/deployments/{name}/alerts",
                "The deployment's newest alerts, newest first.",
            )
        },
    ]
}

fn content(body: Body, g: &mut SchemaGenerator) -> Option<Value> {
    match body {
        Body::None => None,
        Body::Json(f) => Some(json!({ "application/json": { "schema": f(g) } })),
        Body::Wasm => Some(json!({
            "application/wasm": { "schema": { "type": "string", "format": "binary" } }
        })),
        Body::Text(mime) => Some(json!({ mime: { "schema": { "type": "string" } } })),
    }
}

fn operation(r: &Route, g: &mut SchemaGenerator) -> Value {
    let mut params: Vec<Value> = r
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|p| json!({ "name": p, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    params.extend(r.query.iter().map(|(name, ty, desc)| {
        json!({ "name": name, "in": "query", "required": false, "description": desc,
                "schema": { "type": ty } })
    }));
    let mut ok = json!({ "description": "Success." });
    if let Some(c) = content(r.response, g) {
        ok["content"] = c;
    }
    let error = g.subschema_for::<ErrorBody>();
    let mut op = json!({
        "summary": r.summary,
        "operationId": format!("{} {}", r.method.to_lowercase(), r.path),
        "responses": {
            r.status.to_string(): ok,
            "default": {
                "description": "An error: 400 bad input, 404 unknown, 409 conflict, 413 body too large, 503 retry may help, 500 internal.",
                "content": { "application/json": { "schema": error } },
            },
        },
    });
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    if let Some(c) = content(r.request, g) {
        op["requestBody"] = json!({ "required": true, "content": c });
    }
    op
}

/// The OpenAPI 3.1 document of the admin API.
pub fn document() -> Value {
    let mut g = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let mut paths: Map<String, Value> = Map::new();
    for r in routes() {
        let op = operation(&r, &mut g);
        let item = paths.entry(r.path).or_insert_with(|| json!({}));
        item[r.method.to_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "vigil admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Detector modules, deployments, replays and diffs of a vigil broker.",
        },
        "paths": paths,
        "components": { "schemas": g.take_definitions(true) },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` points at a schema the document defines, and every
    /// answer type is there by name.
    #[test]
    fn references_resolve() {
        let doc = document();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for name in [
            "DeploymentSpec",
            "DeploymentStatus",
            "ReplaySpec",
            "LogsPage",
            "ErrorBody",
        ] {
            assert!(
                schemas.contains_key(name),
                "{name} missing: {:?}",
                schemas.keys()
            );
        }
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|x| refs(x, out));
                }
                Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 10, "{all:?}");
        for r in all {
            let name = r.strip_prefix("#/components/schemas/").expect(&r);
            assert!(schemas.contains_key(name), "dangling {r}");
        }
        let spec = &schemas["DeploymentSpec"]["properties"];
        assert_eq!(
            spec["limits"]["$ref"], "#/components/schemas/LimitsDoc",
            "{spec}"
        );
        assert!(
            spec["start"].is_object() && spec["on_failure"].is_object(),
            "{spec}"
        );
    }
}
