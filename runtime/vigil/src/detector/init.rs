//! `vigil detector init NAME`: a new detector crate outside this repository,
//! ready to `cargo test`, `vigil detector build`, `test` and `deploy`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;

/// `vigil detector init` flags.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Crate and deployment name: a letter, then letters, digits, `-` or `_`.
    pub name: String,
    /// Directory to create (default `./NAME`); must not exist or be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Path of the SDK crate (`sdk/vigil-sdk` in a vigil clone; default: the
    /// clone this `vigil` was built from, or $VIGIL_SDK_PATH).
    #[arg(long, env = "VIGIL_SDK_PATH", conflicts_with = "sdk_git")]
    pub sdk: Option<PathBuf>,
    /// Take the SDK from this git repository instead of a path.
    #[arg(long)]
    pub sdk_git: Option<String>,
}

/// Where the SDK crate was when this binary was built, if it is still there.
fn built_in_sdk() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/vigil-sdk");
    p.join("Cargo.toml")
        .exists()
        .then(|| p.canonicalize().ok())
        .flatten()
}

/// The `vigil-sdk = ...` dependency line and the lockfile to start from.
fn sdk_dependency(a: &InitArgs) -> anyhow::Result<(String, Option<PathBuf>)> {
    if let Some(url) = &a.sdk_git {
        return Ok((format!("vigil-sdk = {{ git = {url:?} }}"), None));
    }
    let path = match &a.sdk {
        Some(p) => p
            .canonicalize()
            .with_context(|| format!("--sdk {}: no such directory", p.display()))?,
        None => built_in_sdk().context(
            "cannot find the SDK: give --sdk PATH (sdk/vigil-sdk of a vigil clone) or --sdk-git URL",
        )?,
    };
    anyhow::ensure!(
        path.join("Cargo.toml").exists(),
        "{} has no Cargo.toml: --sdk must be the sdk/vigil-sdk directory of a vigil clone",
        path.display()
    );
    let path_str = path.to_str().context("the SDK path is not UTF-8")?;
    // The clone's lockfile pins versions its own build already downloaded,
    // so the new crate builds without reaching a registry.
    let lock = path.join("../../Cargo.lock");
    Ok((
        format!("vigil-sdk = {{ path = {path_str:?} }}"),
        lock.exists().then_some(lock),
    ))
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.len() <= 64;
    if !ok {
        bail!("{name:?} cannot name a detector: use a letter, then letters, digits, `-` or `_` (at most 64)");
    }
    Ok(())
}

/// `cpu-spike` → `CpuSpike`, the detector's type name.
fn type_name(name: &str) -> String {
    let camel: String = name
        .split(['-', '_'])
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    // The skeleton also names `Config` and the SDK's `Detector` trait.
    match camel.as_str() {
        "Config" | "Detector" | "Alert" | "Alerts" | "Batch" => format!("{camel}Detector"),
        _ => camel,
    }
}

/// Creates the crate; returns its directory.
pub fn init(a: &InitArgs) -> anyhow::Result<PathBuf> {
    check_name(&a.name)?;
    let dir = a.dir.clone().unwrap_or_else(|| PathBuf::from(&a.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} exists and is not empty; choose another --dir",
            dir.display()
        );
    }
    let (dep, lock) = sdk_dependency(a)?;
    let (name, ty) = (&a.name, type_name(&a.name));
    let files = [
        ("Cargo.toml", cargo_toml(name, &dep)),
        (
            "src/lib.rs",
            LIB_RS.replace("{name}", name).replace("{Type}", &ty),
        ),
        (
            "tests/detector.rs",
            TEST_RS
                .replace("{Type}", &ty)
                .replace("{crate}", &name.replace('-', "_")),
        ),
        ("vigil.toml", VIGIL_TOML.replace("{name}", name)),
        ("sample.jsonl", SAMPLE_JSONL.to_string()),
        (".gitignore", "/target\n".to_string()),
    ];
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(lock) = lock {
        std::fs::copy(&lock, dir.join("Cargo.lock"))
            .with_context(|| format!("cannot copy {}", lock.display()))?;
    }
    Ok(dir)
}

fn cargo_toml(name: &str, dep: &str) -> String {
    let version = env!("CARGO_PKG_VERSION");
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
# cdylib: the .wasm module; rlib: native `cargo test`.
crate-type = ["cdylib", "rlib"]

[dependencies]
{dep}
# Once the SDK is published, use the registry instead:
# vigil-sdk = "{version}"
serde = {{ version = "1", features = ["derive"] }}

[dev-dependencies]
serde_json = "1"

# A crate of its own, even when created inside another workspace.
[workspace]
"#
    )
}

const LIB_RS: &str = r#"//! {name}: a vigil detector. Alerts when the numeric value column `field`
//! goes above `max`. Edit `process` to detect what you need; see the SDK's
//! `blocks` module for rolling statistics, EWMA, seasonality and more.

use serde::Deserialize;
use vigil_sdk::{bail, detector, log, Alert, Alerts, Batch, Detector, Result, Severity};

/// The `[config]` of vigil.toml, as JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Numeric column of the record values (declared in `[schema]`).
    pub field: String,
    /// Alert above this.
    pub max: f64,
}

/// The detector's state: here only its config and a record count.
#[derive(Debug)]
pub struct {Type} {
    cfg: Config,
    records: u64,
}

#[detector]
impl Detector for {Type} {
    type Config = Config;

    fn new(cfg: Config) -> Result<Self> {
        if !cfg.max.is_finite() {
            bail!("`max` must be a finite number");
        }
        log::info(&format!("{name} started: alert when {} > {}", cfg.field, cfg.max));
        Ok({Type} { cfg, records: 0 })
    }

    fn process(&mut self, batch: &Batch, alerts: &mut Alerts) -> Result<()> {
        let values = batch.column_f64(&self.cfg.field)?;
        let mut flagged = 0;
        for (row, (&x, &offset)) in values.iter().zip(batch.offsets()).enumerate() {
            // Null or non-numeric values read as NaN: not comparable.
            if x.is_finite() && x > self.cfg.max {
                flagged += 1;
                let mut alert = Alert::new(offset)
                    .severity(Severity::High)
                    .score(x)
                    .message(format!("{} = {x} is above {}", self.cfg.field, self.cfg.max))
                    .field("value", x)
                    .field("max", self.cfg.max);
                // The alert record is keyed like the input record.
                if let Some(key) = batch.key(row) {
                    alert = alert.key(key);
                }
                alerts.push(alert);
            }
        }
        self.records += batch.num_rows() as u64;
        log::info(&format!(
            "batch of {} records: {flagged} above {} ({} records so far)",
            batch.num_rows(),
            self.cfg.max,
            self.records
        ));
        Ok(())
    }
}
"#;

const TEST_RS: &str = r#"//! Native tests: `cargo test` runs the detector without wasm or a broker.

use serde_json::json;
use vigil_sdk::testing::{run, FieldType, Rows};
use {crate}::{Type};

#[test]
fn alerts_on_values_above_max() {
    let batch = Rows::new(0, 100)
        .schema(&[("value", FieldType::F64)])
        .keyed_row(1_000, "a", json!({"value": 10.0}))
        .keyed_row(2_000, "a", json!({"value": 250.0}))
        .keyed_row(3_000, "a", json!({"other": 1}))
        .build();
    let alerts = run::<{Type}>(json!({"field": "value", "max": 100.0}), &[batch]).unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].source_offset(), 101);
    assert_eq!(alerts[0].get_score(), 250.0);
}

#[test]
fn a_bad_config_is_refused() {
    assert!(run::<{Type}>(json!({"field": "value"}), &[]).is_err());
}
"#;

const VIGIL_TOML: &str = r#"# How `vigil detector build | test | deploy` treat this crate.
# The sections use the admin API's field names (see `vigil detector deploy --help`).

[deployment]
name = "{name}"               # deployment name
inputs = ["{name}-input"]     # input topics
output = "{name}.alerts"      # alert topic
on_failure = "fail"           # fail | skip | dead-letter
start = "earliest"            # earliest | latest | N | @RFC3339 | @MS

[schema]                      # record value field -> float64 | int64 | string | bool | timestamp_ms
value = "float64"

[config]                      # handed to the detector's `new` as JSON
field = "value"
max = 100.0

[limits]                      # per instance (one per input partition)
memory_mb = 64
cpu_ms_per_batch = 100
max_alerts_per_batch = 1000
"#;

const SAMPLE_JSONL: &str = r#"{"value": 12.5}
{"value": 99.0}
{"key": "sensor-1", "value": {"value": 250.0}, "timestamp": 1763337600000}
{"value": 7}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types() {
        assert_eq!(type_name("cpu-spike"), "CpuSpike");
        assert_eq!(type_name("my_det2"), "MyDet2");
        assert_eq!(type_name("detector"), "DetectorDetector");
        for bad in ["", "1x", "a b", "a/b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        check_name("cpu-spike").expect("valid");
    }
}
