//! Section 3: produce latency with busy deployments.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tokio::runtime::Runtime;
use vigil_api::client::AdminClient;
use vigil_server::server::Running;

use crate::broker::{produce, totals, zscore_spec, DeploymentTotals, Sent};
use crate::common;
use crate::common::detect::record;
use crate::common::percentile;
use crate::settings::Params;
use crate::LOAD_WARMUP_SECS;

// ------------------------------------------------ 3: produce with deployments

pub(crate) struct LoadPoint {
    pub(crate) label: String,
    pub(crate) sent: Sent,
    /// Per deployment after the point.
    pub(crate) deployments: Vec<DeploymentTotals>,
    /// Time from the last ack until every deployment had no lag.
    pub(crate) catch_up: Option<Duration>,
}

pub(crate) fn load_point(
    label: String,
    addr: &str,
    topic: &str,
    p: &Params,
    admin: &AdminClient,
    deployments: &[String],
) -> Result<LoadPoint> {
    let warmup = (p.load_rate * LOAD_WARMUP_SECS).ceil() as usize;
    let n = (p.load_rate * p.load_secs).ceil() as usize;
    println!("section 3: {label} …");
    let sent = produce(
        addr,
        topic,
        Instant::now(),
        p.linger_ms,
        p.keys,
        p.outlier_ppm(),
        warmup,
        n,
        p.load_rate,
    )?;
    let t = Instant::now();
    let mut catch_up = None;
    let mut totals_now = Vec::new();
    while t.elapsed() < Duration::from_secs(30) {
        totals_now = deployments
            .iter()
            .map(|d| Ok(totals(&admin.status(d)?)))
            .collect::<Result<Vec<_>>>()?;
        if totals_now.iter().all(|d| d.lag == 0) {
            catch_up = Some(t.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(LoadPoint {
        label,
        sent,
        deployments: totals_now,
        catch_up,
    })
}

pub(crate) fn section_load(
    rt: &Runtime,
    running: &Running,
    admin: &AdminClient,
    hash: &str,
    p: &Params,
) -> Result<Vec<LoadPoint>> {
    let addr = running.kafka_addr.to_string();
    let mut points = Vec::new();
    common::create_topic(rt, &addr, "load-none", p.partitions)?;
    points.push(load_point(
        "no deployments".into(),
        &addr,
        "load-none",
        p,
        admin,
        &[],
    )?);
    common::create_topic(rt, &addr, "load-busy", p.partitions)?;
    let names: Vec<String> = (0..p.deployments)
        .map(|i| format!("zscore-load-{i}"))
        .collect();
    for (i, name) in names.iter().enumerate() {
        admin
            .deploy(&zscore_spec(
                name,
                hash,
                "load-busy",
                &format!("load-busy-alerts-{i}"),
            )?)
            .with_context(|| format!("deploying {name}"))?;
    }
    let status = |names: &[String]| -> Result<Vec<DeploymentTotals>> {
        names
            .iter()
            .map(|d| Ok(totals(&admin.status(d)?)))
            .collect()
    };
    if p.load_control {
        // The same load on the other topic: the deployments exist but have
        // nothing to do.
        let before = status(&names)?;
        let mut pt = load_point(
            format!("{} idle deployments", p.deployments),
            &addr,
            "load-none",
            p,
            admin,
            &names,
        )?;
        for (d, b) in pt.deployments.iter_mut().zip(&before) {
            d.records -= b.records.min(d.records);
            d.alerts -= b.alerts.min(d.alerts);
        }
        points.push(pt);
    }
    points.push(load_point(
        format!("{} busy deployments", p.deployments),
        &addr,
        "load-busy",
        p,
        admin,
        &names,
    )?);
    if p.load_control {
        for name in &names {
            admin
                .undeploy(name)
                .with_context(|| format!("undeploying {name}"))?;
        }
        points.push(load_point(
            "none again (undeployed)".into(),
            &addr,
            "load-none",
            p,
            admin,
            &[],
        )?);
    }
    println!();
    Ok(points)
}

pub(crate) fn print_load(p: &Params, points: &[LoadPoint]) {
    println!(
        "== 3. produce ack latency with busy deployments: acks=all, {} records/s for {} s, {} \
         partitions, ~{} B JSON records, linger.ms={} ==",
        p.load_rate,
        p.load_secs,
        p.partitions,
        record(0, p.keys, 0).value.len(),
        p.linger_ms
    );
    println!(
        "{:<22} {:>8} {:>9} | {:>7} {:>7} {:>7} {:>7} | {:>8} | {:>10} {:>8} {:>9}",
        "point",
        "records",
        "rec/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "cpu",
        "processed",
        "alerts",
        "catch-up"
    );
    for pt in points {
        let l = pt.sent.ack_latencies();
        let secs = pt.sent.elapsed.max(1e-9);
        let processed: u64 = pt.deployments.iter().map(|d| d.records).sum();
        let alerts: u64 = pt.deployments.iter().map(|d| d.alerts).sum();
        println!(
            "{:<22} {:>8} {:>9.0} | {:>7.2} {:>7.2} {:>7.2} {:>7.2} | {:>8} | {:>10} {:>8} {:>9}",
            pt.label,
            l.len(),
            l.len() as f64 / secs,
            percentile(&l, 0.5),
            percentile(&l, 0.99),
            percentile(&l, 0.999),
            percentile(&l, 1.0),
            pt.sent
                .cpu_secs
                .map_or_else(|| "n/a".into(), |c| format!("{:.0}%", 100.0 * c / secs)),
            if pt.deployments.is_empty() {
                "-".to_string()
            } else {
                processed.to_string()
            },
            if pt.deployments.is_empty() {
                "-".to_string()
            } else {
                alerts.to_string()
            },
            match (&pt.catch_up, pt.deployments.is_empty()) {
                (_, true) => "-".to_string(),
                (Some(d), false) => format!("{:.0} ms", d.as_secs_f64() * 1e3),
                (None, false) => "> 30 s".to_string(),
            }
        );
    }
    let q = |label: &str, x| {
        points
            .iter()
            .find(|pt| pt.label.starts_with(label))
            .map(|pt| percentile(&pt.sent.ack_latencies(), x))
    };
    let ratio = |a: &str, b: &str| -> String {
        match (q(a, 0.99), q(b, 0.99), q(a, 0.5), q(b, 0.5)) {
            (Some(a99), Some(b99), Some(a50), Some(b50)) => {
                format!("p99 {:.2}×, p50 {:.2}×", a99 / b99, a50 / b50)
            }
            _ => "n/a".into(),
        }
    };
    println!(
        "busy / none: {} (target p99 ≤ 1.2×)",
        ratio(&format!("{} busy", p.deployments), "no deployments")
    );
    if p.load_control {
        println!(
            "controls: idle / none: {}; busy / none again: {}; none again / none: {}",
            ratio(&format!("{} idle", p.deployments), "no deployments"),
            ratio(&format!("{} busy", p.deployments), "none again"),
            ratio("none again", "no deployments")
        );
    }
    for pt in points {
        for (i, d) in pt.deployments.iter().enumerate() {
            if d.state != "running" || d.last_error.is_some() {
                println!(
                    "{}: deployment {i} is {}{}",
                    pt.label,
                    d.state,
                    d.last_error
                        .as_ref()
                        .map_or(String::new(), |e| format!(": {e}"))
                );
            }
        }
    }
    println!(
        "(latency = send → delivery report of the measured records, after {LOAD_WARMUP_SECS} s of \
         warm-up at the same rate; cpu = this process (broker + detectors + client) as % of one \
         core; processed / alerts = records and alerts of all deployments during the point \
         (warm-up included; busy = every record × {} deployments), from GET \
         /v1/deployments/NAME; catch-up = last ack → every deployment's lag 0. Each deployment: \
         zscore on every partition of the produced topic, its own alert topic. Order: no \
         deployments; deploy; idle (same load on the other topic); busy; undeploy; none again)\n",
        p.deployments
    );
}
