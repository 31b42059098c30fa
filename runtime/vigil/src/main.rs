//! The `vigil` command.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use vigil_server::settings::{Settings, SettingsArgs, WalKind};

mod cli;
mod cli_cluster;
mod cli_replay;
mod client;
mod demo;
mod detector;
mod eval;
mod fdlimit;
mod offset;
mod output;
mod user;
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
    /// Log line format on stderr: text, or json (one object per line, for
    /// log shippers).
    #[arg(long, value_enum, global = true, env = "VIGIL_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: timestamp, level, target, fields, span.
    Json,
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
    /// Manage SCRAM users (AlterUserScramCredentials over the Kafka API).
    User {
        #[command(flatten)]
        conn: user::ConnArgs,
        #[command(subcommand)]
        command: user::UserCommand,
    },
    /// Re-run a detector over a range of a topic's history (a job on the broker).
    Replay(cli_replay::ReplayArgs),
    /// Show the cluster (brokers, leaders, epochs, movements) or move a partition.
    Cluster(cli_cluster::ClusterArgs),
    /// Score a detector module on a labelled NAB-format corpus with a replay job.
    Eval(eval::EvalArgs),
    /// Print a shell completion script (e.g. `vigil completions bash > /etc/bash_completion.d/vigil`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// TOML config file: keys as the long flags (`data-dir = "..."`), flat or
    /// under `[server]`, `[storage]`, `[groups]`.
    #[arg(long, env = "VIGIL_CONFIG")]
    config: Option<PathBuf>,
    /// Every setting's flag and `VIGIL_*` variable, derived from the settings
    /// types in vigil_server::settings.
    #[command(flatten)]
    settings: SettingsArgs,
}

impl ServeArgs {
    /// Flags over variables over the file over defaults, validated.
    fn into_settings(self) -> Result<Settings, vigil_server::settings::SettingsError> {
        Settings::load(self.config.as_deref(), self.settings.into_layer())
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
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().with_current_span(true).init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    match cli.command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "vigil", &mut std::io::stdout());
            Ok(())
        }
        Command::Serve(args) => {
            let settings = args.into_settings()?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(serve(settings))
        }
        Command::Detector { admin, command } => cli::run(&admin, command),
        Command::Replay(args) => cli_replay::run(args),
        Command::Cluster(args) => cli_cluster::run(args),
        Command::User { conn, command } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(user::run(&conn, command)),
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

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let data_dir = settings.storage.data_dir.clone();
    let object_store = settings.storage.object_store_url()?;
    let wal = match settings.storage.wal {
        WalKind::Local => format!("WAL in {}", data_dir.join("wal").display()),
        WalKind::Object => format!(
            "WAL in the object store ({} ms window)",
            settings.storage.wal_object_window_ms
        ),
    };
    fdlimit::prepare(settings.server.max_connections);
    let components = vigil_server::Components::from_settings(&settings)?;
    let running = vigil_server::server::start(settings, components).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let cli = Cli::try_parse_from(["vigil", "serve"].iter().chain(args))?;
        match cli.command {
            Command::Serve(a) => Ok(a),
            _ => unreachable!("parsed `serve`"),
        }
    }

    /// Every setting's flag is the kebab-case TOML key and its variable
    /// `VIGIL_` + the key in upper snake case, so the three cannot drift.
    #[test]
    fn flags_and_variables_follow_the_setting_names() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        // Global flags (`--log-format`) apply to `serve` too.
        let globals: Vec<clap::Arg> = cmd
            .get_arguments()
            .filter(|a| a.is_global_set())
            .cloned()
            .collect();
        let serve = cmd.find_subcommand_mut("serve").expect("serve");
        let mut seen = Vec::new();
        for arg in serve.get_arguments().chain(&globals) {
            let Some(long) = arg.get_long() else { continue };
            let env = arg
                .get_env()
                .and_then(|e| e.to_str())
                .expect("every flag has a variable");
            assert_eq!(
                env,
                format!("VIGIL_{}", long.replace('-', "_").to_uppercase())
            );
            seen.push(long.to_string());
        }
        let expected = [
            "config",
            "listen",
            "admin-listen",
            "data-dir",
            "object-store",
            "advertised-listener",
            "auto-create-topics",
            "default-partitions",
            "node-id",
            "coordinator",
            "session-ttl-ms",
            "authorizer",
            "upload-interval-ms",
            "upload-bytes",
            "group-initial-rebalance-delay-ms",
            "wal",
            "wal-object-window-ms",
            "wal-group-hold-us",
            "lease-interval-ms",
            "takeover",
            "max-unuploaded-bytes",
            "object-store-timeout-ms",
            "object-store-connect-timeout-ms",
            "object-store-max-retries",
            "object-store-retry-timeout-ms",
            "object-store-backoff-initial-ms",
            "object-store-backoff-max-ms",
            "retention-check-interval-ms",
            "gc-grace-ms",
            "fault-file",
            "max-partitions",
            "offsets-retention-minutes",
            "offsets-retention-check-interval-ms",
            "admin-max-connections",
            "admin-max-concurrent-requests",
            "admin-header-read-timeout-ms",
            "admin-json-body-bytes",
            "admin-module-body-bytes",
            "message-max-bytes",
            "socket-request-max-bytes",
            "fetch-max-bytes",
            "fetch-max-wait-ms",
            "max-in-flight-requests-per-connection",
            "max-connections",
            "max-connections-per-ip",
            "connections-max-idle-ms",
            "request-read-timeout-ms",
            "security-protocol",
            "listener",
            "tls-cert",
            "tls-key",
            "tls-client-ca",
            "admin-auth",
            "metrics-listen",
            "admin-tls",
            "sasl-mechanisms",
            "superuser",
            "bootstrap-password-file",
            "connections-max-reauth-ms",
            "max-failed-logins",
            "failed-login-window-ms",
            "log-format",
        ];
        for flag in expected {
            assert!(
                seen.iter().any(|s| s == flag),
                "--{flag} missing from {seen:?}"
            );
        }
        let unlisted: Vec<_> = seen
            .iter()
            .filter(|s| !expected.contains(&s.as_str()))
            .collect();
        assert!(
            unlisted.is_empty(),
            "flags not listed here (add them, with their variable): {unlisted:?}"
        );
    }

    /// Flags over variables over the file over defaults. One test, because
    /// it sets process-wide variables.
    #[test]
    fn flags_beat_variables_beat_the_file_beat_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("vigil.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1001\"\nnode-id = 1\ntakeover = true\n\
             [storage]\nupload-interval-ms = 11\nwal = \"object\"\n",
        )
        .expect("write");
        let file = file.to_str().expect("utf-8 path");
        let s = serve_args(&["--config", file])
            .expect("parse")
            .into_settings();
        let s = s.expect("valid");
        assert_eq!(s.server.listen.port(), 1001);
        assert_eq!(s.storage.wal, WalKind::Object);
        assert!(s.storage.takeover);
        assert_eq!(s.server.admin_listen.port(), 9644, "default");

        std::env::set_var("VIGIL_LISTEN", "127.0.0.1:2002");
        std::env::set_var("VIGIL_UPLOAD_INTERVAL_MS", "22");
        std::env::set_var("VIGIL_TAKEOVER", "false");
        let s = serve_args(&["--config", file, "--listen", "127.0.0.1:3003"])
            .expect("parse")
            .into_settings()
            .expect("valid");
        std::env::remove_var("VIGIL_LISTEN");
        std::env::remove_var("VIGIL_UPLOAD_INTERVAL_MS");
        std::env::remove_var("VIGIL_TAKEOVER");
        assert_eq!(s.server.listen.port(), 3003, "the flag beats the variable");
        assert_eq!(
            s.storage.upload_interval_ms, 22,
            "the variable beats the file"
        );
        assert!(
            !s.storage.takeover,
            "a variable set to false beats the file"
        );
        assert_eq!(s.server.node_id, 1, "the file beats the default");
        assert_eq!(s.storage.wal, WalKind::Object);

        let s = serve_args(&[
            "--takeover",
            "--auto-create-topics",
            "false",
            "--wal",
            "object",
        ])
        .expect("parse")
        .into_settings()
        .expect("valid");
        assert!(s.storage.takeover && !s.server.auto_create_topics);
        assert_eq!(s.storage.wal, WalKind::Object);
    }

    /// List flags repeat; defaults of list settings survive when not given;
    /// a certificate subject (commas and all) is one super user.
    #[test]
    fn security_list_flags() {
        let s = serve_args(&[])
            .expect("parse")
            .into_settings()
            .expect("valid");
        assert_eq!(
            s.security.sasl_mechanisms,
            ["SCRAM-SHA-256", "SCRAM-SHA-512"]
        );
        assert!(s.security.listener.is_empty() && s.security.superuser.is_empty());
        let s = serve_args(&[
            "--listener",
            "SASL_PLAINTEXT://127.0.0.1:0",
            "--listener",
            "PLAINTEXT://127.0.0.1:0@kafka.example:19092",
            "--superuser",
            "admin",
            "--superuser",
            "CN=client-1,O=Example",
            "--sasl-mechanisms",
            "PLAIN,SCRAM-SHA-512",
        ])
        .expect("parse")
        .into_settings()
        .expect("valid");
        assert_eq!(s.security.listener.len(), 2);
        assert_eq!(s.security.superuser, ["admin", "CN=client-1,O=Example"]);
        assert_eq!(s.security.sasl_mechanisms, ["PLAIN", "SCRAM-SHA-512"]);
    }

    #[test]
    fn bad_flags_name_the_setting() {
        for (args, name) in [
            (&["--listen", "nonsense"][..], "--listen"),
            (&["--wal", "tape"], "--wal"),
            (&["--default-partitions", "x"], "--default-partitions"),
        ] {
            let e = serve_args(args).err().expect("rejected");
            assert!(e.to_string().contains(name), "{args:?}: {e}");
        }
        let e = serve_args(&["--default-partitions", "0"])
            .expect("parse")
            .into_settings()
            .expect_err("out of range");
        assert_eq!(e.setting, "default-partitions");
    }
}
