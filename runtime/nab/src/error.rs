//! Typed errors of the loader and the scorer.

use std::path::PathBuf;

/// Everything that can go wrong while loading a NAB corpus or scoring it.
/// Each variant names the file (and line or row) at fault.
#[derive(Debug, thiserror::Error)]
pub enum NabError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (`combined_windows.json`, `profiles.json`) is malformed.
    #[error("{}: {source}", path.display())]
    Json {
        /// The malformed file.
        path: PathBuf,
        /// The parser's error (it carries line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A data line of a series CSV is malformed.
    #[error("{}:{line}: {message}", path.display())]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// 1-based line number (the header is line 1).
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// A labelled window in `combined_windows.json` is malformed.
    #[error("{}: window {index} of {file}: {message}", path.display())]
    Window {
        /// The windows file.
        path: PathBuf,
        /// The series the window belongs to (e.g. `realKnownCause/nyc_taxi.csv`).
        file: String,
        /// 0-based index of the window in that series' list.
        index: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A profile in `profiles.json` lacks a weight or has a non-numeric one.
    #[error("{}: profile {profile}: {message}", path.display())]
    Profile {
        /// The profiles file.
        path: PathBuf,
        /// The profile's name.
        profile: String,
        /// What is wrong with it.
        message: String,
    },
    /// The number of per-file inputs differs from the number of files.
    #[error("expected inputs for {expected} files, got {got}")]
    FileCount {
        /// Files in the dataset.
        expected: usize,
        /// Inputs given.
        got: usize,
    },
    /// A per-file input does not have one entry per record.
    #[error("{file}: expected {expected} values (one per record), got {got}")]
    Length {
        /// The series.
        file: String,
        /// Records in the series.
        expected: usize,
        /// Entries given.
        got: usize,
    },
    /// A score is NaN, so it cannot be ordered against a threshold.
    #[error("{file}: score of row {row} is NaN")]
    NanScore {
        /// The series.
        file: String,
        /// 0-based record index.
        row: usize,
    },
}
