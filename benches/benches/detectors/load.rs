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
    common::create_topic(rt, &addr, "load-busy", p.partitions)?;
    let point = |label: String, topic: &str, names: &[String]| {
        load_point(label, &addr, topic, p, admin, names)
    };
    points.push(point(NONE.into(), "load-none", &[])?);
    let names: Vec<String> = (0..p.deployments)
        .map(|i| format!("zscore-load-{i}"))
        .collect();
    // Gated (the default ack budget) first, then with acks left alone: the
    // gate's price is latency by design (design 0019), the detectors' CPU
    // is what must not reach the request path.
    for gate in [Gate::On, Gate::Off] {
        for (i, name) in names.iter().enumerate() {
            let mut spec = zscore_spec(name, hash, "load-busy", &format!("load-busy-alerts-{i}"))?;
            if gate == Gate::Off {
                spec.ack_budget_ms = Some(0);
            }
            admin
                .deploy(&spec)
                .with_context(|| format!("deploying {name}"))?;
        }
        // Rounds alternate idle (the deployments exist, the load goes to the
        // other topic) and busy, so slow drift hits both sides alike.
        for round in 1..=p.load_rounds {
            let before: Vec<DeploymentTotals> = names
                .iter()
                .map(|d| Ok(totals(&admin.status(d)?)))
                .collect::<Result<_>>()?;
            let mut idle = point(format!("{} idle {round}", gate.name()), "load-none", &names)?;
            for (d, b) in idle.deployments.iter_mut().zip(&before) {
                d.records -= b.records.min(d.records);
                d.alerts -= b.alerts.min(d.alerts);
            }
            points.push(idle);
            points.push(point(
                format!("{} busy {round}", gate.name()),
                "load-busy",
                &names,
            )?);
        }
        for name in &names {
            admin
                .undeploy(name)
                .with_context(|| format!("undeploying {name}"))?;
        }
    }
    points.push(point(NONE_AGAIN.into(), "load-none", &[])?);
    println!();
    Ok(points)
}

const NONE: &str = "no deployments";
const NONE_AGAIN: &str = "none again (undeployed)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    On,
    Off,
}

impl Gate {
    fn name(self) -> &'static str {
        match self {
            Gate::On => "gated",
            Gate::Off => "no gate",
        }
    }
}

/// p99 of the points whose label starts with `prefix`, pooled.
fn pooled_p99(points: &[LoadPoint], prefix: &str) -> Option<f64> {
    let mut l: Vec<u64> = points
        .iter()
        .filter(|pt| pt.label.starts_with(prefix))
        .flat_map(|pt| pt.sent.ack_latencies())
        .collect();
    l.sort_unstable();
    (!l.is_empty()).then(|| percentile(&l, 0.99))
}

/// busy / idle p99 of each round of one gate setting.
fn round_ratios(points: &[LoadPoint], gate: Gate) -> Vec<f64> {
    let p99 = |label: String| {
        points
            .iter()
            .find(|pt| pt.label == label)
            .map(|pt| percentile(&pt.sent.ack_latencies(), 0.99))
    };
    (1..)
        .map_while(|r| {
            Some((
                p99(format!("{} busy {r}", gate.name()))?,
                p99(format!("{} idle {r}", gate.name()))?,
            ))
        })
        .map(|(b, i)| b / i)
        .collect()
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
        "{:<22} {:>8} {:>9} | {:>7} {:>7} {:>7} {:>7} | {:>13} | {:>8} | {:>10} {:>8} {:>9} {:>10}",
        "point",
        "records",
        "rec/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "outl p50/p99",
        "cpu",
        "processed",
        "alerts",
        "catch-up",
        "on append"
    );
    for pt in points {
        let l = pt.sent.ack_latencies();
        let o = pt.sent.outlier_ack_latencies();
        let secs = pt.sent.elapsed.max(1e-9);
        let processed: u64 = pt.deployments.iter().map(|d| d.records).sum();
        let alerts: u64 = pt.deployments.iter().map(|d| d.alerts).sum();
        let on_append: u64 = pt.deployments.iter().map(|d| d.on_append).sum();
        println!(
            "{:<22} {:>8} {:>9.0} | {:>7.2} {:>7.2} {:>7.2} {:>7.2} | {:>13} | {:>8} | {:>10} {:>8} {:>9} {:>10}",
            pt.label,
            l.len(),
            l.len() as f64 / secs,
            percentile(&l, 0.5),
            percentile(&l, 0.99),
            percentile(&l, 0.999),
            percentile(&l, 1.0),
            format!("{:.2}/{:.2}", percentile(&o, 0.5), percentile(&o, 0.99)),
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
            },
            if pt.deployments.is_empty() {
                "-".to_string()
            } else {
                on_append.to_string()
            }
        );
    }
    for gate in [Gate::On, Gate::Off] {
        let mut r = round_ratios(points, gate);
        if r.is_empty() {
            continue;
        }
        r.sort_by(f64::total_cmp);
        let each: Vec<String> = r.iter().map(|x| format!("{x:.2}")).collect();
        let pooled = match (
            pooled_p99(points, &format!("{} busy", gate.name())),
            pooled_p99(points, &format!("{} idle", gate.name())),
        ) {
            (Some(b), Some(i)) => format!("{:.2}×", b / i),
            _ => "n/a".into(),
        };
        println!(
            "{}: busy / idle p99 per round: median {:.2}× (lower median; rounds, sorted: {}); all rounds pooled \
             {pooled} (target ≤ 1.2×)",
            gate.name(),
            r[(r.len() - 1) / 2],
            each.join(" ")
        );
    }
    if let (Some(a), Some(b)) = (pooled_p99(points, NONE_AGAIN), pooled_p99(points, NONE)) {
        println!("drift: none again / none p99 {:.2}×", a / b);
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
         warm-up at the same rate; outl = the same for the outliers alone (the records that raise \
         alerts, whose acks a gated deployment holds for them); cpu = this process (broker + detectors + client) as % of one \
         core; processed / alerts = records and alerts of all deployments since they were deployed \
         (warm-up included; busy = every record × {} deployments), from GET \
         /v1/deployments/NAME; catch-up = last ack → every deployment's lag 0; on append = batches \
         the deployments processed on the producers' tasks as they were appended (design 0019; \
         cumulative, like processed). Each deployment: \
         zscore on every partition of the produced topic, its own alert topic. Order: no \
         deployments; deploy (default ack budget); {} rounds of idle (same load on the other \
         topic) then busy; redeploy with ack_budget_ms 0; the same rounds; undeploy; none again)\n",
        p.deployments, p.load_rounds
    );
}
