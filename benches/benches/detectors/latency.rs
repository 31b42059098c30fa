//! Section 2: alert latency, vigil vs the external pipeline.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use tokio::runtime::Runtime;
use vigil_api::client::AdminClient;
use vigil_server::server::Running;

use crate::broker::{produce, totals, zscore_spec, DeploymentTotals, Sent};
use crate::common;
use crate::common::detect::{value_schema, zscore_config};
use crate::common::{lock, percentile};
use crate::pipeline::{collect_alerts, external_pipeline, ExtStats};
use crate::settings::Params;
use crate::{DRAIN, EXT_MAX_BATCH};

/// Latency of one pipeline's alerts.
pub(crate) struct PipelineResult {
    pub(crate) name: &'static str,
    pub(crate) sent: Sent,
    /// Sorted ns, consume time − ack time (negative clamped to 0).
    pub(crate) from_ack: Vec<u64>,
    /// Sorted ns, consume time − send time.
    pub(crate) from_send: Vec<u64>,
    pub(crate) expected: usize,
    pub(crate) matched: usize,
    /// Alerts consumed before the producer saw the source record's ack.
    pub(crate) before_ack: usize,
    /// Alerts about measured records that are not outliers.
    pub(crate) unexpected: usize,
    pub(crate) duplicates: usize,
    pub(crate) deployment: Option<DeploymentTotals>,
    pub(crate) ext: Option<ExtStats>,
}

pub(crate) struct LatencyResult {
    /// The deployment holding acks until its alerts are durable (the
    /// default `ack_budget_ms`).
    pub(crate) vigil: PipelineResult,
    /// The same deployment with `ack_budget_ms: 0`: alerts follow the ack.
    pub(crate) vigil_async: PipelineResult,
    pub(crate) external: PipelineResult,
}

/// Produces to `input` while `collect_alerts` reads `alerts`, then matches
/// alerts to their source records.
pub(crate) fn run_pipeline(
    name: &'static str,
    addr: &str,
    input: &str,
    alerts: &str,
    p: &Params,
    side: impl FnOnce(&AtomicBool) -> Result<Option<ExtStats>> + Send,
) -> Result<PipelineResult> {
    let base = Instant::now();
    let stop = AtomicBool::new(false);
    let consumed: Mutex<Vec<(i32, i64, u64)>> = Mutex::new(Vec::new());
    let warmup = p.latency_warmup() as usize;
    let n = (p.rate * p.latency_secs).ceil() as usize;
    let (sent, ext) = std::thread::scope(|s| -> Result<(Sent, Option<ExtStats>)> {
        let collector = s.spawn(|| {
            collect_alerts(
                addr,
                alerts,
                p.partitions,
                input,
                base,
                p.fetch_wait_ms,
                &stop,
                &consumed,
            )
        });
        let side = s.spawn(|| side(&stop));
        let sent = produce(
            addr,
            input,
            base,
            p.linger_ms,
            p.keys,
            p.outlier_ppm(),
            warmup,
            n,
            p.rate,
        );
        // Wait for every expected alert (or give up after DRAIN).
        let expected: HashSet<(i32, i64)> = match &sent {
            Ok(sent) => sent
                .measured()
                .filter(|&i| sent.outlier[i])
                .filter_map(|i| sent.acks[i].map(|(part, off, _)| (part, off)))
                .collect(),
            Err(_) => HashSet::new(),
        };
        let deadline = Instant::now() + DRAIN;
        while sent.is_ok() && Instant::now() < deadline && !collector.is_finished() {
            let got: HashSet<(i32, i64)> = lock(&consumed)
                .iter()
                .map(|&(part, off, _)| (part, off))
                .filter(|k| expected.contains(k))
                .collect();
            if got.len() >= expected.len() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::SeqCst);
        let collected = collector
            .join()
            .map_err(|_| anyhow!("{name}: the alert consumer panicked"))?;
        let ext = side
            .join()
            .map_err(|_| anyhow!("{name}: the pipeline thread panicked"))?;
        let sent = sent?;
        collected?;
        Ok((sent, ext?))
    })?;

    let mut by_source: HashMap<(i32, i64), usize> = HashMap::new();
    for (i, a) in sent.acks.iter().enumerate() {
        if let Some((part, off, _)) = a {
            by_source.insert((*part, *off), i);
        }
    }
    let expected = sent.measured().filter(|&i| sent.outlier[i]).count();
    let (mut from_ack, mut from_send) = (Vec::new(), Vec::new());
    let (mut before_ack, mut unexpected, mut duplicates) = (0, 0, 0);
    let mut seen = HashSet::new();
    for &(part, off, at) in lock(&consumed).iter() {
        let Some(&i) = by_source.get(&(part, off)) else {
            continue;
        };
        if i < sent.warmup {
            continue;
        }
        if !seen.insert(i) {
            duplicates += 1;
            continue;
        }
        if !sent.outlier[i] {
            unexpected += 1;
        }
        let ack = sent.acks[i].map_or(0, |(_, _, a)| a);
        if at < ack {
            before_ack += 1;
        }
        from_ack.push(at.saturating_sub(ack));
        from_send.push(at.saturating_sub(sent.send_ns[i]));
    }
    from_ack.sort_unstable();
    from_send.sort_unstable();
    Ok(PipelineResult {
        name,
        matched: from_ack.len(),
        sent,
        from_ack,
        from_send,
        expected,
        before_ack,
        unexpected,
        duplicates,
        deployment: None,
        ext,
    })
}

pub(crate) fn section_latency(
    rt: &Runtime,
    running: &Running,
    admin: &AdminClient,
    hash: &str,
    p: &Params,
) -> Result<LatencyResult> {
    let addr = running.kafka_addr.to_string();
    println!(
        "section 2: vigil pipeline ({} s at {}/s after {} warm-up records) …",
        p.latency_secs,
        p.rate,
        p.latency_warmup()
    );
    common::create_topic(rt, &addr, "in", p.partitions)?;
    admin
        .deploy(&zscore_spec("zscore-latency", hash, "in", "alerts")?)
        .context("deploying zscore on `in`")?;
    let mut vigil = run_pipeline("vigil", &addr, "in", "alerts", p, |_| Ok(None))?;
    vigil.deployment = Some(totals(&admin.status("zscore-latency")?));

    println!("section 2: vigil pipeline with ack_budget_ms 0 …");
    common::create_topic(rt, &addr, "in3", p.partitions)?;
    let mut spec = zscore_spec("zscore-latency-async", hash, "in3", "alerts3")?;
    spec.ack_budget_ms = Some(0);
    admin
        .deploy(&spec)
        .context("deploying zscore on `in3` with ack_budget_ms 0")?;
    let mut vigil_async = run_pipeline("vigil-0ms", &addr, "in3", "alerts3", p, |_| Ok(None))?;
    vigil_async.deployment = Some(totals(&admin.status("zscore-latency-async")?));

    println!("section 2: external pipeline …");
    common::create_topic(rt, &addr, "in2", p.partitions)?;
    common::create_topic(rt, &addr, "alerts2", p.partitions)?;
    let external = run_pipeline("external", &addr, "in2", "alerts2", p, |stop| {
        external_pipeline(&addr, "in2", "alerts2", p, stop).map(Some)
    })?;
    println!();
    Ok(LatencyResult {
        vigil,
        vigil_async,
        external,
    })
}

pub(crate) fn print_latency(p: &Params, r: &LatencyResult) {
    println!(
        "== 2. alert latency: produce ack → alert consumed; {} records/s for {} s, {} keys, {} % \
         outliers, {} partitions ==",
        p.rate, p.latency_secs, p.keys, p.outlier_pct, p.partitions
    );
    println!(
        "{:<9} {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>9} {:>9} | {:>8} {:>8}",
        "pipeline",
        "alerts",
        "expected",
        "p50",
        "p99",
        "max",
        "send p50",
        "send p99",
        "ack p50",
        "ack p99"
    );
    for x in [&r.vigil, &r.vigil_async, &r.external] {
        let acks = x.sent.ack_latencies();
        println!(
            "{:<9} {:>8} {:>8} | {:>8.2} {:>8.2} {:>8.2} | {:>9.2} {:>9.2} | {:>8.2} {:>8.2}",
            x.name,
            x.matched,
            x.expected,
            percentile(&x.from_ack, 0.5),
            percentile(&x.from_ack, 0.99),
            percentile(&x.from_ack, 1.0),
            percentile(&x.from_send, 0.5),
            percentile(&x.from_send, 0.99),
            percentile(&acks, 0.5),
            percentile(&acks, 0.99),
        );
    }
    println!(
        "vigil p99 / external p99: {:.2}× (target ≤ 0.2×); p50 ratio {:.2}×; vigil-0ms p99 / \
         external p99: {:.2}×",
        percentile(&r.vigil.from_ack, 0.99) / percentile(&r.external.from_ack, 0.99),
        percentile(&r.vigil.from_ack, 0.5) / percentile(&r.external.from_ack, 0.5),
        percentile(&r.vigil_async.from_ack, 0.99) / percentile(&r.external.from_ack, 0.99)
    );
    let (with, without) = (
        r.vigil.sent.ack_latencies(),
        r.vigil_async.sent.ack_latencies(),
    );
    println!(
        "produce ack p99 with the ack gate / without (ack_budget_ms 0): {:.2} / {:.2} ms = {:.2}×",
        percentile(&with, 0.99),
        percentile(&without, 0.99),
        percentile(&with, 0.99) / percentile(&without, 0.99)
    );
    println!(
        "(p50/p99/max = alert consumed − source record's ack (delivery report); send = alert \
         consumed − source record handed to librdkafka; ack = the source records' own ack \
         latency. Alerts are matched to sources by the vigil.source.partition/offset headers; \
         only measured records count, not the warm-up)"
    );
    for x in [&r.vigil, &r.vigil_async, &r.external] {
        let mut notes = vec![format!(
            "{} of {} measured records, {:.0} records/s achieved",
            x.sent.measured().len(),
            x.sent.send_ns.len(),
            x.sent.measured().len() as f64 / x.sent.elapsed.max(1e-9)
        )];
        if x.before_ack > 0 {
            notes.push(format!(
                "{} alerts consumed before their source's delivery report (counted as 0)",
                x.before_ack
            ));
        }
        if x.unexpected > 0 {
            notes.push(format!("{} alerts about non-outliers", x.unexpected));
        }
        if x.duplicates > 0 {
            notes.push(format!("{} duplicate alerts", x.duplicates));
        }
        if x.matched < x.expected {
            notes.push(format!(
                "{} expected alerts missing after {} s",
                x.expected - x.matched,
                DRAIN.as_secs()
            ));
        }
        if let Some(d) = &x.deployment {
            notes.push(format!(
                "deployment {}: {} records, {} alerts, lag {}{}",
                d.state,
                d.records,
                d.alerts,
                d.lag,
                d.last_error
                    .as_ref()
                    .map_or(String::new(), |e| format!(", last error: {e}"))
            ));
        }
        if let Some(e) = &x.ext {
            notes.push(format!(
                "external: {} records in {} polls, {} detector batches ({:.1} records each, {:.3} \
                 ms each incl. JSON → Arrow), {} alerts produced",
                e.records,
                e.polls,
                e.batches,
                e.records as f64 / e.batches.max(1) as f64,
                e.detect_ns as f64 / e.batches.max(1) as f64 / 1e6,
                e.alerts
            ));
        }
        println!("{}: {}", x.name, notes.join("; "));
    }
    println!(
        "settings: source producers (both) acks=all, linger.ms={}, no compression, no \
         idempotence, default partitioner by key; vigil: deployment zscore {} with value_schema \
         {}, default max_batch_bytes, default ack_budget_ms (vigil-0ms: ack_budget_ms 0); external: BaseConsumer assigned to every partition (no \
         group, no commits), fetch.wait.max.ms={}, fetch.min.bytes=1, up to {} messages per \
         poll round, one native zscore per partition, alert producer acks=all, linger.ms={}; \
         alert consumers (both): fetch.wait.max.ms={}, fetch.min.bytes=1. The broker \
         long-polls fetches (answers as soon as data arrives), so fetch.wait.max.ms bounds \
         only empty fetches\n",
        p.linger_ms,
        zscore_config(),
        value_schema(),
        p.fetch_wait_ms,
        EXT_MAX_BATCH,
        p.ext_linger_ms,
        p.fetch_wait_ms
    );
}
