//! The baseline of section A: what replaying costs without replay jobs — a
//! librdkafka consumer reading the topic through Fetch, zscore compiled
//! natively, alerts produced back with librdkafka.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::producer::ThreadedProducer;
use tokio::runtime::Runtime;

use crate::common::detect::zscore_config;
use crate::common::native::{runs, send_alert, ErrorCount, InMsg, NativeZscore};
use crate::common::{assign_from_start, assign_only_config, create_topic};
use crate::fill::{Cold, Cost, Filled};
use crate::settings::Params;
use crate::{RUN_LIMIT, STALL};

pub(crate) struct BaselineRun {
    pub(crate) records: u64,
    pub(crate) alerts: u64,
    /// Assign → last record processed and every alert acknowledged.
    pub(crate) wall: Duration,
    /// Building batches and running zscore, summed.
    pub(crate) detect: Duration,
    pub(crate) batches: u64,
    pub(crate) polls: u64,
    pub(crate) cost: Cost,
}

/// Reads all of the filled topic on a new cold broker and runs zscore over
/// it.
pub(crate) fn timed_baseline(
    rt: &Runtime,
    p: &Params,
    root: &Path,
    filled: &Filled,
    wasm: &[u8],
    pass: usize,
) -> Result<BaselineRun> {
    let cold = Cold::start(rt, root, filled, wasm)?;
    let result = (|| -> Result<BaselineRun> {
        let addr = cold.addr();
        // One per pass: topics outlive the broker, in the object store.
        let output = format!("{}.baseline.{pass}", filled.topic);
        create_topic(rt, &addr, &output, p.partitions)?;
        let before = cold.counters();
        let mut r = run(&addr, &filled.topic, &output, p)?;
        r.cost = cold.counters().since(&before);
        if r.records != filled.records {
            bail!(
                "baseline read {} records, {} were produced",
                r.records,
                filled.records
            );
        }
        Ok(r)
    })();
    cold.stop(rt)?;
    result
}

fn run(addr: &str, input: &str, output: &str, p: &Params) -> Result<BaselineRun> {
    // librdkafka's default fetch settings: what an ordinary consumer gets.
    let consumer: rdkafka::consumer::BaseConsumer = assign_only_config(addr)
        .create()
        .context("cannot create the baseline consumer")?;
    let (assignment, mut remaining) = assign_from_start(&consumer, input, 0..p.partitions)?;
    // Throughput settings, like the fill's: the alerts are a side stream.
    let producer: ThreadedProducer<ErrorCount> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "none")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "60000")
        .create_with_context(ErrorCount::new())
        .context("cannot create the baseline's alert producer")?;
    let mut zscore = NativeZscore::new(zscore_config());
    let mut out = BaselineRun {
        records: 0,
        alerts: 0,
        wall: Duration::ZERO,
        detect: Duration::ZERO,
        batches: 0,
        polls: 0,
        cost: Cost::default(),
    };
    let t = Instant::now();
    consumer.assign(&assignment).context("assign")?;
    let mut last_progress = Instant::now();
    while !remaining.is_empty() {
        // One message (waiting), then whatever else librdkafka has ready.
        let mut msgs: Vec<InMsg> = Vec::with_capacity(p.baseline_batch);
        let mut wait = Duration::from_millis(100);
        while msgs.len() < p.baseline_batch {
            match consumer.poll(wait) {
                Some(Ok(m)) => msgs.push(InMsg::of(&m)),
                Some(Err(e)) => return Err(anyhow!("baseline consumer: {e}")),
                None => break,
            }
            wait = Duration::ZERO;
        }
        if msgs.is_empty() {
            if last_progress.elapsed() > STALL || t.elapsed() > RUN_LIMIT {
                bail!(
                    "baseline stuck after {} records; partitions not done (partition → high \
                     watermark): {remaining:?}",
                    out.records
                );
            }
            continue;
        }
        last_progress = Instant::now();
        out.polls += 1;
        out.records += msgs.len() as u64;
        for m in &msgs {
            if remaining
                .get(&m.partition)
                .is_some_and(|&hw| m.offset + 1 >= hw)
            {
                remaining.remove(&m.partition);
            }
        }
        for run in runs(&msgs) {
            let part = run[0].partition;
            let d = Instant::now();
            let alerts = zscore.process(&run).context("baseline: zscore")?;
            out.detect += d.elapsed();
            out.batches += 1;
            for a in alerts {
                send_alert(&producer, input, output, part, a)
                    .context("baseline: cannot produce an alert")?;
                out.alerts += 1;
            }
        }
    }
    ErrorCount::flush_checked(&producer, "baseline alerts", Duration::from_secs(60))?;
    out.wall = t.elapsed();
    Ok(out)
}
