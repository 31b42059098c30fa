//! Section 1: native vs wasm detector throughput (no broker).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use serde_json::{json, Value};
use vigil_host::{build_batch, Host, HostConfig, Limits, ValueSchema};
use vigil_protocol::batch::set_base_offset;
use vigil_protocol::kafka_protocol::records::Compression;
use vigil_protocol::BatchBuilder;
use vigil_sdk::{Alerts, Batch, Detector};

use crate::common::detect::{record, value_schema, zscore_config};
use crate::settings::{Params, Wasm};
use crate::{TP_KEYS, TP_OUTLIER_PPM, TP_PRODUCER_BATCH, TP_TS0};

// ------------------------------------------------ 1: throughput

/// One input batch as the log hands it to a deployment: concatenated
/// magic-v2 batches of `TP_PRODUCER_BATCH` records.
pub(crate) struct Wire {
    pub(crate) bytes: Bytes,
    pub(crate) from: i64,
}

pub(crate) fn tp_data(rows_per_batch: usize, total_rows: usize) -> Result<Vec<Wire>> {
    let n = total_rows.div_ceil(rows_per_batch).max(2);
    let mut out = Vec::with_capacity(n);
    for b in 0..n {
        let base = (b * rows_per_batch) as i64;
        let mut wire = Vec::new();
        let mut start = 0;
        while start < rows_per_batch {
            let end = (start + TP_PRODUCER_BATCH).min(rows_per_batch);
            let mut bb = BatchBuilder::new(Compression::None);
            for i in start..end {
                let idx = base as u64 + i as u64;
                let r = record(idx, TP_KEYS, TP_OUTLIER_PPM);
                bb = bb.record(
                    TP_TS0 + idx as i64,
                    Some(Bytes::from(r.key)),
                    Some(Bytes::from(r.value)),
                );
            }
            let mut bytes = bb.build().context("building a record batch")?.to_vec();
            set_base_offset(&mut bytes, base + start as i64);
            wire.extend_from_slice(&bytes);
            start = end;
        }
        out.push(Wire {
            bytes: Bytes::from(wire),
            from: base,
        });
    }
    Ok(out)
}

/// A native detector behind a trait object.
pub(crate) trait Native {
    fn run(&mut self, batch: &Batch, alerts: &mut Alerts) -> vigil_sdk::Result<()>;
}

impl<D: Detector> Native for D {
    fn run(&mut self, batch: &Batch, alerts: &mut Alerts) -> vigil_sdk::Result<()> {
        Detector::process(self, batch, alerts)
    }
}

pub(crate) fn native<D: Detector>(config: &Value) -> Result<Box<dyn Native>> {
    Ok(Box::new(vigil_sdk::testing::new_detector::<D>(
        config.clone(),
    )?))
}

pub(crate) struct Plugin<'a> {
    pub(crate) name: &'static str,
    pub(crate) wasm: &'a [u8],
    pub(crate) config: Value,
    pub(crate) native: fn(&Value) -> Result<Box<dyn Native>>,
}

/// Time spent over some batches.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    pub(crate) batches: u64,
    pub(crate) rows: u64,
    pub(crate) alerts: u64,
    pub(crate) build_ns: u64,
    /// Native: `Batch::new` + `process`; wasm: `Instance::process`.
    pub(crate) detect_ns: u64,
    /// Wasm: the `vigil_process` call alone.
    pub(crate) guest_ns: u64,
    /// This thread's CPU time for the build and the detector: unlike the
    /// wall clock it does not count the time the thread waited for a core,
    /// which on a shared box swings the wall-clock ratio by ±0.5.
    pub(crate) cpu_ns: u64,
}

/// CPU time this thread has used, in ns (0 if the clock is unavailable).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the
    // call; CLOCK_THREAD_CPUTIME_ID needs nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Tally {
    pub(crate) fn per_row(&self, ns: u64) -> f64 {
        ns as f64 / self.rows.max(1) as f64
    }
}

pub(crate) enum Variant {
    Native(Box<dyn Native>),
    Wasm(Box<vigil_host::Instance>),
}

impl Variant {
    /// Builds and processes `wires[cursor..]` cyclically until `budget` has
    /// passed (or, with `None`, exactly one pass over all of them).
    pub(crate) fn run(
        &mut self,
        wires: &[Wire],
        cursor: &mut usize,
        schema: &ValueSchema,
        budget: Option<Duration>,
    ) -> Result<Tally> {
        let mut t = Tally::default();
        let start = Instant::now();
        loop {
            match budget {
                Some(b) if start.elapsed() >= b && t.batches > 0 => break,
                None if t.batches as usize >= wires.len() => break,
                _ => {}
            }
            let w = &wires[*cursor % wires.len()];
            *cursor += 1;
            let c0 = thread_cpu_ns();
            let t0 = Instant::now();
            let built = build_batch(0, &w.bytes, w.from, Some(schema)).context("build_batch")?;
            let t1 = Instant::now();
            let rows = built.batch.num_rows() as u64;
            let alerts = match self {
                Variant::Native(d) => {
                    let batch = Batch::new(built.batch).context("Batch::new")?;
                    let mut alerts = Alerts::new();
                    d.run(&batch, &mut alerts).context("native process")?;
                    alerts.len() as u64
                }
                Variant::Wasm(inst) => {
                    let alerts = inst.process(&built.batch).context("wasm process")?;
                    t.guest_ns += inst.fuel_or_time_used_last().as_nanos() as u64;
                    alerts.len() as u64
                }
            };
            let t2 = Instant::now();
            t.cpu_ns += thread_cpu_ns().saturating_sub(c0);
            t.batches += 1;
            t.rows += rows;
            t.alerts += alerts;
            t.build_ns += (t1 - t0).as_nanos() as u64;
            t.detect_ns += (t2 - t1).as_nanos() as u64;
        }
        Ok(t)
    }
}

pub(crate) struct TpRow {
    pub(crate) detector: &'static str,
    pub(crate) rows_per_batch: usize,
    pub(crate) distinct_rows: usize,
    /// Alerts over one pass of the distinct rows, native and wasm.
    pub(crate) pass_alerts: (u64, u64),
    pub(crate) native: Vec<Tally>,
    pub(crate) wasm: Vec<Tally>,
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl TpRow {
    /// Median over rounds of ns per row of `f`.
    pub(crate) fn med(rounds: &[Tally], f: impl Fn(&Tally) -> u64) -> f64 {
        median(rounds.iter().map(|t| t.per_row(f(t))).collect())
    }
    pub(crate) fn build(&self) -> f64 {
        let all: Vec<Tally> = self.native.iter().chain(&self.wasm).copied().collect();
        Self::med(&all, |t| t.build_ns)
    }
    pub(crate) fn native_total(&self) -> f64 {
        Self::med(&self.native, |t| t.build_ns + t.detect_ns)
    }
    pub(crate) fn wasm_total(&self) -> f64 {
        Self::med(&self.wasm, |t| t.build_ns + t.detect_ns)
    }
    /// Wasm / native CPU time per row (build + detector), medians of the rounds.
    pub(crate) fn cpu_ratio(&self) -> f64 {
        Self::med(&self.wasm, |t| t.cpu_ns) / Self::med(&self.native, |t| t.cpu_ns)
    }
}

pub(crate) fn section_throughput(p: &Params, wasm: &Wasm, root: &Path) -> Result<Vec<TpRow>> {
    let host = Host::new(HostConfig {
        cache_dir: root.join("module-cache"),
        ..Default::default()
    })
    .context("cannot start the wasm host")?;
    println!(
        "section 1: wasm host memory layout {:?}; compiling modules …",
        host.memory_layout()
    );
    let schema = ValueSchema::from_json(&value_schema()).context("value schema")?;
    let limits = Limits {
        memory_bytes: 256 << 20,
        cpu_per_batch: Duration::from_secs(10),
        max_alerts_per_batch: 1_000_000,
    };
    let mut plugins = vec![Plugin {
        name: "zscore",
        wasm: &wasm.zscore,
        config: zscore_config(),
        native: native::<vigil_plugin_zscore::ZScore>,
    }];
    if let Some((bytes, _)) = &wasm.rate_spike {
        plugins.push(Plugin {
            name: "rate-spike",
            wasm: bytes,
            config: json!({}),
            native: native::<vigil_plugin_rate_spike::RateSpike>,
        });
    }
    if let Some((bytes, _)) = &wasm.rcf {
        // One forest per partition over `amount` shingled 3 deep: 3
        // dimensions, the cost of 3 columns unshingled (the multivariate
        // default), with the default 40 trees of 512 points.
        plugins.push(Plugin {
            name: "rcf",
            wasm: bytes,
            config: json!({"fields": ["amount"], "shingle": 3}),
            native: native::<vigil_plugin_rcf::Rcf>,
        });
    }
    let mut rows = Vec::new();
    for plugin in &plugins {
        let t = Instant::now();
        let module = host
            .load(plugin.wasm)
            .with_context(|| format!("loading the {} module", plugin.name))?;
        println!(
            "  {}: module {} (sdk {}) compiled in {:.2} s",
            plugin.name,
            module.short_hash(),
            module.sdk_version,
            t.elapsed().as_secs_f64()
        );
        for &size in &p.batch_rows {
            let wires = tp_data(size, p.tp_rows.max(size))?;
            let distinct_rows = wires.len() * size;
            let config = plugin.config.to_string();
            let mut nat = Variant::Native((plugin.native)(&plugin.config)?);
            let inst = module
                .instantiate(&limits, &config, &format!("bench/{}", plugin.name))
                .with_context(|| format!("instantiating {}", plugin.name))?;
            let mut was = Variant::Wasm(Box::new(inst));
            // One unmeasured pass each: warms caches, grows the guest's
            // memory, and checks that both see the same alerts.
            let (mut cn, mut cw) = (0usize, 0usize);
            let pn = nat.run(&wires, &mut cn, &schema, None)?;
            let pw = was.run(&wires, &mut cw, &schema, None)?;
            let round = Duration::from_secs_f64(p.tp_secs / p.tp_rounds as f64);
            let (mut native_rounds, mut wasm_rounds) = (Vec::new(), Vec::new());
            for r in 0..p.tp_rounds {
                // Alternate which goes first, so drift hits both.
                if r % 2 == 0 {
                    native_rounds.push(nat.run(&wires, &mut cn, &schema, Some(round))?);
                    wasm_rounds.push(was.run(&wires, &mut cw, &schema, Some(round))?);
                } else {
                    wasm_rounds.push(was.run(&wires, &mut cw, &schema, Some(round))?);
                    native_rounds.push(nat.run(&wires, &mut cn, &schema, Some(round))?);
                }
            }
            rows.push(TpRow {
                detector: plugin.name,
                rows_per_batch: size,
                distinct_rows,
                pass_alerts: (pn.alerts, pw.alerts),
                native: native_rounds,
                wasm: wasm_rounds,
            });
        }
    }
    println!();
    Ok(rows)
}

pub(crate) fn print_throughput(p: &Params, rows: &[TpRow]) {
    println!(
        "== 1. detector throughput: Kafka record batches (JSON values) → vigil_host::build_batch \
         (value schema amount:float64) → detector; median of {} rounds ==",
        p.tp_rounds
    );
    println!(
        "{:<11} {:>6} | {:>9} {:>10} {:>10} {:>10} | {:>11} {:>11} | {:>8} {:>8} {:>8}",
        "detector",
        "rows",
        "build ms",
        "native ms",
        "wasm ms",
        "guest ms",
        "native r/s",
        "wasm r/s",
        "wasm/nat",
        "det only",
        "cpu w/n"
    );
    for r in rows {
        let n = r.rows_per_batch as f64;
        let build = r.build();
        let nat_det = TpRow::med(&r.native, |t| t.detect_ns);
        let was_det = TpRow::med(&r.wasm, |t| t.detect_ns);
        let guest = TpRow::med(&r.wasm, |t| t.guest_ns);
        let (nt, wt) = (r.native_total(), r.wasm_total());
        println!(
            "{:<11} {:>6} | {:>9.3} {:>10.3} {:>10.3} {:>10.3} | {:>11.0} {:>11.0} | {:>7.2}× {:>7.2}× {:>7.2}×",
            r.detector,
            r.rows_per_batch,
            build * n / 1e6,
            nat_det * n / 1e6,
            was_det * n / 1e6,
            guest * n / 1e6,
            1e9 / nt,
            1e9 / wt,
            wt / nt,
            was_det / nat_det,
            r.cpu_ratio()
        );
    }
    println!(
        "(per batch: build = build_batch, JSON → Arrow, paid by both; native = Batch::new + \
         Detector::process on the rlib; wasm = Instance::process: copy into guest memory + guest \
         call + alert decoding; guest = the vigil_process call alone. r/s = rows/s including the \
         build. wasm/nat = (build + wasm) / (build + native), target ≤ 1.25×; det only = wasm / \
         native without the build; cpu w/n = the same as wasm/nat in this thread's CPU time, \
         which excludes waiting for a core: the steadier figure on a busy machine)"
    );
    for r in rows {
        let rounds: Vec<String> = r
            .native
            .iter()
            .zip(&r.wasm)
            .map(|(n, w)| {
                format!(
                    "{:.2}",
                    w.per_row(w.build_ns + w.detect_ns) / n.per_row(n.build_ns + n.detect_ns)
                )
            })
            .collect();
        let cpu_rounds: Vec<String> = r
            .native
            .iter()
            .zip(&r.wasm)
            .map(|(n, w)| format!("{:.2}", w.per_row(w.cpu_ns) / n.per_row(n.cpu_ns)))
            .collect();
        let (an, aw) = r.pass_alerts;
        println!(
            "{} × {}: alerts over one pass of {} rows: native {an}, wasm {aw}{}; per-round \
             wasm/nat [{}], cpu [{}]; rows measured native {}, wasm {}",
            r.detector,
            r.rows_per_batch,
            r.distinct_rows,
            if an == aw { " (same)" } else { " (DIFFERENT)" },
            rounds.join(" "),
            cpu_rounds.join(" "),
            r.native.iter().map(|t| t.rows).sum::<u64>(),
            r.wasm.iter().map(|t| t.rows).sum::<u64>()
        );
    }
    println!(
        "(data: {TP_KEYS} keys, {:.0} % outliers, {TP_PRODUCER_BATCH} records per Kafka batch, \
         ~{} B values; the distinct batches are cycled through, so event time repeats)\n",
        TP_OUTLIER_PPM as f64 / 1e4,
        record(0, TP_KEYS, 0).value.len()
    );
}
