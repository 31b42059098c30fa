//! Scoring rules of the Numenta Anomaly Benchmark (NAB).
//!
//! NAB (Lavin & Ahmad, "Evaluating Real-time Anomaly Detection Algorithms –
//! the Numenta Anomaly Benchmark", 2015; repository `numenta/NAB`) scores a
//! detector on labelled series as follows, which this crate reimplements from
//! the rules (no NAB code is used):
//!
//! * The first 15 % of each series (at most 750 records) is a probationary
//!   period: nothing in it is scored ([`probation_rows`]).
//! * Each labelled anomaly window rewards its best detection only, by the
//!   scaled sigmoid of the detection's position in the window
//!   ([`scaled_sigmoid`]), normalised so the window's first record earns the
//!   profile's `tp` weight and later ones less; a window with no detection
//!   costs `fn_`.
//! * A detection outside every window costs `fp` times the scaled sigmoid of
//!   its distance past the end of the previous window, measured in that
//!   window's widths (so a detection just after a window costs little), and
//!   the full `fp` when no window precedes it.
//! * The corpus raw score (the sum over series) is normalised so the null
//!   detector (never flags) scores 0 and the perfect one (flags the first
//!   record of every window, nothing else) scores 100 ([`normalize`]).
//! * For detectors emitting scores rather than flags, one threshold is chosen
//!   for the whole corpus and each profile, maximising the raw score
//!   ([`best_threshold`]).
//!
//! The three standard profiles (`standard`, `reward_low_FP_rate`,
//! `reward_low_FN_rate`) are read from the corpus' `profiles.json`
//! ([`Profile::load_all`]); the corpus itself from `combined_windows.json`
//! and `data/**.csv` ([`Dataset::load`]).

mod error;
mod load;
mod score;

pub use error::NabError;
pub use load::{
    parse_timestamp, Dataset, Profile, SeriesFile, DATA_DIR, PROFILES_FILE, WINDOWS_FILE,
};
pub use score::{
    best_threshold, normalize, probation_rows, scaled_sigmoid, score_dataset, score_file,
    FileScore, Report, MAX_PROBATION_ROWS, NULL_THRESHOLD, PROBATION_FRACTION,
};

#[cfg(test)]
mod tests;
