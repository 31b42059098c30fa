//! The model of one series: a shingle of the last `shingle` rows of the
//! value columns, fed to a random cut forest; per column an EWMA of level
//! and spread (to scale the columns against each other and to say what was
//! expected); the running distribution of the forest's score (the alert
//! threshold adapts to each series); and incident de-duplication.

use serde::{Deserialize, Serialize};
use vigil_sdk::blocks::{Ewma, IncidentEvent, Incidents};

use crate::config::Config;
use crate::forest::Forest;

/// What one column contributed to a record's score, and how it compares
/// with what the column usually does.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnReport {
    /// Index into the config's `fields`.
    pub column: usize,
    /// The value.
    pub value: f64,
    /// EWMA level before this record.
    pub expected: f64,
    /// `expected ∓ band · spread`.
    pub low: f64,
    /// See `low`.
    pub high: f64,
    /// `(value - expected) / spread` (0 when the column has been constant
    /// and still is; ±1e9 when it has been constant and moved).
    pub deviation: f64,
    /// Part of the score the forest attributes to this column (over all
    /// positions of the shingle), in [0, 1].
    pub share: f64,
}

/// The result of one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The forest's score (mean CoDisp), 0 before the window is full.
    pub score: f64,
    /// Score at which this series alerts now (`threshold` standard
    /// deviations above the mean of its past scores); infinite during
    /// warm-up.
    pub alert_at: f64,
    /// How many standard deviations the score is above the mean, over
    /// `threshold` (≥ 1: anomalous); 0 during warm-up.
    pub ratio: f64,
    /// What the record did to the incident state.
    pub event: Option<IncidentEvent>,
    /// Per column, in config order.
    pub columns: Vec<ColumnReport>,
}

/// The per-series state (see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesModel {
    forest: Forest,
    /// Scaled rows, oldest first, `shingle * columns` values once full.
    shingle: Vec<f64>,
    levels: Vec<Ewma>,
    scores: Ewma,
    incidents: Incidents,
    rows: u64,
}

/// Spread below which a column counts as constant, relative to its level.
const FLAT: f64 = 1e-9;
/// Largest value magnitude the level statistics take in.
const VALUE_MAX: f64 = 1e150;
/// Largest scaled coordinate (in spreads from the level).
const SCALED_MAX: f64 = 1e12;
/// Values per column after which updates are clamped to the expected range.
const CLAMP_AFTER: u64 = 30;

impl SeriesModel {
    /// A fresh model; `seed` fixes the forest's cuts.
    pub fn new(cfg: &Config, seed: u64) -> Self {
        let cols = cfg.fields.len();
        SeriesModel {
            forest: Forest::new(cols * cfg.shingle, cfg.trees, cfg.sample_size, seed),
            shingle: Vec::with_capacity(cols * cfg.shingle),
            levels: (0..cols)
                .map(|_| Ewma::with_half_life(cfg.level_half_life))
                .collect(),
            scores: Ewma::with_half_life(cfg.score_half_life),
            incidents: Incidents::new(1.0, cfg.quiet, cfg.cooldown),
            rows: 0,
        }
    }

    /// Whether an incident is open on this series.
    pub fn incident_open(&self) -> bool {
        self.incidents.is_open()
    }

    /// Feeds one row (one finite value per column, config order) of the
    /// record at `offset`.
    pub fn update(&mut self, cfg: &Config, offset: i64, row: &[f64]) -> Output {
        let cols = row.len();
        let mut columns = Vec::with_capacity(cols);
        let mut scaled = Vec::with_capacity(cols);
        for (c, (&x, level)) in row.iter().zip(&mut self.levels).enumerate() {
            let (mean, std) = (level.mean(), level.std());
            let seen = level.count();
            // The forest picks dimensions by extent, so columns are put on
            // one scale: centred on their level and divided by their spread,
            // both from the past only. Past warm-up a value updates them
            // clamped to the expected range, so an anomaly barely moves the
            // scale, which would otherwise shift every later point away
            // from the window and look like an anomaly itself.
            //
            // Beyond ±VALUE_MAX a value counts as ±VALUE_MAX, so squares in
            // the spread stay finite (1e300 is still "very far").
            let xs = x.clamp(-VALUE_MAX, VALUE_MAX);
            let spread = std.max(FLAT * (1.0 + mean.abs()));
            let (low, high) = (mean - cfg.band * std, mean + cfg.band * std);
            // NaN bounds (a spread that overflowed) do not clamp.
            let ordered = low <= high;
            if seen < CLAMP_AFTER || !ordered {
                level.update(xs);
            } else {
                level.update(xs.clamp(low, high));
            }
            let (expected, deviation) = if seen == 0 {
                scaled.push(0.0);
                (x, 0.0)
            } else {
                // Clamped too, so sums of extents stay finite.
                scaled.push(((xs - mean) / spread).clamp(-SCALED_MAX, SCALED_MAX));
                (mean, vigil_sdk::blocks::deviation(x, mean, std))
            };
            columns.push(ColumnReport {
                column: c,
                value: x,
                expected,
                low,
                high,
                deviation,
                share: 0.0,
            });
        }
        self.rows += 1;
        if self.shingle.len() == cols * cfg.shingle {
            self.shingle.drain(..cols);
        }
        self.shingle.extend_from_slice(&scaled);
        let mut out = Output {
            score: 0.0,
            alert_at: f64::INFINITY,
            ratio: 0.0,
            event: None,
            columns,
        };
        if self.shingle.len() < cols * cfg.shingle {
            return out;
        }
        let scored = self.forest.update(&self.shingle);
        out.score = scored.score;
        if scored.score > 0.0 {
            for (d, (a, b)) in scored.above.iter().zip(&scored.below).enumerate() {
                out.columns[d % cols].share += (a + b) / scored.score;
            }
        }
        let warm = self.forest.is_full() && self.rows >= cfg.warmup as u64;
        if warm {
            let (mean, std) = (self.scores.mean(), self.scores.std());
            out.alert_at = mean + cfg.threshold * std;
            out.ratio = if std > 0.0 {
                ((scored.score - mean) / std / cfg.threshold).max(0.0)
            } else {
                0.0
            };
        }
        // The score distribution does not learn during incidents, so a
        // long anomaly does not raise its own bar.
        if !(warm && self.incidents.is_open()) {
            self.scores.update(scored.score);
        }
        if warm {
            out.event = self.incidents.update(offset, out.ratio);
        }
        out
    }
}
