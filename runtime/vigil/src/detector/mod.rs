//! The detector workflow outside this repository, like `rpk transform` and
//! `smdk`: `vigil detector init` scaffolds a crate with a `vigil.toml`;
//! `build`, `test` and `deploy` read that file in the current directory;
//! `logs` shows what a deployment's module logged.

mod init;
pub mod project;
mod test_run;

use std::time::Duration;

use clap::Args;
use vigil_api::client::AdminClient;
use vigil_api::{LogLine, LogsQuery};

use crate::cli::api;
use crate::output::{Format, OutputArgs};

pub use init::{init, InitArgs};
pub use project::Project;
pub use test_run::{run as test, TestArgs};

/// How often `logs --follow` asks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// `vigil detector logs` flags.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Deployment name.
    pub name: String,
    /// Keep printing new lines until interrupted.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only the last N lines kept (before following).
    #[arg(long)]
    pub tail: Option<usize>,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn print_line(l: &LogLine, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string(l)?),
        Format::Table => {
            let time = chrono::DateTime::from_timestamp_millis(l.time_ms)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
                .unwrap_or_default();
            println!(
                "{time} {:<5} {:<20} {}",
                l.level.to_uppercase(),
                l.instance,
                l.message
            );
        }
    }
    Ok(())
}

/// `vigil detector logs`: the kept lines, then (with `--follow`) new ones.
/// JSON output is one line object per line, so it can be followed too.
pub fn logs(admin: &AdminClient, a: &LogsArgs) -> anyhow::Result<()> {
    let format = a.output.format();
    let mut q = LogsQuery::default();
    let first = api(admin.logs(&a.name, &q))?;
    let skip = a.tail.map_or(0, |t| first.lines.len().saturating_sub(t));
    for l in &first.lines[skip..] {
        print_line(l, format)?;
    }
    q.after = Some(first.next);
    if !a.follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(FOLLOW_EVERY);
        let page = api(admin.logs(&a.name, &q))?;
        if page.dropped > 0 {
            eprintln!(
                "({} lines were dropped before they could be shown)",
                page.dropped
            );
        }
        for l in &page.lines {
            print_line(l, format)?;
        }
        q.after = Some(page.next);
    }
}
