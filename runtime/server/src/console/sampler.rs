//! Fills the console's [`History`] from a running broker every
//! [`History::interval`]: the broker's request rates, the storage's upload
//! lag, cache hit ratio and object store request rate, and per deployment
//! its records/s, alerts/s, lag and event age.

use std::sync::Arc;

use tokio::sync::watch;
use vigil_storage::store::StoreOp;

use super::history::{History, Rates};
use crate::broker::Broker;

/// Samples `broker` into `history` until `shutdown` turns true.
pub fn spawn(
    broker: Arc<Broker>,
    history: Arc<History>,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut stop = shutdown;
        let mut tick = tokio::time::interval(history.interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rates = Rates::default();
        loop {
            tokio::select! {
                _ = tick.tick() => sample(&broker, &history, &mut rates).await,
                () = crate::server::until_shutdown(&mut stop) => break,
            }
        }
    })
}

fn requests(broker: &Broker, api: &str) -> f64 {
    super::requests_so_far(&broker.metrics, api) as f64
}

/// Takes one sample of everything (see the module docs).
async fn sample(broker: &Broker, history: &History, rates: &mut Rates) {
    let now = broker.log.clock().now_ms();
    let put = |name: &str, value: Option<f64>| {
        if let Some(v) = value {
            history.record(name, now, v);
        }
    };
    let rate = |rates: &mut Rates, name: &str, total: f64| rates.rate(name, now, total);
    put(
        "broker.produce_per_sec",
        rate(rates, "produce", requests(broker, "Produce")),
    );
    put(
        "broker.fetch_per_sec",
        rate(rates, "fetch", requests(broker, "Fetch")),
    );
    let log = &broker.log;
    let appended = log
        .stats
        .appended_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    put(
        "storage.appended_bytes_per_sec",
        rate(rates, "appended", appended as f64),
    );
    put(
        "storage.upload_lag_ms",
        Some(log.upload_lag().as_millis() as f64),
    );
    let cache = log.block_cache_stats();
    let hits = rate(rates, "hits", cache.hits as f64);
    let misses = rate(rates, "misses", cache.misses as f64);
    if let (Some(h), Some(m)) = (hits, misses) {
        put(
            "storage.cache_hit_ratio",
            (h + m > 0.0).then(|| h / (h + m)),
        );
    }
    let store = broker.store_metrics.stats();
    let store_requests: u64 = StoreOp::ALL
        .iter()
        .map(|&op| store.total_requests(op))
        .sum();
    put(
        "storage.object_store_requests_per_sec",
        rate(rates, "store", store_requests as f64),
    );
    for d in broker.detectors.list().await {
        let ps = &d.partitions;
        let records: u64 = ps.iter().map(|p| p.records).sum();
        let alerts: u64 = ps.iter().map(|p| p.alerts).sum();
        let key = |what: &str| format!("deployment.{}.{what}", d.name);
        put(
            &key("records_per_sec"),
            rate(rates, &key("records"), records as f64),
        );
        put(
            &key("alerts_per_sec"),
            rate(rates, &key("alerts"), alerts as f64),
        );
        put(
            &key("lag"),
            Some(ps.iter().map(|p| p.lag).sum::<i64>() as f64),
        );
        put(
            &key("event_age_ms"),
            ps.iter()
                .filter_map(|p| p.event_age_ms)
                .max()
                .map(|a| a as f64),
        );
    }
    rates.sweep();
}
