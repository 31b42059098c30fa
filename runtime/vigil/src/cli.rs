//! `vigil detector ...`: a client of the admin API (and the local wasm build).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

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
    /// Build detector crates to .wasm modules (one cargo run).
    Build {
        /// Crate directories (each with a Cargo.toml).
        #[arg(required = true)]
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
    /// Deploy a module on input topics.
    Deploy(Box<DeployArgs>),
    /// List deployments (or uploaded modules with --modules).
    List {
        /// List uploaded modules instead.
        #[arg(long)]
        modules: bool,
    },
    /// List the uploaded versions of a module, oldest first.
    Versions {
        /// Module name (the crate name it was built from).
        name: String,
    },
    /// Show a deployment's state and per-partition progress.
    Status {
        /// Deployment name.
        name: String,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
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
    /// Puts the given flags into a spec through `set`.
    pub(crate) fn apply(&self, set: &mut impl FnMut(&str, Value)) -> anyhow::Result<()> {
        if let Some(c) = &self.config {
            set("config", text_or_file(c)?);
        }
        if let Some(s) = &self.schema {
            set("value_schema", text_or_file(s)?);
        }
        if let Some(p) = &self.on_failure {
            set("on_failure", json!(p));
        }
        Ok(())
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
    /// earliest | latest | offset:N | timestamp:MS.
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

pub(crate) fn url(admin: &str, path: &str) -> String {
    format!("{}{path}", admin.trim_end_matches('/'))
}

/// Sends a request and returns the JSON answer; API errors become their message.
pub(crate) fn call(req: ureq::Request, body: Option<Body>) -> anyhow::Result<Value> {
    let target = req.url().to_string();
    let res = match body {
        None => req.call(),
        Some(Body::Json(v)) => req.send_json(v),
        Some(Body::Bytes(b)) => req.set("content-type", "application/wasm").send_bytes(&b),
    };
    match res {
        Ok(r) => r.into_json().with_context(|| format!("unreadable answer from {target}")),
        Err(ureq::Error::Status(code, r)) => {
            let text = r.into_string().unwrap_or_default();
            let msg = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or(text);
            bail!("{msg} (HTTP {code})")
        }
        // Kept as the source so a watcher can tell "unreachable" from an API error.
        Err(e) => Err(anyhow::Error::new(e).context("cannot reach the broker's admin API (is `vigil serve` running? set --admin or VIGIL_ADMIN)")),
    }
}

pub(crate) enum Body {
    Json(Value),
    Bytes(Vec<u8>),
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

pub(crate) fn upload(admin: &str, file: &PathBuf) -> anyhow::Result<Value> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    call(
        ureq::post(&url(admin, "/v1/modules")),
        Some(Body::Bytes(bytes)),
    )
}

fn parse_start(s: &str) -> anyhow::Result<Value> {
    Ok(match s.split_once(':') {
        None if s == "earliest" || s == "latest" => json!(s),
        Some(("offset", n)) => {
            json!({ "offset": n.parse::<i64>().context("offset:N needs a number")? })
        }
        Some(("timestamp", n)) => {
            json!({ "timestamp": n.parse::<i64>().context("timestamp:MS needs a number")? })
        }
        _ => bail!("--start must be earliest, latest, offset:N or timestamp:MS (got {s:?})"),
    })
}

fn deploy_spec(admin: &str, a: DeployArgs) -> anyhow::Result<Value> {
    let mut spec = match &a.spec {
        Some(p) if p.as_os_str() == "-" => {
            serde_json::from_reader(std::io::stdin()).context("spec on stdin is not JSON")?
        }
        Some(p) => text_or_file(&format!("@{}", p.display()))?,
        None => json!({}),
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
            let meta = upload(admin, &PathBuf::from(&m))?;
            meta.get("hash")
                .cloned()
                .context("upload answer has no hash")?
        } else {
            json!(m)
        };
        set("module", hash);
    }
    if !a.inputs.is_empty() {
        set("inputs", json!(a.inputs));
    }
    if let Some(o) = a.output {
        set("output", json!(o));
    }
    a.module_input.apply(&mut set)?;
    if let Some(t) = a.dead_letter_topic {
        set("dead_letter_topic", json!(t));
    }
    if let Some(s) = a.start {
        set("start", parse_start(&s)?);
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
    Ok(spec)
}

fn print_modules(list: &Value) {
    for m in list.as_array().into_iter().flatten() {
        let uploaded = m["uploaded_at_ms"]
            .as_i64()
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        println!(
            "{}  {}@{}  abi v{}  sdk {}  {} bytes  uploaded {uploaded}",
            m["hash"].as_str().unwrap_or(""),
            m["name"].as_str().unwrap_or("?"),
            m["version"].as_str().unwrap_or("?"),
            m["abi_version"],
            m["sdk_version"].as_str().unwrap_or("?"),
            m["size"],
        );
    }
}

pub(crate) fn print_status(s: &Value) {
    let get = |v: &Value, k: &str| match v.get(k) {
        None | Some(Value::Null) => "-".to_string(),
        Some(x) => x.to_string().trim_matches('"').to_string(),
    };
    println!(
        "{}  {}  module {} {}  {} → {}  on-failure {}",
        get(s, "name"),
        get(s, "state").to_uppercase(),
        get(s, "module").chars().take(12).collect::<String>(),
        s.get("module_label").and_then(|l| l.as_str()).unwrap_or(""),
        get(s, "inputs"),
        get(s, "output"),
        get(s, "on_failure"),
    );
    if let Some(e) = s.get("error").and_then(|e| e.as_str()) {
        println!("  error: {e}");
    }
    println!(
        "  {:<24} {:>10} {:>10} {:>8} {:>12} {:>9} {:>10} {:>8}  last error",
        "partition", "offset", "hw", "lag", "event age ms", "batch/s", "records", "alerts"
    );
    for p in s
        .get("partitions")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
    {
        println!(
            "  {:<24} {:>10} {:>10} {:>8} {:>12} {:>9} {:>10} {:>8}  {}",
            format!("{}-{}", get(p, "topic"), get(p, "partition")),
            get(p, "offset"),
            get(p, "high_watermark"),
            get(p, "lag"),
            get(p, "event_age_ms"),
            get(p, "batches_per_sec"),
            get(p, "records"),
            get(p, "alerts"),
            p.get("last_error").and_then(|e| e.as_str()).unwrap_or("-"),
        );
    }
}

/// Runs one detector command.
pub fn run(admin: &AdminArgs, cmd: DetectorCommand) -> anyhow::Result<()> {
    let admin = admin.admin.as_str();
    match cmd {
        DetectorCommand::Build { paths, target_dir } => {
            let target = target_dir
                .or_else(|| paths.first().map(|p| p.join("target").join("vigil-wasm")))
                .context("give at least one crate directory")?;
            let out = crate::wasm_build::build(&paths, &target)?;
            for p in out {
                let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                println!("{} ({} KiB)", p.display(), size / 1024);
            }
        }
        DetectorCommand::Upload { file } => {
            let meta = upload(admin, &file)?;
            println!("{}", serde_json::to_string_pretty(&meta)?);
        }
        DetectorCommand::Deploy(a) => {
            let spec = deploy_spec(admin, *a)?;
            let s = call(
                ureq::post(&url(admin, "/v1/deployments")),
                Some(Body::Json(spec)),
            )?;
            print_status(&s);
        }
        DetectorCommand::Versions { name } => {
            let list = call(
                ureq::get(&url(admin, "/v1/modules")).query("name", &name),
                None,
            )?;
            if list.as_array().is_none_or(|l| l.is_empty()) {
                bail!("no uploaded module is named {name:?} (see `vigil detector list --modules`)");
            }
            print_modules(&list);
        }
        DetectorCommand::List { modules: true } => {
            let list = call(ureq::get(&url(admin, "/v1/modules")), None)?;
            print_modules(&list);
        }
        DetectorCommand::List { modules: false } => {
            let list = call(ureq::get(&url(admin, "/v1/deployments")), None)?;
            for s in list.as_array().into_iter().flatten() {
                print_status(s);
            }
        }
        DetectorCommand::Status { name, json } => {
            let s = call(
                ureq::get(&url(admin, &format!("/v1/deployments/{name}"))),
                None,
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_status(&s);
            }
        }
        DetectorCommand::Pause { name } => print_status(&call(
            ureq::post(&url(admin, &format!("/v1/deployments/{name}/pause"))),
            None,
        )?),
        DetectorCommand::Resume { name } => print_status(&call(
            ureq::post(&url(admin, &format!("/v1/deployments/{name}/resume"))),
            None,
        )?),
        DetectorCommand::Undeploy { name } => {
            call(
                ureq::delete(&url(admin, &format!("/v1/deployments/{name}"))),
                None,
            )?;
            println!("undeployed {name}");
        }
        DetectorCommand::Swap(a) => crate::cli_replay::swap(admin, a)?,
        DetectorCommand::Shadow(a) => crate::cli_replay::shadow(admin, a)?,
        DetectorCommand::Diff(a) => crate::cli_replay::diff(admin, a)?,
    }
    Ok(())
}
