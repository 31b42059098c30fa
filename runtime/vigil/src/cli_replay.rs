//! `vigil replay ...` (server-side replay jobs) and, in `detector`, `vigil
//! detector swap | shadow | diff`: clients of the admin API.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use vigil_api::client::{AdminClient, ClientError};
use vigil_api::{Budget, ReplaySpec, ReplayStatus};

use crate::cli::{api, client, or_dash, short_hash, upload, AdminArgs};
use crate::output::OutputArgs;

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
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List replays.
    List {
        #[command(flatten)]
        output: OutputArgs,
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
    /// First record: earliest (default) | latest | N | @RFC3339 | @MS.
    #[arg(long)]
    from: Option<String>,
    /// End (exclusive): latest (default: the high watermark now) | earliest | N | @RFC3339 | @MS.
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
fn module_ref(admin: &AdminClient, m: &str) -> anyhow::Result<String> {
    if !m.ends_with(".wasm") {
        return Ok(m.to_string());
    }
    Ok(upload(admin, std::path::Path::new(m))?.hash)
}

fn replay_spec(admin: &AdminClient, a: &StartArgs) -> anyhow::Result<ReplaySpec> {
    let (Some(module), Some(topic)) = (&a.module, &a.topic) else {
        bail!("`vigil replay` needs --module and --topic");
    };
    let budget = (a.parallelism.is_some() || a.max_bytes_per_sec.is_some()).then(|| Budget {
        parallelism: a.parallelism.map(|p| p as usize),
        max_bytes_per_sec: a.max_bytes_per_sec,
        cpu_share: None,
    });
    Ok(ReplaySpec {
        module: module_ref(admin, module)?,
        topic: topic.clone(),
        from: a.from.as_deref().map(crate::offset::parse).transpose()?,
        to: a.to.as_deref().map(crate::offset::parse).transpose()?,
        partitions: (!a.partitions.is_empty()).then(|| a.partitions.clone()),
        output: a.output.clone(),
        id: a.id.clone(),
        config: a.module_input.config()?.unwrap_or_default(),
        value_schema: a.module_input.schema()?,
        limits: Default::default(),
        on_failure: a.module_input.on_failure()?,
        max_batch_bytes: None,
        budget,
        principal: None,
    })
}

/// Runs `vigil replay ...`.
pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let admin = &client(&args.admin.admin)?;
    if args.command.is_some() && (args.start.module.is_some() || args.start.topic.is_some()) {
        bail!("--module/--topic submit a new replay; they do not go with `status`, `list` or `cancel`");
    }
    match args.command {
        Some(ReplayCommand::List { output }) => {
            let all = api(admin.replays())?;
            output.print(&all, || {
                if all.is_empty() {
                    println!("no replays");
                }
                all.iter().for_each(print_line);
            })?;
        }
        Some(ReplayCommand::Status { id, watch, output }) => {
            if watch {
                return follow(admin, &id);
            }
            let s = api(admin.replay_status(&id))?;
            output.print(&s, || summary(&s))?;
        }
        Some(ReplayCommand::Cancel { id }) => {
            let gone = api(admin.cancel_replay(&id))?;
            println!(
                "cancelled replay {} (its output topic stays)",
                gone.cancelled
            );
        }
        None => {
            let spec = replay_spec(admin, &args.start)?;
            let s = api(admin.replay(&spec))?;
            eprintln!(
                "replay {}: {} {} on {} [{}] → {}",
                s.id,
                or_dash(s.module_label.as_deref()),
                short_hash(&s.module),
                s.topic,
                s.partitions
                    .iter()
                    .map(|p| format!("{}:{}..{}", p.partition, p.from, p.to))
                    .collect::<Vec<_>>()
                    .join(" "),
                s.output,
            );
            if args.start.detach {
                println!("{}", s.id);
                return Ok(());
            }
            return follow(admin, &s.id);
        }
    }
    Ok(())
}

/// A count the API keeps as `i64` (never negative) for a progress bar.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
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

fn progress_text(s: &ReplayStatus) -> String {
    let mut parts = vec![
        format!("{} alerts", s.alerts),
        format!("{:.0} rows/s", s.rows_per_sec),
    ];
    if let Some(e) = s.eta_secs {
        parts.push(format!("ETA {e:.1} s"));
    }
    let state = s.state.name();
    if state != "running" {
        parts.push(state.to_string());
    }
    parts.join(", ")
}

/// Watches a replay to its end, then prints the summary; fails if it did.
fn follow(admin: &AdminClient, id: &str) -> anyhow::Result<()> {
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
        let s = match admin.replay_status(id) {
            Ok(s) => {
                unreachable_since = None;
                s
            }
            Err(e) if e.is_unreachable() => {
                // A restarting broker: the job resumes there, keep waiting.
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() > UNREACHABLE_GRACE {
                    bar.abandon();
                    return api(Err(e));
                }
                bar.set_message("broker unreachable, retrying");
                std::thread::sleep(POLL);
                continue;
            }
            Err(e) => {
                bar.abandon();
                return Err(anyhow::Error::new::<ClientError>(e).context(format!("replay {id}")));
            }
        };
        let (done, total) = (count(s.records_done), count(s.records_total));
        bar.set_length(total);
        bar.set_position(done);
        // The job's own clock: it may have started long before this watcher.
        bar.set_elapsed(Duration::from_millis(count(s.elapsed_ms)));
        bar.set_message(progress_text(&s));
        let state = s.state.name();
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
        match state {
            "completed" => {
                bar.finish_and_clear();
                summary(&s);
                return Ok(());
            }
            "failed" => {
                bar.abandon();
                summary(&s);
                bail!("replay {id} failed: {}", or_dash(s.state.error()));
            }
            _ => std::thread::sleep(POLL),
        }
    }
}

/// One line per replay for `vigil replay list`.
fn print_line(s: &ReplayStatus) {
    println!(
        "{:<20} {:<10} {} → {}  {}/{} records  {} alerts  {}",
        s.id,
        s.state.name().to_uppercase(),
        s.topic,
        s.output,
        s.records_done,
        s.records_total,
        s.alerts,
        or_dash(s.module_label.as_deref()),
    );
}

/// The end-of-run report: totals, a table per partition, where the alerts are.
fn summary(s: &ReplayStatus) {
    let secs = count(s.elapsed_ms) as f64 / 1000.0;
    println!(
        "replay {} {}: {} records, {} alerts in {secs:.1} s ({:.0} rows/s), module {} {}",
        s.id,
        s.state.name(),
        s.records_done,
        s.alerts,
        s.rows_per_sec,
        or_dash(s.module_label.as_deref()),
        short_hash(&s.module),
    );
    if let Some(e) = s.state.error() {
        println!("  error: {e}");
    }
    println!(
        "  {:>9} {:>12} {:>12} {:>12} {:>10} {:>8}  done",
        "partition", "from", "to", "offset", "records", "alerts"
    );
    for p in &s.partitions {
        println!(
            "  {:>9} {:>12} {:>12} {:>12} {:>10} {:>8}  {}",
            p.partition,
            p.from,
            p.to,
            p.offset,
            p.records,
            p.alerts,
            if p.done { "yes" } else { "no" },
        );
    }
    println!("alerts in topic {}", s.output);
    // Under `skip` a failing module still "completes": say so loudly.
    let (failed, bad) = (s.failed_batches, s.bad_records);
    if failed > 0 || bad > 0 {
        eprintln!(
            "warning: {failed} batch(es) failed and were skipped, {bad} record(s) did not match the value schema"
        );
        for p in &s.partitions {
            if let Some(e) = &p.last_error {
                eprintln!("  partition {}: {e}", p.partition);
            }
        }
    }
}
