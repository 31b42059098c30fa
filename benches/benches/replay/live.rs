//! Section B: live produce latency without and during a replay.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use tokio::runtime::Runtime;
use vigil_api::client::AdminClient;

use crate::common::detect::{record, source_producer_config};
use crate::common::server::process_cpu_secs;
use crate::common::{create_topic, pace, percentile, send_when_queued, Reports};
use crate::fill::{Cold, Filled};
use crate::jobs::{cancel, replay_spec, status, submit, Status};
use crate::probe::{disk_of, print_probes, Delta, Probe};
use crate::settings::Params;
use crate::LIVE_WARMUP_SECS;

const LIVE_TOPIC: &str = "live";
/// How often the replay's state is checked during the window.
const CHECK: Duration = Duration::from_millis(50);

pub(crate) struct Window {
    pub(crate) label: &'static str,
    /// Sorted ack latencies (ns) of the records sent in the window.
    pub(crate) latencies: Vec<u64>,
    pub(crate) secs: f64,
    pub(crate) cpu_secs: Option<f64>,
    /// The broker side of the window.
    pub(crate) probe: Delta,
}

/// One replay job submitted during the replay window.
pub(crate) struct Job {
    pub(crate) id: String,
    /// Seconds into the window it was submitted.
    pub(crate) at: f64,
    /// Its status when it ended or, for the last one, at the window's end.
    pub(crate) last: Status,
}

pub(crate) struct LiveResult {
    /// The replayed topic and its records.
    pub(crate) topic: String,
    pub(crate) records: u64,
    /// How its size was chosen.
    pub(crate) sizing: String,
    pub(crate) windows: Vec<Window>,
    pub(crate) jobs: Vec<Job>,
    /// `DELETE /v1/replays/ID` of the job still running at the window's end.
    pub(crate) cancel: Option<Duration>,
}

pub(crate) fn section_live(
    rt: &Runtime,
    p: &Params,
    root: &Path,
    wasm: &[u8],
    history: &Filled,
    sizing: String,
) -> Result<LiveResult> {
    let cold = Cold::start(rt, root, history, wasm)?;
    let result = (|| -> Result<LiveResult> {
        let addr = cold.addr();
        create_topic(rt, &addr, LIVE_TOPIC, p.partitions)?;
        let labels: &[&'static str] = if p.live_control {
            &["without replay", "with replay", "without again"]
        } else {
            &["without replay", "with replay"]
        };
        let window = Duration::from_secs_f64(p.live_secs);
        let start = Instant::now();
        let warmup = Duration::from_secs_f64(LIVE_WARMUP_SECS);
        let bounds: Vec<Instant> = (0..=labels.len() as u32)
            .map(|k| start + warmup + window * k)
            .collect();
        println!(
            "section B: {} records/s on {LIVE_TOPIC}, windows of {} s: {} …",
            p.live_rate,
            p.live_secs,
            labels.join(", ")
        );
        std::thread::scope(|s| -> Result<LiveResult> {
            let end = *bounds.last().expect("bounds");
            let addr = &addr;
            // Named so that its CPU counts as the client's.
            let producer = std::thread::Builder::new()
                .name("producer-live".into())
                .spawn_scoped(s, move || stream(addr, p, start, end))
                .context("cannot start the live producer thread")?;
            let disk = disk_of(root);
            let mut cpu = Vec::new();
            let mut probes = Vec::new();
            let mut edge = || {
                cpu.push(process_cpu_secs());
                probes.push(Probe::take(&cold.running, &disk));
            };
            sleep_until(bounds[0]);
            edge();
            sleep_until(bounds[1]);
            edge();
            let spec = |id: &str| {
                replay_spec(
                    id,
                    &cold.hash,
                    &history.topic,
                    p.live_parallelism,
                    p.live_cpu_share,
                )
            };
            let (jobs, cancel) = keep_replaying(&cold.admin, spec, bounds[2])?;
            edge();
            for b in &bounds[3..] {
                sleep_until(*b);
                edge();
            }
            let (base, samples) = producer
                .join()
                .map_err(|_| anyhow!("the live producer panicked"))??;
            let windows = labels
                .iter()
                .enumerate()
                .map(|(k, &label)| {
                    let from = bounds[k].saturating_duration_since(base).as_nanos() as u64;
                    let to = bounds[k + 1].saturating_duration_since(base).as_nanos() as u64;
                    let mut latencies: Vec<u64> = samples
                        .iter()
                        .filter(|(sent, _)| (from..to).contains(sent))
                        .map(|&(_, l)| l)
                        .collect();
                    latencies.sort_unstable();
                    Window {
                        label,
                        latencies,
                        secs: p.live_secs,
                        cpu_secs: match (cpu[k], cpu[k + 1]) {
                            (Some(a), Some(b)) => Some(b - a),
                            _ => None,
                        },
                        probe: probes[k + 1].since(&probes[k]),
                    }
                })
                .collect();
            Ok(LiveResult {
                topic: history.topic.clone(),
                records: history.records,
                sizing,
                windows,
                jobs,
                cancel,
            })
        })
    })();
    cold.stop(rt)?;
    println!();
    result
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Replays (jobs with `spec(id)`) from now until `until`, submitting a new
/// job whenever one completes, so one is always running; cancels the last
/// one at `until`. Returns the jobs and how long the cancel took.
fn keep_replaying(
    admin: &AdminClient,
    spec: impl Fn(&str) -> vigil_api::ReplaySpec,
    until: Instant,
) -> Result<(Vec<Job>, Option<Duration>)> {
    let t = Instant::now();
    let mut jobs: Vec<Job> = Vec::new();
    loop {
        let id = format!("live-{}", jobs.len());
        let last = submit(admin, &spec(&id)).with_context(|| format!("POST /v1/replays ({id})"))?;
        jobs.push(Job {
            id: id.clone(),
            at: t.elapsed().as_secs_f64(),
            last,
        });
        loop {
            let now = Instant::now();
            if now >= until {
                let job = jobs.last_mut().expect("a job");
                job.last = status(admin, &job.id)?;
                if !job.last.running() {
                    return Ok((jobs, None));
                }
                let c = Instant::now();
                cancel(admin, &job.id)?;
                return Ok((jobs, Some(c.elapsed())));
            }
            std::thread::sleep(CHECK.min(until - now));
            let s = status(admin, &id)?;
            let done = !s.running();
            jobs.last_mut().expect("a job").last = s;
            if done {
                break;
            }
        }
    }
}

/// The live stream: `LIVE_TOPIC` at `p.live_rate` from `start` until `end`;
/// returns the delivery reports' base and (send ns, ack latency ns) samples.
fn stream(
    addr: &str,
    p: &Params,
    start: Instant,
    end: Instant,
) -> Result<(Instant, Vec<(u64, u64)>)> {
    let producer: ThreadedProducer<Reports> = source_producer_config(addr, p.live_linger_ms)
        .create_with_context(Reports::new())
        .context("cannot create the live producer")?;
    let ctx = producer.context();
    let total = ((end - start).as_secs_f64() * p.live_rate).floor() as u64;
    for i in 0..total {
        pace(start, i, p.live_rate);
        let r = record(i, p.keys, p.outlier_ppm());
        let rec = BaseRecord::<str, str, usize>::with_opaque_to(LIVE_TOPIC, ctx.now_ns())
            .key(r.key.as_str())
            .payload(r.value.as_str());
        send_when_queued(&producer, rec, Duration::from_micros(100), |back| {
            back.delivery_opaque(ctx.now_ns())
        })
        .context("cannot hand a record to librdkafka")?;
    }
    ctx.flush_checked(&producer, total, "live stream", Duration::from_secs(120))?;
    let samples = std::mem::take(&mut *crate::common::lock(&ctx.samples));
    Ok((ctx.base, samples))
}

pub(crate) fn print_live(p: &Params, r: &LiveResult) {
    println!(
        "== B. live produce ack latency during a replay: acks=all, {} records/s, {} partitions, \
         ~{} B JSON records, linger.ms={}, windows of {} s after {LIVE_WARMUP_SECS} s of \
         warm-up ==",
        p.live_rate,
        p.partitions,
        record(0, p.keys, 0).value.len(),
        p.live_linger_ms,
        p.live_secs
    );
    println!(
        "| {:<15} | {:>7} | {:>7} | {:>7} | {:>7} | {:>7} | {:>7} | {:>5} |",
        "window", "records", "rec/s", "p50", "p99", "p99.9", "max", "cpu"
    );
    println!(
        "|{}|{}|{}|{}|{}|{}|{}|{}|",
        "-".repeat(17),
        "-".repeat(9),
        "-".repeat(9),
        "-".repeat(9),
        "-".repeat(9),
        "-".repeat(9),
        "-".repeat(9),
        "-".repeat(7)
    );
    for w in &r.windows {
        let l = &w.latencies;
        println!(
            "| {:<15} | {:>7} | {:>7.0} | {:>7.2} | {:>7.2} | {:>7.2} | {:>7.2} | {:>5} |",
            w.label,
            l.len(),
            l.len() as f64 / w.secs,
            percentile(l, 0.5),
            percentile(l, 0.99),
            percentile(l, 0.999),
            percentile(l, 1.0),
            w.cpu_secs
                .map_or_else(|| "n/a".into(), |c| format!("{:.0}%", 100.0 * c / w.secs))
        );
    }
    let ratio = |a: &Window, b: &Window| {
        let q = |w: &Window, x| percentile(&w.latencies, x);
        format!(
            "p99 {:.2}×, p50 {:.2}×, max {:.2}×",
            q(a, 0.99) / q(b, 0.99),
            q(a, 0.5) / q(b, 0.5),
            q(a, 1.0) / q(b, 1.0)
        )
    };
    if let [without, with, rest @ ..] = &r.windows[..] {
        println!(
            "with / without replay: {} (target p99 ≤ 1.2×)",
            ratio(with, without)
        );
        if let Some(again) = rest.first() {
            println!(
                "controls: with / without again: {}; without again / without: {}",
                ratio(with, again),
                ratio(again, without)
            );
        }
    }
    print_probes(&r.windows);
    let replayed: u64 = r.jobs.iter().map(|j| j.last.records_done).sum();
    for (i, j) in r.jobs.iter().enumerate() {
        let s = &j.last;
        let last = i + 1 == r.jobs.len();
        println!(
            "replay {} (submitted {:.1} s into the window): {} at {}, {} of {} records done, {} \
             alerts, job elapsed {:.1} s{}",
            j.id,
            j.at,
            s.state,
            if last && s.running() {
                "the window's end"
            } else {
                "its end"
            },
            s.records_done,
            s.records_total,
            s.alerts,
            s.elapsed_ms as f64 / 1e3,
            s.error
                .as_ref()
                .map_or(String::new(), |e| format!(", error: {e}"))
        );
    }
    match r.jobs.last() {
        Some(j) if j.last.running() && r.jobs.len() == 1 => {
            println!("the replay ran through the whole window")
        }
        Some(j) if j.last.running() => println!(
            "FINISHED EARLY: {} replay(s) completed inside the window and were re-submitted, so \
             one was running all along except for the ≤ {} ms gaps between a completion and the \
             next POST; a larger VIGIL_BENCH_LIVE_REPLAY_RECORDS makes one replay span the window",
            r.jobs.len() - 1,
            CHECK.as_millis()
        ),
        _ => println!("FINISHED EARLY: no replay was running at the window's end"),
    }
    println!(
        "rows replayed during the window: {replayed} ({:.0} rows/s); cancelling the running \
         replay at the window's end took {}",
        replayed as f64 / p.live_secs,
        r.cancel.map_or_else(
            || "nothing (none running)".into(),
            |d| format!("{:.1} ms", d.as_secs_f64() * 1e3)
        )
    );
    println!(
        "(one continuous stream from one librdkafka producer, records assigned to windows by \
         send time; latency = send → delivery report; cpu = this process (broker + replay + \
         producer) as % of one core. The replay: zscore (wasm) over all of {} ({} records, {}), \
         budget parallelism {} and cpu_share {}, on the same broker, started cold on the filled store; the \
         control window runs after the replay is cancelled)\n",
        r.topic,
        r.records,
        r.sizing,
        Params::par_label(p.live_parallelism),
        p.live_cpu_share
            .map_or("none".to_string(), |s| s.to_string())
    );
}
