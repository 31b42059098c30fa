//! `vigil replay ...` (server-side replay jobs) and, in `detector`, `vigil
//! detector swap | shadow | diff`: clients of the admin API.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

use crate::cli::{call, upload, url, AdminArgs, Body};

mod detector;
pub use detector::{diff, shadow, swap, DiffArgs, ShadowArgs, SwapArgs};

/// How often a running replay is polled.
const POLL: Duration = Duration::from_millis(200);
/// How long the broker may be unreachable (e.g. restarting) while watching.
const UNREACHABLE_GRACE: Duration = Duration::from_secs(60);
/// Without a terminal, a plain progress line at most this often.
const LINE_EVERY: Duration = Duration::from_secs(1);

/// `vigil replay` flags and subcommands.
#[derive(Args, Debug)]
// `--admin` may come before a subcommand, so the submission flags cannot be
// declared as conflicting with subcommands; `run` refuses the mix instead.
#[command(subcommand_negates_reqs = true)]
pub struct ReplayArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: Option<ReplayCommand>,
    #[command(flatten)]
    start: StartArgs,
}

/// Replay jobs already submitted.
#[derive(Subcommand, Debug)]
enum ReplayCommand {
    /// Show a replay's progress (--watch: follow it to the end like a submission).
    Status {
        /// Replay id.
        id: String,
        /// Follow it with a progress bar until it ends.
        #[arg(long)]
        watch: bool,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// List replays.
    List {
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a replay and forget it (its output topic stays).
    Cancel {
        /// Replay id.
        id: String,
    },
}

/// Submitting a replay.
#[derive(Args, Debug)]
struct StartArgs {
    /// Module: NAME, NAME@VERSION, hash (or ≥ 8-digit prefix), or a .wasm file to upload first.
    #[arg(long, required = true)]
    module: Option<String>,
    /// Input topic.
    #[arg(long, required = true)]
    topic: Option<String>,
    /// First record: an offset, an RFC 3339 time, or `earliest` (default).
    #[arg(long)]
    from: Option<String>,
    /// End (exclusive): an offset, an RFC 3339 time, or `latest` (default: the high watermark now).
    #[arg(long)]
    to: Option<String>,
    /// Input partitions, e.g. `0,1` (default: all).
    #[arg(long, value_delimiter = ',')]
    partitions: Vec<i32>,
    /// Alert topic (default `<topic>.replay.<id>`).
    #[arg(long)]
    output: Option<String>,
    #[command(flatten)]
    module_input: crate::cli::ModuleInputArgs,
    /// Partitions scored at once (default: the broker's cores).
    #[arg(long)]
    parallelism: Option<u32>,
    /// Input read rate limit, bytes per second.
    #[arg(long)]
    max_bytes_per_sec: Option<u64>,
    /// Job id (default generated).
    #[arg(long)]
    id: Option<String>,
    /// Submit and return without watching.
    #[arg(long)]
    detach: bool,
}

/// A module reference; a `.wasm` path is uploaded first and named by its hash.
fn module_ref(admin: &str, m: &str) -> anyhow::Result<Value> {
    if !m.ends_with(".wasm") {
        return Ok(json!(m));
    }
    upload(admin, &m.into())?
        .get("hash")
        .cloned()
        .context("upload answer has no hash")
}

/// `earliest`/`latest`, an offset, or an RFC 3339 time as the API's position.
fn position(s: &str) -> anyhow::Result<Value> {
    if s == "earliest" || s == "latest" {
        return Ok(json!(s));
    }
    if let Ok(n) = s.parse::<i64>() {
        return Ok(json!({ "offset": n }));
    }
    match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(t) => Ok(json!({ "timestamp": t.timestamp_millis() })),
        Err(e) => bail!(
            "{s:?} is not an offset, an RFC 3339 time (e.g. 2024-05-01T12:00:00Z: {e}), earliest or latest"
        ),
    }
}

fn replay_spec(admin: &str, a: &StartArgs) -> anyhow::Result<Value> {
    let (Some(module), Some(topic)) = (&a.module, &a.topic) else {
        bail!("`vigil replay` needs --module and --topic");
    };
    let mut spec = json!({ "module": module_ref(admin, module)?, "topic": topic });
    let mut set = |k: &str, v: Value| {
        spec[k] = v;
    };
    if let Some(f) = &a.from {
        set("from", position(f)?);
    }
    if let Some(t) = &a.to {
        set("to", position(t)?);
    }
    if !a.partitions.is_empty() {
        set("partitions", json!(a.partitions));
    }
    if let Some(o) = &a.output {
        set("output", json!(o));
    }
    a.module_input.apply(&mut set)?;
    if let Some(id) = &a.id {
        set("id", json!(id));
    }
    if a.parallelism.is_some() || a.max_bytes_per_sec.is_some() {
        let mut budget = json!({});
        if let Some(p) = a.parallelism {
            budget["parallelism"] = json!(p);
        }
        if let Some(b) = a.max_bytes_per_sec {
            budget["max_bytes_per_sec"] = json!(b);
        }
        set("budget", budget);
    }
    Ok(spec)
}

/// Runs `vigil replay ...`.
pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let admin = args.admin.admin.as_str();
    if args.command.is_some() && (args.start.module.is_some() || args.start.topic.is_some()) {
        bail!("--module/--topic submit a new replay; they do not go with `status`, `list` or `cancel`");
    }
    match args.command {
        Some(ReplayCommand::List { json }) => {
            let list = call(ureq::get(&url(admin, "/v1/replays")), None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let all = list.as_array().map(Vec::as_slice).unwrap_or_default();
                if all.is_empty() {
                    println!("no replays");
                }
                for s in all {
                    print_line(s);
                }
            }
        }
        Some(ReplayCommand::Status { id, watch, json }) => {
            if watch {
                return follow(admin, &id);
            }
            let s = get(admin, &id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                summary(&s);
            }
        }
        Some(ReplayCommand::Cancel { id }) => {
            call(
                ureq::delete(&url(admin, &format!("/v1/replays/{id}"))),
                None,
            )?;
            println!("cancelled replay {id} (its output topic stays)");
        }
        None => {
            let spec = replay_spec(admin, &args.start)?;
            let s = call(
                ureq::post(&url(admin, "/v1/replays")),
                Some(Body::Json(spec)),
            )?;
            let id = text(&s, "id");
            eprintln!(
                "replay {id}: {} {} on {} [{}] → {}",
                text(&s, "module_label"),
                text(&s, "module").chars().take(12).collect::<String>(),
                text(&s, "topic"),
                partitions(&s)
                    .iter()
                    .map(|p| format!("{}:{}..{}", p["partition"], p["from"], p["to"]))
                    .collect::<Vec<_>>()
                    .join(" "),
                text(&s, "output"),
            );
            if args.start.detach {
                println!("{id}");
                return Ok(());
            }
            return follow(admin, &id);
        }
    }
    Ok(())
}

fn get(admin: &str, id: &str) -> anyhow::Result<Value> {
    call(ureq::get(&url(admin, &format!("/v1/replays/{id}"))), None)
}

/// A field as display text (`-` when missing).
fn text(v: &Value, k: &str) -> String {
    match v.get(k) {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(x) => x.to_string(),
    }
}

fn num(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

fn float(v: &Value, k: &str) -> Option<f64> {
    v.get(k).and_then(Value::as_f64)
}

fn partitions(s: &Value) -> &[Value] {
    s.get("partitions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Set by Ctrl-C: stop watching (the job itself goes on).
fn ctrl_c() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    // A signal handler only sets the flag; the watch loop looks at it
    // between polls. Without a runtime we just keep the default (exit).
    std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    set.store(true, Ordering::SeqCst);
                }
            });
        }
    });
    flag
}

fn progress_text(s: &Value) -> String {
    let mut parts = vec![format!("{} alerts", num(s, "alerts"))];
    if let Some(r) = float(s, "rows_per_sec") {
        parts.push(format!("{r:.0} rows/s"));
    }
    if let Some(e) = float(s, "eta_secs") {
        parts.push(format!("ETA {e:.1} s"));
    }
    let state = text(s, "state");
    if state != "running" {
        parts.push(state);
    }
    parts.join(", ")
}

/// Whether the admin API could not be reached at all (as opposed to answering
/// with an error).
fn unreachable(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<ureq::Error>(),
        Some(ureq::Error::Transport(_))
    )
}

/// Watches a replay to its end, then prints the summary; fails if it did.
fn follow(admin: &str, id: &str) -> anyhow::Result<()> {
    let stop = ctrl_c();
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} records, {msg}",
    )
    .context("progress bar template")?;
    bar.set_style(style);
    let mut last_line: Option<Instant> = None;
    let mut unreachable_since: Option<Instant> = None;
    loop {
        if stop.load(Ordering::SeqCst) {
            bar.abandon();
            eprintln!(
                "stopped watching; replay {id} keeps running on the broker \
                 (`vigil replay status {id} --watch` to follow it again, `vigil replay cancel {id}` to stop it)"
            );
            return Ok(());
        }
        let s = match get(admin, id) {
            Ok(s) => {
                unreachable_since = None;
                s
            }
            Err(e) if unreachable(&e) => {
                // A restarting broker: the job resumes there, keep waiting.
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() > UNREACHABLE_GRACE {
                    bar.abandon();
                    return Err(e);
                }
                bar.set_message("broker unreachable, retrying");
                std::thread::sleep(POLL);
                continue;
            }
            Err(e) => {
                bar.abandon();
                return Err(e.context(format!("replay {id}")));
            }
        };
        let (done, total) = (num(&s, "records_done"), num(&s, "records_total"));
        bar.set_length(total);
        bar.set_position(done);
        // The job's own clock: it may have started long before this watcher.
        bar.set_elapsed(Duration::from_millis(num(&s, "elapsed_ms")));
        bar.set_message(progress_text(&s));
        let state = text(&s, "state");
        let finished = state == "completed" || state == "failed";
        if !tty && (finished || last_line.is_none_or(|t| t.elapsed() >= LINE_EVERY)) {
            let pct = if total == 0 {
                100.0
            } else {
                done as f64 * 100.0 / total as f64
            };
            eprintln!(
                "replay {id}: {done}/{total} records ({pct:.0}%), {}",
                progress_text(&s)
            );
            last_line = Some(Instant::now());
        }
        match state.as_str() {
            "completed" => {
                bar.finish_and_clear();
                summary(&s);
                return Ok(());
            }
            "failed" => {
                bar.abandon();
                summary(&s);
                bail!("replay {id} failed: {}", text(&s, "error"));
            }
            _ => std::thread::sleep(POLL),
        }
    }
}

/// One line per replay for `vigil replay list`.
fn print_line(s: &Value) {
    println!(
        "{:<20} {:<10} {} → {}  {}/{} records  {} alerts  {}",
        text(s, "id"),
        text(s, "state").to_uppercase(),
        text(s, "topic"),
        text(s, "output"),
        num(s, "records_done"),
        num(s, "records_total"),
        num(s, "alerts"),
        text(s, "module_label"),
    );
}

/// The end-of-run report: totals, a table per partition, where the alerts are.
fn summary(s: &Value) {
    let secs = num(s, "elapsed_ms") as f64 / 1000.0;
    println!(
        "replay {} {}: {} records, {} alerts in {secs:.1} s ({:.0} rows/s), module {} {}",
        text(s, "id"),
        text(s, "state"),
        num(s, "records_done"),
        num(s, "alerts"),
        float(s, "rows_per_sec").unwrap_or(0.0),
        text(s, "module_label"),
        text(s, "module").chars().take(12).collect::<String>(),
    );
    if let Some(e) = s.get("error").and_then(Value::as_str) {
        println!("  error: {e}");
    }
    println!(
        "  {:>9} {:>12} {:>12} {:>12} {:>10} {:>8}  done",
        "partition", "from", "to", "offset", "records", "alerts"
    );
    for p in partitions(s) {
        println!(
            "  {:>9} {:>12} {:>12} {:>12} {:>10} {:>8}  {}",
            text(p, "partition"),
            text(p, "from"),
            text(p, "to"),
            text(p, "offset"),
            text(p, "records"),
            text(p, "alerts"),
            if p.get("done").and_then(Value::as_bool) == Some(true) {
                "yes"
            } else {
                "no"
            },
        );
    }
    println!("alerts in topic {}", text(s, "output"));
    // Under `skip` a failing module still "completes": say so loudly.
    let (failed, bad) = (num(s, "failed_batches"), num(s, "bad_records"));
    if failed > 0 || bad > 0 {
        eprintln!(
            "warning: {failed} batch(es) failed and were skipped, {bad} record(s) did not match the value schema"
        );
        for p in partitions(s) {
            if let Some(e) = p.get("last_error").and_then(Value::as_str) {
                eprintln!("  partition {}: {e}", text(p, "partition"));
            }
        }
    }
}
