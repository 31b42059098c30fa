//! The web console: a single page served at `/console` on the admin
//! listener, its script and style embedded in the binary (no CDN, no build
//! step), drawing what the admin API serves: the `/v1` routes the CLI uses
//! plus the read-only views of [`views`] and the time-series [`history`]
//! that [`sampler`] fills every few seconds.
//!
//! ```text
//! GET /console                 → the page (index.html)
//! GET /console/app.js          → the script
//! GET /console/app.css         → the style
//! ```
//! See docs/design/0011-console.md.

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use vigil_api::console::BrokerInfo;
use vigil_groups::GroupCoordinator;
use vigil_storage::store::ObjectStoreMetrics;

use crate::broker::Broker;
use crate::metrics::{ApiLabel, Metrics};

pub mod history;
pub mod sampler;
pub mod views;

pub use history::History;

/// What the console's views read beyond the admin API's own state.
#[derive(Default)]
pub struct Console {
    /// Sampled series.
    pub history: Arc<History>,
    /// Consumer groups (`None`: an admin API without a broker, in tests).
    pub groups: Option<Arc<GroupCoordinator>>,
    /// Object store request counters.
    pub store: Option<ObjectStoreMetrics>,
    /// Cluster id.
    pub cluster_id: String,
    /// The brokers of the cluster.
    pub brokers: Vec<BrokerInfo>,
}

impl Console {
    /// The console of a running broker, with an empty history (see
    /// [`sampler::spawn`]).
    pub fn of(broker: &Broker) -> Console {
        let (host, port) = broker.advertised();
        Console {
            history: Arc::new(History::default()),
            groups: Some(broker.groups.clone()),
            store: Some(broker.store_metrics.clone()),
            cluster_id: broker.cluster_id.clone(),
            brokers: vec![BrokerInfo {
                node_id: broker.settings.server.node_id,
                kafka: format!("{host}:{port}"),
                admin: broker.settings.server.admin_listen.to_string(),
            }],
        }
    }
}

/// A Kafka API's request count so far (0 before its first request), read
/// without creating its series, which would add a line to `/metrics`.
pub(crate) fn requests_so_far(metrics: &Metrics, api: &str) -> u64 {
    let label = ApiLabel {
        api: api.to_string(),
    };
    metrics.requests.get(&label).map_or(0, |c| c.get())
}

const INDEX: &str = include_str!("../../assets/console/index.html");
const SCRIPT: &str = include_str!("../../assets/console/app.js");
const STYLE: &str = include_str!("../../assets/console/app.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Assets change only with the binary; a reload after an upgrade
            // must not run an old script against a new API.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// `GET /console`.
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /console/app.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /console/app.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}
