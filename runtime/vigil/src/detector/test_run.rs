//! `vigil detector test`: a built module over records from a JSON-lines
//! file, through the same wasm host and record decoding the broker uses, with
//! no broker. Alerts go to stdout as the alert topic would hold them (one JSON
//! document per line); the module's log lines and a summary go to stderr.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use clap::Args;
use serde_json::Value;
use vigil_engine::output::{alert_value, Provenance};
use vigil_host::{build_batch, GuestLogLine, GuestLogSink, Host, HostConfig, Limits, ValueSchema};
use vigil_protocol::batch::{set_base_offset, BatchBuilder};

use super::project::Project;

/// `vigil detector test` flags.
#[derive(Args, Debug)]
pub struct TestArgs {
    /// JSON lines, one record each: the record's value (a JSON object), or
    /// `{"key": ..., "value": {...}, "timestamp": MS}` to set the key and
    /// timestamp too (recognised by `value` holding an object).
    #[arg(long)]
    pub input: PathBuf,
    /// The .wasm module (default: this crate's, as `vigil detector build` made it).
    #[arg(long)]
    pub module: Option<PathBuf>,
    /// Value schema: JSON object of field → type, or @file (default: vigil.toml's [schema]).
    #[arg(long)]
    pub schema: Option<String>,
    /// Detector config: JSON text or @file (default: vigil.toml's [config]).
    #[arg(long)]
    pub config: Option<String>,
    /// Records per batch given to the module.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
}

/// One record read from the file.
struct Record {
    key: Option<Bytes>,
    value: Bytes,
    timestamp: i64,
}

/// Reads the JSON-lines file; blank lines are skipped.
fn read_records(path: &PathBuf) -> anyhow::Result<Vec<Record>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        out.push(record(v, now).with_context(|| format!("{}:{}", path.display(), i + 1))?);
    }
    Ok(out)
}

fn record(v: Value, now: i64) -> anyhow::Result<Record> {
    let envelope = v.as_object().is_some_and(|o| {
        o.get("value").is_some_and(Value::is_object)
            && o.keys()
                .all(|k| ["key", "value", "timestamp"].contains(&k.as_str()))
    });
    if !envelope {
        return Ok(Record {
            key: None,
            value: Bytes::from(v.to_string()),
            timestamp: now,
        });
    }
    let key = match v.get("key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Bytes::from(s.clone())),
        Some(other) => Some(Bytes::from(other.to_string())),
    };
    let timestamp = match v.get("timestamp") {
        None => now,
        Some(t) => t
            .as_i64()
            .context("`timestamp` must be an integer of ms since the epoch")?,
    };
    let value = v.get("value").map(Value::to_string).unwrap_or_default();
    Ok(Record {
        key,
        value: Bytes::from(value),
        timestamp,
    })
}

/// Prints the module's log lines to stderr as they come.
struct StderrLog;

impl GuestLogSink for StderrLog {
    fn line(&self, l: &GuestLogLine<'_>) {
        eprintln!("[module {}] {}", l.level, l.message);
    }
}

/// Runs the test; returns the number of alerts.
pub fn run(a: TestArgs) -> anyhow::Result<usize> {
    let project = Project::find(&std::env::current_dir()?)?;
    let module = match (&a.module, &project) {
        (Some(m), _) => m.clone(),
        (None, Some(p)) => p.built_wasm()?,
        (None, None) => bail!("give --module FILE.wasm, or run this in a crate with a vigil.toml"),
    };
    let text = |s: &Option<String>| s.as_deref().map(crate::cli::text_or_file).transpose();
    let config = match (text(&a.config)?, &project) {
        (Some(c), _) => c,
        (None, Some(p)) => p.config()?,
        (None, None) => Value::Object(Default::default()),
    };
    let schema = match (text(&a.schema)?, &project) {
        (Some(s), _) => Some(s),
        (None, Some(p)) => p.schema()?,
        (None, None) => None,
    };
    let schema = schema
        .as_ref()
        .map(ValueSchema::from_json)
        .transpose()
        .context("invalid value schema")?;
    let limits: Limits = match &project {
        Some(p) => p.limits()?,
        None => Limits::default(),
    };
    let name = project.as_ref().map_or("test", |p| p.deployment_name());
    anyhow::ensure!(a.batch_size > 0, "--batch-size must be at least 1");

    let records = read_records(&a.input)?;
    let wasm =
        std::fs::read(&module).with_context(|| format!("cannot read {}", module.display()))?;
    let cache = tempfile::tempdir().context("cannot create a module cache directory")?;
    let host = Host::new(HostConfig {
        cache_dir: cache.path().to_path_buf(),
        max_instances: 4,
        ..Default::default()
    })?;
    host.set_log_sink(Arc::new(StderrLog));
    let m = host
        .load(&wasm)
        .with_context(|| format!("{} is not a usable detector module", module.display()))?;
    let mut instance = m
        .instantiate(&limits, &config.to_string(), &format!("{name}/test"))
        .context("the module refused to start with this config")?;
    let topic = a.input.display().to_string();
    let provenance = Provenance {
        deployment: name,
        module: &m.hash,
        topic: &topic,
        partition: 0,
        principal: None,
    };
    let mut stdout = std::io::stdout().lock();
    let (mut alerts, mut bad) = (0, 0);
    for (n, chunk) in records.chunks(a.batch_size).enumerate() {
        let base = (n * a.batch_size) as i64;
        let mut b = BatchBuilder::new(kafka_protocol::records::Compression::None);
        for r in chunk {
            b = b.record(r.timestamp, r.key.clone(), Some(r.value.clone()));
        }
        let mut wire = BytesMut::from(&b.build().context("cannot encode the records")?[..]);
        set_base_offset(&mut wire, base);
        let built = build_batch(0, &wire.freeze(), base, schema.as_ref())?;
        for r in &built.bad_records {
            bad += 1;
            eprintln!(
                "record {} does not match the value schema: {}",
                r.offset, r.error
            );
        }
        let out = instance.process(&built.batch).with_context(|| {
            format!(
                "the module failed on records {base}..{}",
                base + chunk.len() as i64
            )
        })?;
        for alert in &out {
            let ts = records
                .get(usize::try_from(alert.source_offset).unwrap_or(usize::MAX))
                .map(|r| r.timestamp);
            writeln!(stdout, "{}", alert_value(&provenance, alert, ts))?;
        }
        alerts += out.len();
    }
    stdout.flush()?;
    eprintln!(
        "{} records, {alerts} alerts, {bad} not matching the schema (module {})",
        records.len(),
        m.short_hash()
    );
    Ok(alerts)
}
