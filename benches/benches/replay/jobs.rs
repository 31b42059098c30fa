//! Replay jobs through the admin API (`/v1/replays`, see
//! notes/issue5-api.md), and one timed replay on a cold broker.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use tokio::runtime::Runtime;
use vigil_api::client::AdminClient;
use vigil_api::{Budget, ReplaySpec, ReplayStatus};

use crate::common::detect::{value_schema, zscore_config};
use crate::fill::{Cold, Cost, Filled};
use crate::{POLL, RUN_LIMIT};

/// zscore over all of `topic`, earliest to latest, alerts to the default
/// output topic; `parallelism` / `cpu_share` `None` leave that part of the
/// budget to the broker.
pub(crate) fn replay_spec(
    id: &str,
    hash: &str,
    topic: &str,
    parallelism: Option<u32>,
    cpu_share: Option<f64>,
) -> ReplaySpec {
    ReplaySpec {
        id: Some(id.to_string()),
        module: hash.to_string(),
        topic: topic.to_string(),
        config: zscore_config(),
        value_schema: Some(value_schema()),
        budget: (parallelism.is_some() || cpu_share.is_some()).then(|| Budget {
            parallelism: parallelism.map(|n| n as usize),
            max_bytes_per_sec: None,
            cpu_share,
        }),
        from: None,
        to: None,
        partitions: None,
        output: None,
        limits: Default::default(),
        on_failure: None,
        max_batch_bytes: None,
        principal: None,
    }
}

/// The fields of a `ReplayStatus` the bench reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Status {
    pub(crate) state: String,
    pub(crate) error: Option<String>,
    pub(crate) records_total: u64,
    pub(crate) records_done: u64,
    pub(crate) alerts: u64,
    pub(crate) elapsed_ms: u64,
    pub(crate) rows_per_sec: f64,
    pub(crate) output: String,
}

impl Status {
    pub(crate) fn of(s: &ReplayStatus) -> Status {
        // The API keeps offsets and times as i64; they are never negative.
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Status {
            state: s.state.name().to_string(),
            error: s.state.error().map(str::to_string),
            records_total: count(s.records_total),
            records_done: count(s.records_done),
            alerts: s.alerts,
            elapsed_ms: count(s.elapsed_ms),
            rows_per_sec: s.rows_per_sec,
            output: s.output.clone(),
        }
    }

    pub(crate) fn running(&self) -> bool {
        // A paused job is not finished either: it may be resumed.
        matches!(self.state.as_str(), "running" | "paused")
    }
}

pub(crate) fn submit(admin: &AdminClient, spec: &ReplaySpec) -> Result<Status> {
    Ok(Status::of(&admin.replay(spec)?))
}

pub(crate) fn status(admin: &AdminClient, id: &str) -> Result<Status> {
    Ok(Status::of(&admin.replay_status(id)?))
}

pub(crate) fn cancel(admin: &AdminClient, id: &str) -> Result<()> {
    admin.cancel_replay(id)?;
    Ok(())
}

/// One replay row of section A.
pub(crate) struct ReplayRun {
    pub(crate) parallelism: Option<u32>,
    pub(crate) status: Status,
    /// POST sent → the completed status read.
    pub(crate) wall: Duration,
    /// POST sent → its reply.
    pub(crate) submit: Duration,
    pub(crate) cost: Cost,
    pub(crate) compile: Duration,
    /// Status polls while running (each one HTTP GET).
    pub(crate) polls: u64,
}

impl ReplayRun {
    pub(crate) fn job_secs(&self) -> f64 {
        self.status.elapsed_ms as f64 / 1e3
    }
}

/// Replays all of the filled topic on a new cold broker and times it.
pub(crate) fn timed_replay(
    rt: &Runtime,
    root: &Path,
    filled: &Filled,
    wasm: &[u8],
    id: &str,
    parallelism: Option<u32>,
) -> Result<ReplayRun> {
    let cold = Cold::start(rt, root, filled, wasm)?;
    let result = (|| -> Result<ReplayRun> {
        let spec = replay_spec(id, &cold.hash, &filled.topic, parallelism, None);
        let before = cold.counters();
        let t = Instant::now();
        let first = submit(&cold.admin, &spec).context("POST /v1/replays")?;
        let submitted = t.elapsed();
        if first.records_total != filled.records {
            bail!(
                "replay {id}: records_total {} but {} records were produced",
                first.records_total,
                filled.records
            );
        }
        let mut polls = 0;
        let mut s = first;
        while s.running() {
            if t.elapsed() > RUN_LIMIT {
                bail!(
                    "replay {id} still {} after {} s ({} of {} records done)",
                    s.state,
                    RUN_LIMIT.as_secs(),
                    s.records_done,
                    s.records_total
                );
            }
            std::thread::sleep(POLL);
            s = status(&cold.admin, id)?;
            polls += 1;
        }
        let wall = t.elapsed();
        let cost = cold.counters().since(&before);
        if s.state != "completed" {
            bail!(
                "replay {id} ended {}: {}",
                s.state,
                s.error.as_deref().unwrap_or("no error given")
            );
        }
        if s.records_done != filled.records {
            bail!(
                "replay {id} completed with {} of {} records done",
                s.records_done,
                filled.records
            );
        }
        Ok(ReplayRun {
            parallelism,
            status: s,
            wall,
            submit: submitted,
            cost,
            compile: cold.compile,
            polls,
        })
    })();
    cold.stop(rt)?;
    result
}
