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
