//! `vigil eval`: scores a detector module on a labelled corpus in the format
//! of the Numenta Anomaly Benchmark (NAB). Each series becomes one partition
//! of a fresh topic (record timestamp = row timestamp, value
//! `{"value": <f64>}`), one replay job runs the module over the whole topic,
//! and the alerts it writes are mapped back to rows through their
//! `vigil.source.*` headers and scored with `vigil-nab` under every profile.
//!
//! The broker is an embedded one in a temporary directory (as `vigil demo`)
//! unless `--admin`/`--bootstrap` name a running broker.
//!
//! With `--alerts TOPIC --bootstrap HOST:PORT` it instead scores a live
//! deployment's alerts against operator labels on `TOPIC.labels` (see
//! `eval/labels.rs` for the matching and the metrics).

mod labels;
mod live;
mod progress;
mod report;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::client::KafkaClient;
use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use kafka_protocol::records::Compression;
use serde_json::{json, Value};
use vigil_api::client::{AdminClient, ClientError};
use vigil_api::{
    DeploymentState, FailurePolicy, Limits, ModuleMeta, ReplaySpec, ReplayStatus, StartPosition,
};
use vigil_nab::{Dataset, Profile, DATA_DIR, PROFILES_FILE, WINDOWS_FILE};
use vigil_protocol::BatchBuilder;
use vigil_server::Settings;

use progress::Progress;
use report::{alert_ref, build_report, chunks, detection_flags, record_value, AlertRef, RunInfo};

/// `vigil eval` flags.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Detector module: NAME@VERSION, NAME, a hash, or a .wasm file (uploaded first).
    #[arg(long, required_unless_present = "alerts")]
    module: Option<String>,
    /// NAB-format corpus: combined_windows.json, profiles.json and data/**.csv.
    #[arg(long, required_unless_present = "alerts")]
    dataset: Option<PathBuf>,
    /// Score a live deployment instead: its alert topic, read with the
    /// labels topic from the broker at --bootstrap (precision, recall and
    /// F1 over labelled records; see --labels, --window).
    #[arg(long, requires = "bootstrap", conflicts_with_all = ["module", "dataset", "sweep", "config", "limits", "admin"])]
    alerts: Option<String>,
    /// With --alerts: the labels topic (default `<alerts>.labels`), whose
    /// records are `{"topic", "partition", "offset", "anomaly": bool}`.
    #[arg(long, requires = "alerts")]
    labels: Option<String>,
    /// With --alerts: an alert and a label match when their offsets in the
    /// same partition differ by at most this (0: the same record).
    #[arg(long, requires = "alerts", default_value_t = 0)]
    window: i64,
    /// Detector config as JSON, or @FILE holding it (default: `{}`).
    #[arg(long)]
    config: Option<String>,
    /// Admin API of a running broker (default: start an embedded one).
    #[arg(long, requires = "bootstrap")]
    admin: Option<String>,
    /// Kafka address (HOST:PORT) of the broker given with --admin (or
    /// read with --alerts).
    #[arg(long)]
    bootstrap: Option<String>,
    /// Profile whose raw score the per-file table shows (all profiles' totals are printed).
    #[arg(long, default_value = "standard")]
    profile: String,
    /// Resource limits of the replay as JSON (default: a 10 s CPU budget per
    /// batch; with --sweep also the most alerts per batch the broker allows).
    #[arg(long)]
    limits: Option<String>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also score the detector's score stream at the best threshold per
    /// profile (NAB's optimiser): runs it with `"scores": true` added to its
    /// config, which detectors emitting score records accept (`ensemble`).
    #[arg(long)]
    sweep: bool,
}

/// Rows per produce request: big enough to be fast, small enough to stay
/// far below any request size limit.
const ROWS_PER_BATCH: usize = 5_000;
/// Input bytes per replay batch with --sweep.
const SWEEP_BATCH_BYTES: usize = 64 << 10;
/// Historic NAB timestamps (2011–2015) are far older than the default
/// 7-day retention, which would delete the data before the replay reads it.
const TOPIC_CONFIGS: &[(&str, &str)] = &[("retention.ms", "-1")];

/// What is checked and loaded before any broker is involved, so that bad
/// input fails fast.
struct Plan {
    dataset: Dataset,
    profiles: Vec<Profile>,
    /// One per series.
    partitions: i32,
    config: Value,
    limits: Limits,
}

impl EvalArgs {
    /// The corpus (clap requires it unless --alerts is given).
    fn dataset(&self) -> &Path {
        self.dataset.as_deref().unwrap_or(Path::new(""))
    }

    /// The module (clap requires it unless --alerts is given).
    fn module(&self) -> &str {
        self.module.as_deref().unwrap_or_default()
    }
}

fn plan(args: &EvalArgs) -> anyhow::Result<Plan> {
    let dir = args.dataset();
    check_corpus(dir)?;
    let dataset = Dataset::load(dir)
        .with_context(|| format!("cannot load the NAB corpus {}", dir.display()))?;
    let profiles = Profile::load_all(dir)?;
    if !profiles.iter().any(|p| p.name == args.profile) {
        let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
        bail!(
            "no profile {:?} in profiles.json (it has {names:?})",
            args.profile
        );
    }
    if dataset.files.is_empty() {
        bail!("{} lists no series", dir.join(WINDOWS_FILE).display());
    }
    Ok(Plan {
        partitions: i32::try_from(dataset.files.len()).context("too many series")?,
        dataset,
        profiles,
        config: detector_config(json_arg(args.config.as_deref(), "--config")?, args.sweep)?,
        limits: match json_arg(args.limits.as_deref(), "--limits")? {
            Some(v) => serde_json::from_value(v).context("--limits is not a limits object")?,
            None => Limits {
                cpu_per_batch: Duration::from_secs(10),
                // A score stream is up to one record per input record.
                max_alerts_per_batch: if args.sweep {
                    vigil_api::spec::MAX_ALERTS_PER_BATCH
                } else {
                    Limits::default().max_alerts_per_batch
                },
                ..Limits::default()
            },
        },
    })
}

/// Runs `vigil eval`.
pub async fn run(args: EvalArgs) -> anyhow::Result<()> {
    if let Some(alerts) = &args.alerts {
        let Some(bootstrap) = &args.bootstrap else {
            bail!("--alerts needs --bootstrap HOST:PORT of the broker");
        };
        return live::run(live::LiveArgs {
            kafka: resolve(bootstrap).await?,
            alerts,
            labels: args.labels.as_deref(),
            window: args.window,
            json: args.json,
        })
        .await;
    }
    if args.bootstrap.is_some() && args.admin.is_none() {
        bail!("--bootstrap needs --admin (the admin API of the same broker) to run a replay");
    }
    let plan = plan(&args)?;
    // Keeps the embedded broker's files until the end of the run.
    let tmp = tempfile::tempdir()?;
    let (kafka, http, embedded) = match (&args.admin, &args.bootstrap) {
        (Some(admin), Some(bootstrap)) => (resolve(bootstrap).await?, admin.clone(), None),
        _ => {
            let settings = Settings::embedded(tmp.path());
            let components = vigil_server::Components::from_settings(&settings)?;
            let running = vigil_server::server::start(settings, components).await?;
            let http = format!("http://{}", running.admin_addr);
            (running.kafka_addr, http, Some(running))
        }
    };
    let result = match AdminClient::new(&http) {
        Ok(api) => evaluate(&args, &plan, kafka, &api).await,
        Err(e) => Err(e.into()),
    };
    if let Some(running) = embedded {
        running.shutdown().await;
    }
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report::format_table(&report));
    }
    Ok(())
}

async fn evaluate(
    args: &EvalArgs,
    plan: &Plan,
    kafka: SocketAddr,
    api: &AdminClient,
) -> anyhow::Result<report::EvalReport> {
    let Plan {
        dataset,
        profiles,
        partitions,
        ..
    } = plan;
    let partitions = *partitions;
    let module = resolve_module(api, args.module()).await?;
    let millis = chrono::Utc::now().timestamp_millis();
    let topic = format!("eval.{}.{millis}", topic_part(args.dataset()));
    let output = format!("{topic}.alerts");
    let mut client = KafkaClient::connect(kafka).await?;
    client
        .create_topic_with_configs(&topic, partitions, TOPIC_CONFIGS)
        .await
        .with_context(|| format!("cannot create topic {topic}"))?;
    // Created here rather than by the replay so that it gets the same
    // retention exemption (alerts carry their source's historic timestamp).
    client
        .create_topic_with_configs(&output, partitions, TOPIC_CONFIGS)
        .await
        .with_context(|| format!("cannot create topic {output}"))?;
    produce_dataset(&mut client, &topic, dataset).await?;

    let id = format!("eval-{millis}");
    let spec = ReplaySpec {
        id: Some(id.clone()),
        module,
        topic: topic.clone(),
        output: Some(output.clone()),
        from: Some(StartPosition::Earliest),
        to: Some(StartPosition::Latest),
        config: plan.config.clone(),
        value_schema: Some(json!({"value": "float64"})),
        limits: plan.limits.clone(),
        // A skipped batch would silently score as "no detection".
        on_failure: Some(FailurePolicy::Fail),
        partitions: None,
        // A score stream writes about one record per input record; small
        // input batches keep each batch's alert write small (with the 1 MiB
        // default, series of 18 000+ rows stalled the replay, see 0010).
        max_batch_bytes: args.sweep.then_some(SWEEP_BATCH_BYTES),
        budget: None,
        principal: None,
    };
    admin(api, move |c| c.replay(&spec)).await?;
    let status = wait_replay(api, &id).await?;

    let alerts = read_alerts(&mut client, &output, &topic, &status).await?;
    let lens: Vec<usize> = dataset.files.iter().map(|f| f.len()).collect();
    let detections = detection_flags(&lens, &alerts);
    let elapsed_ms = u64::try_from(status.elapsed_ms).unwrap_or(0);
    let done = u64::try_from(status.records_done).unwrap_or(0);
    let records_per_sec = match status.rows_per_sec {
        r if r > 0.0 => r,
        _ if elapsed_ms > 0 => done as f64 * 1000.0 / elapsed_ms as f64,
        _ => 0.0,
    };
    let run = RunInfo {
        dataset: args.dataset().display().to_string(),
        module: status
            .module_label
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(args.module())
            .to_string(),
        replay: id,
        topic,
        output,
        elapsed_ms,
        records_per_sec,
    };
    if args.sweep && detections.score_records == 0 {
        bail!(
            "--sweep: the detector wrote {} alerts but no score records; it does not emit a \
             score stream (score records carry the field \"stream\": \"score\")",
            detections.alerts
        );
    }
    build_report(
        dataset,
        profiles,
        &detections,
        &args.profile,
        args.sweep,
        run,
    )
}

/// Fails with what a NAB corpus looks like when `dir` is not one, instead of
/// the loader's bare "file not found".
fn check_corpus(dir: &Path) -> anyhow::Result<()> {
    let missing: Vec<&str> = [WINDOWS_FILE, PROFILES_FILE, DATA_DIR]
        .into_iter()
        .filter(|name| !dir.join(name).exists())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} is not a NAB corpus: it lacks {} (expected {WINDOWS_FILE} listing the series and \
             their anomaly windows, {PROFILES_FILE} with the cost profiles, and the series CSVs \
             under {DATA_DIR}/)",
            dir.display(),
            missing.join(", ")
        );
    }
    Ok(())
}

/// The detector config: `--config` (default `{}`), with `"scores": true`
/// for `--sweep` so the detector emits its score stream.
fn detector_config(config: Option<Value>, sweep: bool) -> anyhow::Result<Value> {
    let mut config = config.unwrap_or_else(|| json!({}));
    if sweep {
        let Some(obj) = config.as_object_mut() else {
            bail!("--sweep needs --config to be a JSON object (it adds \"scores\": true)");
        };
        obj.insert("scores".into(), Value::Bool(true));
    }
    Ok(config)
}

/// Parses a JSON flag given inline or as `@FILE`.
fn json_arg(arg: Option<&str>, flag: &str) -> anyhow::Result<Option<Value>> {
    let Some(s) = arg else { return Ok(None) };
    let text = match s.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("{flag}: cannot read {path}"))?
        }
        None => s.to_string(),
    };
    serde_json::from_str(&text)
        .map(Some)
        .with_context(|| format!("{flag} is not valid JSON"))
}

async fn resolve(hostport: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(hostport)
        .await
        .with_context(|| format!("cannot resolve --bootstrap {hostport}"))?
        .next()
        .with_context(|| format!("--bootstrap {hostport} resolves to no address"))
}

/// The dataset directory's name, restricted to the characters topic names allow.
fn topic_part(dir: &Path) -> String {
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        .take(64)
        .collect();
    if clean.is_empty() {
        "dataset".into()
    } else {
        clean
    }
}

/// A `.wasm` file is uploaded and referred to by hash; anything else is a
/// module reference the broker resolves.
async fn resolve_module(api: &AdminClient, module: &str) -> anyhow::Result<String> {
    let path = Path::new(module);
    if !(module.ends_with(".wasm") || path.is_file()) {
        // Checked before producing so that a typo costs no data load; the
        // broker resolves the reference again when the replay starts.
        let list = admin(api, |c| c.modules(None)).await?;
        if let Some(known) = uploaded_labels(&list, module) {
            bail!(
                "no module {module:?} on the broker (uploaded: {}); pass a .wasm file to upload one",
                if known.is_empty() { "none".into() } else { known.join(", ") }
            );
        }
        return Ok(module.to_string());
    }
    let wasm = std::fs::read(path).with_context(|| format!("cannot read {module}"))?;
    Ok(admin(api, move |c| c.upload_module(&wasm)).await?.hash)
}

/// `None` when `reference` names a module of `list` (by `NAME`,
/// `NAME@VERSION` or a hash prefix of at least 8 digits), else the
/// `NAME@VERSION` of every module there is (modules without a name or
/// version can only be named by hash).
fn uploaded_labels(list: &[ModuleMeta], reference: &str) -> Option<Vec<String>> {
    let mut labels = Vec::new();
    for m in list {
        if reference.len() >= 8 && m.hash.starts_with(reference) {
            return None;
        }
        let (Some(name), Some(version)) = (&m.name, &m.version) else {
            continue;
        };
        let label = format!("{name}@{version}");
        if reference == name || reference == label {
            return None;
        }
        labels.push(label);
    }
    labels.sort();
    labels.dedup();
    Some(labels)
}

/// Runs one blocking admin API call off the async runtime.
async fn admin<T: Send + 'static>(
    client: &AdminClient,
    call: impl FnOnce(&AdminClient) -> Result<T, ClientError> + Send + 'static,
) -> anyhow::Result<T> {
    let client = client.clone();
    Ok(tokio::task::spawn_blocking(move || call(&client)).await??)
}

/// Produces series `i` to partition `i`, in row order, checking that row `r`
/// lands at offset `r` (the mapping back from alerts relies on it).
async fn produce_dataset(
    client: &mut KafkaClient,
    topic: &str,
    dataset: &Dataset,
) -> anyhow::Result<()> {
    let progress = Progress::new();
    let total = dataset.records();
    let mut sent = 0;
    for (p, file) in (0i32..).zip(&dataset.files) {
        for range in chunks(file.len(), ROWS_PER_BATCH) {
            let mut b = BatchBuilder::new(Compression::Lz4);
            for row in range.clone() {
                b = b.record(
                    file.timestamps[row],
                    None,
                    Some(Bytes::from(record_value(file.values[row]))),
                );
            }
            let base = client
                .produce(topic, p, b.build()?)
                .await
                .with_context(|| format!("cannot produce {} to {topic}[{p}]", file.name))?;
            if base != range.start as i64 {
                bail!(
                    "{topic}[{p}]: rows {}.. of {} landed at offset {base}; the topic is not fresh",
                    range.start,
                    file.name
                );
            }
            sent += range.len();
            progress.show(&format!("producing: {sent}/{total} records"));
        }
    }
    progress.done(&format!(
        "produced {total} records of {} series to {topic}",
        dataset.files.len()
    ));
    Ok(())
}

/// Polls the replay until it completes; returns its final status.
async fn wait_replay(api: &AdminClient, id: &str) -> anyhow::Result<ReplayStatus> {
    let progress = Progress::new();
    loop {
        let owned = id.to_string();
        let s = admin(api, move |c| c.replay_status(&owned)).await?;
        let (done, total) = (s.records_done, s.records_total);
        match &s.state {
            DeploymentState::Completed => {
                progress.done(&format!(
                    "replay {id}: {total} records, {} alerts",
                    s.alerts
                ));
                return Ok(s);
            }
            DeploymentState::Failed(e) => {
                progress.done("");
                bail!("replay {id} failed: {e}");
            }
            state => progress.show(&format!(
                "replay {id} {}: {done}/{total} records ({:.0}%), {} alerts, {:.0} records/s",
                state.name(),
                if total > 0 {
                    100.0 * done as f64 / total as f64
                } else {
                    0.0
                },
                s.alerts,
                s.rows_per_sec,
            )),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads every alert of the output topic. The replay is complete, so each
/// partition is read until it has yielded the alerts its status counts and
/// then comes back empty.
async fn read_alerts(
    client: &mut KafkaClient,
    output: &str,
    topic: &str,
    status: &ReplayStatus,
) -> anyhow::Result<Vec<AlertRef>> {
    let mut alerts = Vec::new();
    let counted: u64 = status.partitions.iter().map(|p| p.alerts).sum();
    let reported = status.alerts;
    if reported > counted {
        // Reading per partition relies on the per-partition counts.
        bail!("the replay reports {reported} alerts but its partitions only {counted}");
    }
    for part in &status.partitions {
        let p = part.partition;
        let expected = usize::try_from(part.alerts).context("alert count")?;
        let (mut offset, mut got) = (0i64, 0usize);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let records = client
                .fetch(output, p, offset, 200)
                .await
                .with_context(|| format!("cannot read {output}[{p}]"))?;
            if records.is_empty() {
                if got >= expected {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("{output}[{p}]: read {got} alerts, the replay reported {expected}");
                }
                continue;
            }
            for r in records {
                offset = r.offset + 1;
                got += 1;
                let headers = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref()));
                let a = alert_ref(headers, topic)
                    .and_then(|a| a.with_value(r.value.as_deref()))
                    .map_err(|e| anyhow::anyhow!("{output}[{p}]@{}: {e}", r.offset))?;
                alerts.push(a);
            }
        }
    }
    Ok(alerts)
}
