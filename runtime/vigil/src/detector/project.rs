//! `vigil.toml`: a detector crate's deployment spec, read by `vigil detector
//! build | test | deploy` from the current directory.
//!
//! ```toml
//! [deployment]
//! name = "cpu-spike"          # deployment name
//! inputs = ["metrics"]        # input topics
//! output = "cpu-spike.alerts" # alert topic
//! on_failure = "fail"         # fail | skip | dead-letter
//! start = "earliest"          # earliest | latest | N | @RFC3339 | @MS
//!
//! [schema]                    # record value field → type
//! cpu = "float64"
//!
//! [config]                    # handed to the detector's `new` as JSON
//! field = "cpu"
//!
//! [limits]                    # per instance
//! memory_mb = 64
//! cpu_ms_per_batch = 100
//! max_alerts_per_batch = 1000
//!
//! [build]                     # optional
//! target_dir = "target/vigil-wasm"
//! ```
//!
//! The sections use the admin API's field names, so the spec sent to the
//! broker is this file's content, plus the module, plus any flags.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The spec file's name.
pub const FILE: &str = "vigil.toml";

/// A detector crate with its `vigil.toml`.
#[derive(Debug)]
pub struct Project {
    /// The crate directory.
    pub dir: PathBuf,
    /// The crate's package name (the module's name once built).
    pub crate_name: String,
    spec: SpecFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    deployment: DeploymentSection,
    #[serde(default)]
    schema: Option<toml::Table>,
    #[serde(default)]
    config: Option<toml::Table>,
    #[serde(default)]
    limits: Option<toml::Table>,
    #[serde(default)]
    build: BuildSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildSection {
    /// Cargo's output directory (relative to the crate); shared between
    /// detector crates it saves rebuilding the SDK's dependencies.
    target_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploymentSection {
    name: String,
    #[serde(default)]
    inputs: Vec<String>,
    output: Option<String>,
    on_failure: Option<String>,
    dead_letter_topic: Option<String>,
    start: Option<String>,
}

impl Project {
    /// The project in `dir`, or `None` when it has no `vigil.toml`.
    pub fn find(dir: &Path) -> anyhow::Result<Option<Project>> {
        let path = dir.join(FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let spec: SpecFile = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid detector spec", path.display()))?;
        let crate_name = crate::wasm_build::package_name(dir)?;
        Ok(Some(Project {
            dir: dir.to_path_buf(),
            crate_name,
            spec,
        }))
    }

    /// The project in the current directory; an error saying how to make
    /// one when there is none.
    pub fn current() -> anyhow::Result<Project> {
        let dir = std::env::current_dir().context("cannot read the current directory")?;
        Project::find(&dir)?.with_context(|| {
            format!(
                "no {FILE} in {} (run this in a crate made by `vigil detector init NAME`, or give the paths/flags explicitly)",
                dir.display()
            )
        })
    }

    /// Where `vigil detector build` puts cargo's output: `[build]
    /// target_dir`, by default `target/vigil-wasm` in the crate.
    pub fn target_dir(&self) -> PathBuf {
        match &self.spec.build.target_dir {
            Some(d) => self.dir.join(d),
            None => self.dir.join("target").join("vigil-wasm"),
        }
    }

    /// The module `vigil detector build` produces for this crate.
    pub fn wasm(&self) -> PathBuf {
        crate::wasm_build::output_path(&self.target_dir(), &self.crate_name)
    }

    /// The built module, or an error saying to build it.
    pub fn built_wasm(&self) -> anyhow::Result<PathBuf> {
        let p = self.wasm();
        anyhow::ensure!(
            p.exists(),
            "{} is not built yet: run `vigil detector build` first",
            p.display()
        );
        Ok(p)
    }

    /// The `[config]` section as JSON (an empty object when absent).
    pub fn config(&self) -> anyhow::Result<Value> {
        self.spec
            .config
            .as_ref()
            .map_or_else(|| Ok(json!({})), |t| toml_to_json(t, "config"))
    }

    /// The `[schema]` section as the API's value schema, if any.
    pub fn schema(&self) -> anyhow::Result<Option<Value>> {
        self.spec
            .schema
            .as_ref()
            .map(|t| toml_to_json(t, "schema"))
            .transpose()
    }

    /// The deployment name.
    pub fn deployment_name(&self) -> &str {
        &self.spec.deployment.name
    }

    /// The `[limits]` section (the API's defaults for what it leaves out).
    pub fn limits(&self) -> anyhow::Result<vigil_api::Limits> {
        match &self.spec.limits {
            None => Ok(Default::default()),
            Some(l) => serde_json::from_value(toml_to_json(l, "limits")?)
                .with_context(|| format!("{FILE}: [limits]")),
        }
    }

    /// The spec as the admin API's JSON, without the module.
    pub fn spec_json(&self) -> anyhow::Result<Value> {
        let d = &self.spec.deployment;
        let mut spec = Map::new();
        spec.insert("name".into(), json!(d.name));
        spec.insert("inputs".into(), json!(d.inputs));
        if let Some(o) = &d.output {
            spec.insert("output".into(), json!(o));
        }
        spec.insert("config".into(), self.config()?);
        if let Some(s) = self.schema()? {
            spec.insert("value_schema".into(), s);
        }
        if let Some(l) = &self.spec.limits {
            spec.insert("limits".into(), toml_to_json(l, "limits")?);
        }
        if let Some(p) = &d.on_failure {
            spec.insert("on_failure".into(), json!(p));
        }
        if let Some(t) = &d.dead_letter_topic {
            spec.insert("dead_letter_topic".into(), json!(t));
        }
        if let Some(s) = &d.start {
            let pos = crate::offset::parse(s).with_context(|| format!("{FILE}: start"))?;
            spec.insert("start".into(), serde_json::to_value(pos)?);
        }
        Ok(Value::Object(spec))
    }
}

/// A section as JSON: TOML's data model maps into JSON's (dates become
/// strings) except for non-finite floats, which JSON cannot carry.
fn toml_to_json(t: &toml::Table, section: &str) -> anyhow::Result<Value> {
    serde_json::to_value(t).with_context(|| format!("{FILE}: [{section}] cannot be sent as JSON"))
}
