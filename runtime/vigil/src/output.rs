//! `--output table|json` for every command that lists things.

use clap::{Args, ValueEnum};
use serde::Serialize;

/// How a listing is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Aligned text for people.
    #[default]
    Table,
    /// The admin API's JSON, pretty-printed, for scripts (`jq`).
    Json,
}

/// The flag, for listing commands (`--json` is kept as a short form of
/// `--output json`).
#[derive(Args, Debug, Clone, Copy)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long = "output", short = 'o', value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Same as `--output json`.
    #[arg(long, hide = true)]
    pub json: bool,
}

impl OutputArgs {
    /// The format asked for.
    pub fn format(&self) -> Format {
        if self.json {
            Format::Json
        } else {
            self.format
        }
    }

    /// Prints `value` as JSON, or runs `table` to print it as text.
    pub fn print<T: Serialize + ?Sized>(
        &self,
        value: &T,
        table: impl FnOnce(),
    ) -> anyhow::Result<()> {
        match self.format() {
            Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
            Format::Table => table(),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Subcommands that list or show things; each must take
    /// `--output table|json`. `logs` prints the module's lines and has its
    /// own `--output` (text|json), checked below too.
    const LISTING: &[&str] = &["list", "status", "versions"];

    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<(String, bool)>) {
        for sub in cmd.get_subcommands() {
            let here = format!("{path} {}", sub.get_name());
            if LISTING.contains(&sub.get_name()) || sub.get_name() == "logs" {
                let has = sub.get_arguments().any(|a| {
                    a.get_long() == Some("output")
                        && a.get_possible_values()
                            .iter()
                            .any(|v| v.get_name() == "json")
                });
                out.push((here.clone(), has));
            }
            walk(sub, &here, out);
        }
    }

    /// Every listing command of the CLI has `--output` with a `json`
    /// choice, including any added later (found by walking the clap tree,
    /// not from a list that could go stale).
    #[test]
    fn every_listing_command_has_output_json() {
        let mut found = Vec::new();
        walk(&crate::Cli::command(), "vigil", &mut found);
        // The walk sees the commands known today, so it cannot pass empty.
        for want in [
            "vigil detector list",
            "vigil detector versions",
            "vigil detector status",
            "vigil detector logs",
            "vigil replay status",
            "vigil replay list",
            "vigil cluster status",
            "vigil user list",
        ] {
            assert!(
                found.iter().any(|(p, _)| p == want),
                "{want} not found in {found:?}"
            );
        }
        let missing: Vec<_> = found.iter().filter(|(_, has)| !has).collect();
        assert!(
            missing.is_empty(),
            "listing commands without --output json: {missing:?}"
        );
    }
}
