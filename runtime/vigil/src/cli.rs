//! `vigil detector ...`: a client of the admin API (and the local wasm build).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use vigil_api::client::{AdminClient, ClientError};
use vigil_api::{DeploymentSpec, DeploymentStatus, FailurePolicy, ModuleMeta};

use crate::output::OutputArgs;

/// Admin API address shared by all detector commands.
#[derive(Args, Debug, Clone)]
pub struct AdminArgs {
    /// Admin HTTP address of the broker.
    #[arg(
        long,
        env = "VIGIL_ADMIN",
        default_value = "http://127.0.0.1:9644",
        global = true
    )]
    pub admin: String,
}

/// Detector commands.
#[derive(Subcommand, Debug)]
pub enum DetectorCommand {
    /// Create a new detector crate (Cargo.toml, skeleton, native test, vigil.toml).
    Init(crate::detector::InitArgs),
    /// Build detector crates to .wasm modules (one cargo run).
    Build {
        /// Crate directories (each with a Cargo.toml; default: the crate of
        /// the vigil.toml in the current directory).
        paths: Vec<PathBuf>,
        /// Where cargo puts its output (default: <first crate>/target/vigil-wasm).
        #[arg(long)]
        target_dir: Option<PathBuf>,
    },
    /// Upload a .wasm module; prints its hash.
    Upload {
        /// The module file.
        file: PathBuf,
    },
    /// Run a built module on records from a JSON-lines file (no broker).
    Test(crate::detector::TestArgs),
    /// Deploy a module on input topics (default: the vigil.toml in the
    /// current directory, with its built module).
    Deploy(Box<DeployArgs>),
    /// Show the log lines a deployment's module wrote (SDK logging).
    Logs(crate::detector::LogsArgs),
    /// List deployments (or uploaded modules with --modules).
    List {
        /// List uploaded modules instead.
        #[arg(long)]
        modules: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List the uploaded versions of a module, oldest first.
    Versions {
        /// Module name (the crate name it was built from).
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show a deployment's state and per-partition progress.
    Status {
        /// Deployment name.
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Pause a deployment (progress is committed; resume continues).
    Pause {
        /// Deployment name.
        name: String,
    },
    /// Resume a paused or failed deployment.
    Resume {
        /// Deployment name.
        name: String,
    },
    /// Stop and remove a deployment (the alert topic stays).
    Undeploy {
        /// Deployment name.
        name: String,
    },
    /// Replace a running deployment's module in place (every offset scored once).
    Swap(crate::cli_replay::SwapArgs),
    /// Run another module on a deployment's inputs, writing to its own topic.
    Shadow(crate::cli_replay::ShadowArgs),
    /// Compare the alerts of two deployments or alert topics.
    Diff(crate::cli_replay::DiffArgs),
}

/// What the module is given and how failures are handled: shared by
/// `vigil detector deploy` and `vigil replay`.
#[derive(Args, Debug)]
pub(crate) struct ModuleInputArgs {
    /// Detector config: JSON text or @file.
    #[arg(long)]
    config: Option<String>,
    /// Value schema: JSON object of field → type (float64, int64, string, bool, timestamp_ms), or @file.
    #[arg(long)]
    schema: Option<String>,
    /// fail | skip | dead-letter (default: fail for deployments, skip for replays).
    #[arg(long)]
    on_failure: Option<String>,
}

impl ModuleInputArgs {
    /// `--config`, parsed.
    pub(crate) fn config(&self) -> anyhow::Result<Option<Value>> {
        self.config.as_deref().map(text_or_file).transpose()
    }

    /// `--schema`, parsed.
    pub(crate) fn schema(&self) -> anyhow::Result<Option<Value>> {
        self.schema.as_deref().map(text_or_file).transpose()
    }

    /// `--on-failure`, parsed with the API's own names.
    pub(crate) fn on_failure(&self) -> anyhow::Result<Option<FailurePolicy>> {
        self.on_failure
            .as_deref()
            .map(|p| {
                serde_json::from_value(json!(p)).with_context(|| format!("--on-failure {p:?}"))
            })
            .transpose()
    }
}

/// `vigil detector deploy` flags.
#[derive(Args, Debug)]
pub struct DeployArgs {
    /// A complete spec as JSON (file path, or `-` for stdin); flags below override it.
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Deployment name.
    #[arg(long)]
    name: Option<String>,
    /// Module: NAME, NAME@VERSION, hash (or ≥ 8-digit prefix), or a .wasm file to upload first.
    #[arg(long)]
    module: Option<String>,
    /// Input topic (repeat for several).
    #[arg(long = "input")]
    inputs: Vec<String>,
    /// Alert topic.
    #[arg(long)]
    output: Option<String>,
    #[command(flatten)]
    module_input: ModuleInputArgs,
    /// Dead-letter topic (default <name>.dlq).
    #[arg(long)]
    dead_letter_topic: Option<String>,
    /// Where to start: earliest | latest | N (offset) | @RFC3339 | @MS (time).
    #[arg(long)]
    start: Option<String>,
    /// Memory limit per instance, MiB.
    #[arg(long)]
    memory_mb: Option<u64>,
    /// CPU budget per batch, ms.
    #[arg(long)]
    cpu_ms: Option<u64>,
    /// Most alerts per batch.
    #[arg(long)]
    max_alerts: Option<u32>,
}

/// The admin API client for `--admin`.
pub(crate) fn client(admin: &str) -> anyhow::Result<AdminClient> {
    Ok(AdminClient::new(admin)?)
}

/// An admin API result with the CLI's hint when the broker is unreachable.
/// The [`ClientError`] stays in the chain (its message says whether retrying
/// can help).
pub(crate) fn api<T>(r: Result<T, ClientError>) -> anyhow::Result<T> {
    r.map_err(|e| {
        if e.is_unreachable() {
            anyhow::Error::new(e).context(
                "the admin API is unreachable (is `vigil serve` running? set --admin or VIGIL_ADMIN)",
            )
        } else {
            anyhow::Error::new(e)
        }
    })
}

pub(crate) fn text_or_file(s: &str) -> anyhow::Result<Value> {
    let text = match s.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
        }
        None => s.to_string(),
    };
    serde_json::from_str(&text).with_context(|| format!("not valid JSON: {text}"))
}

pub(crate) fn upload(admin: &AdminClient, file: &Path) -> anyhow::Result<ModuleMeta> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    api(admin.upload_module(&bytes))
}

fn deploy_spec(admin: &AdminClient, a: DeployArgs) -> anyhow::Result<DeploymentSpec> {
    // The spec file (or the project's vigil.toml) is the user's JSON; the
    // flags override its fields, and the whole is then read as the API's type.
    let project = match &a.spec {
        None => crate::detector::Project::find(
            &std::env::current_dir().context("cannot read the current directory")?,
        )?,
        Some(_) => None,
    };
    let mut spec = match (&a.spec, &project) {
        (Some(p), _) if p.as_os_str() == "-" => {
            serde_json::from_reader(std::io::stdin()).context("spec on stdin is not JSON")?
        }
        (Some(p), _) => text_or_file(&format!("@{}", p.display()))?,
        (None, Some(project)) => {
            let mut spec = project.spec_json()?;
            if a.module.is_none() {
                let wasm = project.built_wasm()?;
                let meta = upload(admin, &wasm)?;
                eprintln!(
                    "uploaded {} as {}@{} ({})",
                    wasm.display(),
                    meta.name.as_deref().unwrap_or("?"),
                    meta.version.as_deref().unwrap_or("?"),
                    short_hash(&meta.hash)
                );
                spec["module"] = json!(meta.hash);
            }
            spec
        }
        (None, None) => json!({}),
    };
    let obj = spec
        .as_object_mut()
        .context("the spec must be a JSON object")?;
    let mut set = |k: &str, v: Value| {
        obj.insert(k.to_string(), v);
    };
    if let Some(n) = a.name {
        set("name", json!(n));
    }
    if let Some(m) = a.module {
        let hash = if m.ends_with(".wasm") {
            upload(admin, Path::new(&m))?.hash
        } else {
            m
        };
        set("module", json!(hash));
    }
    if !a.inputs.is_empty() {
        set("inputs", json!(a.inputs));
    }
    if let Some(o) = a.output {
        set("output", json!(o));
    }
    if let Some(c) = a.module_input.config()? {
        set("config", c);
    }
    if let Some(s) = a.module_input.schema()? {
        set("value_schema", s);
    }
    if let Some(p) = a.module_input.on_failure()? {
        set("on_failure", json!(p));
    }
    if let Some(t) = a.dead_letter_topic {
        set("dead_letter_topic", json!(t));
    }
    if let Some(s) = a.start {
        set("start", serde_json::to_value(crate::offset::parse(&s)?)?);
    }
    let mut limits = obj.get("limits").cloned().unwrap_or_else(|| json!({}));
    if let Some(l) = limits.as_object_mut() {
        if let Some(m) = a.memory_mb {
            l.insert("memory_mb".into(), json!(m));
        }
        if let Some(c) = a.cpu_ms {
            l.insert("cpu_ms_per_batch".into(), json!(c));
        }
        if let Some(x) = a.max_alerts {
            l.insert("max_alerts_per_batch".into(), json!(x));
        }
    }
    obj.insert("limits".into(), limits);
    serde_json::from_value(spec)
        .context("invalid deployment spec (fix the spec or the flags; retrying will not help)")
}

fn print_modules(list: &[ModuleMeta]) {
    for m in list {
        let uploaded = chrono::DateTime::from_timestamp_millis(m.uploaded_at_ms)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        println!(
            "{}  {}@{}  abi v{}  sdk {}  {} bytes  uploaded {uploaded}",
            m.hash,
            m.name.as_deref().unwrap_or("?"),
            m.version.as_deref().unwrap_or("?"),
            m.abi_version,
            m.sdk_version,
            m.size,
        );
    }
}

/// The first 12 hex digits of a module hash, as the tables show it.
pub(crate) fn short_hash(hash: &str) -> String {
    hash.chars().take(12).collect()
}

/// A number as JSON writes it (`0.0`, not `0`), as the tables always showed.
pub(crate) fn json_num(x: f64) -> String {
    Value::from(x).to_string()
}

/// `-` for an absent value.
pub(crate) fn or_dash<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

pub(crate) fn print_status(s: &DeploymentStatus) {
    println!(
        "{}  {}  module {} {}  {} → {}  on-failure {}",
        s.name,
        s.state.name().to_uppercase(),
        short_hash(&s.module),
        s.module_label.as_deref().unwrap_or(""),
        Value::from(s.inputs.clone()),
        s.output,
        s.on_failure,
    );
    if let Some(e) = s.state.error() {
        println!("  error: {e}");
    }
    println!(
        "  {:<24} {:>10} {:>10} {:>8} {:>12} {:>9} {:>10} {:>8}  last error",
        "partition", "offset", "hw", "lag", "event age ms", "batch/s", "records", "alerts"
    );
    for p in &s.partitions {
        println!(
            "  {:<24} {:>10} {:>10} {:>8} {:>12} {:>9} {:>10} {:>8}  {}",
            format!("{}-{}", p.topic, p.partition),
            p.offset,
            p.high_watermark,
            p.lag,
            or_dash(p.event_age_ms),
            json_num(p.batches_per_sec),
            p.records,
            p.alerts,
            p.last_error.as_deref().unwrap_or("-"),
        );
    }
}

/// Runs one detector command.
pub fn run(admin: &AdminArgs, cmd: DetectorCommand) -> anyhow::Result<()> {
    let cmd = match cmd {
        DetectorCommand::Init(a) => {
            let dir = crate::detector::init(&a)?;
            println!(
                "created {}: `cargo test` runs the native test; then `vigil detector build`, \
                 `vigil detector test --input sample.jsonl`, `vigil detector deploy` in it",
                dir.display()
            );
            return Ok(());
        }
        DetectorCommand::Test(a) => {
            crate::detector::test(a)?;
            return Ok(());
        }
        other => other,
    };
    if let DetectorCommand::Build {
        mut paths,
        target_dir,
    } = cmd
    {
        let project = if paths.is_empty() {
            let p = crate::detector::Project::current()?;
            paths.push(p.dir.clone());
            Some(p)
        } else {
            None
        };
        let target = target_dir
            .or_else(|| project.as_ref().map(|p| p.target_dir()))
            .or_else(|| paths.first().map(|p| p.join("target").join("vigil-wasm")))
            .context("give at least one crate directory")?;
        let out = crate::wasm_build::build(&paths, &target)?;
        for p in out {
            let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            println!("{} ({} KiB)", p.display(), size / 1024);
        }
        return Ok(());
    }
    let admin = &client(&admin.admin)?;
    match cmd {
        DetectorCommand::Build { .. } | DetectorCommand::Init(_) | DetectorCommand::Test(_) => {}
        DetectorCommand::Logs(a) => crate::detector::logs(admin, &a)?,
        DetectorCommand::Upload { file } => {
            let meta = upload(admin, &file)?;
            println!("{}", serde_json::to_string_pretty(&meta)?);
        }
        DetectorCommand::Deploy(a) => {
            let spec = deploy_spec(admin, *a)?;
            print_status(&api(admin.deploy(&spec))?);
        }
        DetectorCommand::Versions { name, output } => {
            let list = api(admin.modules(Some(&name)))?;
            if list.is_empty() {
                bail!("no uploaded module is named {name:?} (see `vigil detector list --modules`)");
            }
            output.print(&list, || print_modules(&list))?;
        }
        DetectorCommand::List {
            modules: true,
            output,
        } => {
            let list = api(admin.modules(None))?;
            output.print(&list, || print_modules(&list))?;
        }
        DetectorCommand::List {
            modules: false,
            output,
        } => {
            let list = api(admin.deployments())?;
            output.print(&list, || list.iter().for_each(print_status))?;
        }
        DetectorCommand::Status { name, output } => {
            let s = api(admin.status(&name))?;
            output.print(&s, || print_status(&s))?;
        }
        DetectorCommand::Pause { name } => print_status(&api(admin.pause(&name))?),
        DetectorCommand::Resume { name } => print_status(&api(admin.resume(&name))?),
        DetectorCommand::Undeploy { name } => {
            let gone = api(admin.undeploy(&name))?;
            println!("undeployed {}", gone.undeployed);
        }
        DetectorCommand::Swap(a) => crate::cli_replay::swap(admin, a)?,
        DetectorCommand::Shadow(a) => crate::cli_replay::shadow(admin, a)?,
        DetectorCommand::Diff(a) => crate::cli_replay::diff(admin, a)?,
    }
    Ok(())
}
