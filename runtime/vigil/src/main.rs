//! The `vigil` command.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use vigil_server::config::FileConfig;

mod cli;
mod cli_replay;
mod client;
mod demo;
mod eval;
mod wasm_build;

// Keeps hostile array lengths in requests from aborting the broker; see
// vigil_protocol::alloc.
#[global_allocator]
static ALLOC: vigil_protocol::alloc::LazyLargeAlloc = vigil_protocol::alloc::LazyLargeAlloc;

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "A Kafka-compatible broker on object storage, with wasm anomaly detectors next to the log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve(ServeArgs),
    /// Build, upload, deploy and manage detector modules.
    Detector {
        #[command(flatten)]
        admin: cli::AdminArgs,
        #[command(subcommand)]
        command: cli::DetectorCommand,
    },
    /// Run the fraud demo: embedded broker, a detector on `payments`, alerts printed.
    Demo(demo::DemoArgs),
    /// Re-run a detector over a range of a topic's history (a job on the broker).
    Replay(cli_replay::ReplayArgs),
    /// Score a detector module on a labelled NAB-format corpus with a replay job.
    Eval(eval::EvalArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// TOML config file (keys as the long flags, e.g. `data-dir = "..."`).
    #[arg(long, env = "VIGIL_CONFIG")]
    config: Option<PathBuf>,
    /// Kafka listener address.
    #[arg(long, env = "VIGIL_LISTEN")]
    listen: Option<String>,
    /// Admin HTTP listener (/metrics, /healthz).
    #[arg(long, env = "VIGIL_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// Directory for the WAL and caches.
    #[arg(long, env = "VIGIL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Object store URL: file:///path (default <data-dir>/objects), s3://bucket/prefix, memory://.
    #[arg(long, env = "VIGIL_OBJECT_STORE")]
    object_store: Option<String>,
    /// host:port clients should connect to (default: the listen address).
    #[arg(long, env = "VIGIL_ADVERTISED_LISTENER")]
    advertised_listener: Option<String>,
    /// Create topics on first use.
    #[arg(long, env = "VIGIL_AUTO_CREATE_TOPICS")]
    auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics.
    #[arg(long, env = "VIGIL_DEFAULT_PARTITIONS")]
    default_partitions: Option<i32>,
    /// Broker node id.
    #[arg(long, env = "VIGIL_NODE_ID")]
    node_id: Option<i32>,
    /// Longest time (ms) durable data waits in the WAL before upload.
    #[arg(long, env = "VIGIL_UPLOAD_INTERVAL_MS")]
    upload_interval_ms: Option<u64>,
    /// Delay (ms) before the first rebalance of a new consumer group completes.
    #[arg(long, env = "VIGIL_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    group_initial_rebalance_delay_ms: Option<u64>,
    /// Write-ahead log: `local` (fsync'd file, uploaded every interval) or
    /// `object` (acks=all only once the data is in the object store).
    #[arg(long, env = "VIGIL_WAL")]
    wal: Option<String>,
    /// Batching window (ms) of the object WAL: one PUT per window.
    #[arg(long, env = "VIGIL_WAL_OBJECT_WINDOW_MS")]
    wal_object_window_ms: Option<u64>,
    /// How often (ms) this broker renews its lease on the log; a new broker
    /// waits three intervals to tell a live owner from a crashed one.
    #[arg(long, env = "VIGIL_LEASE_INTERVAL_MS")]
    lease_interval_ms: Option<u64>,
    /// Take the log over even if another broker is alive and serving it; the
    /// other broker is fenced (its later writes fail).
    #[arg(long, env = "VIGIL_TAKEOVER")]
    takeover: bool,
}

impl ServeArgs {
    fn into_file_config(self) -> anyhow::Result<FileConfig> {
        let base = match &self.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        Ok(base.overlay(FileConfig {
            listen: self.listen,
            admin_listen: self.admin_listen,
            data_dir: self.data_dir,
            object_store: self.object_store,
            advertised_listener: self.advertised_listener,
            auto_create_topics: self.auto_create_topics,
            default_partitions: self.default_partitions,
            node_id: self.node_id,
            upload_interval_ms: self.upload_interval_ms,
            group_initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms,
            wal: self.wal,
            wal_object_window_ms: self.wal_object_window_ms,
            lease_interval_ms: self.lease_interval_ms,
            takeover: self.takeover.then_some(true),
        }))
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the cause chain on one line; no backtrace for
            // errors a user caused.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The broker logs its progress; client commands and the demo print
    // their own output and log only problems.
    let default_filter = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Serve(args) => {
            let config = args.into_file_config()?.resolve()?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(serve(config))
        }
        Command::Detector { admin, command } => cli::run(&admin, command),
        Command::Replay(args) => cli_replay::run(args),
        Command::Demo(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(demo::run(args)),
        Command::Eval(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(eval::run(args)),
    }
}

async fn serve(config: vigil_server::ServeConfig) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    let object_store = config.object_store.clone();
    let wal = match &config.wal {
        vigil_storage::config::WalMode::Local => {
            format!("WAL in {}", data_dir.join("wal").display())
        }
        vigil_storage::config::WalMode::Object { window } => {
            format!("WAL in the object store ({} ms window)", window.as_millis())
        }
    };
    let running = vigil_server::server::start(config).await?;
    tracing::info!(
        kafka = %running.kafka_addr,
        admin = %running.admin_addr,
        data_dir = %data_dir.display(),
        object_store = %object_store,
        epoch = running.broker.log.epoch(),
        "vigil is serving Kafka on {} (admin http://{}), {wal}, objects in {}",
        running.kafka_addr,
        running.admin_addr,
        object_store
    );
    wait_for_signal().await?;
    tracing::info!("shutting down: finishing requests, uploading the WAL");
    running.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot listen for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
