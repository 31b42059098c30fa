//! What the model says about one record.

use serde::{Deserialize, Serialize};

/// Why a record scored high.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Nothing unusual (or still learning).
    Normal,
    /// Recent behaviour is unusual for this series: new patterns and/or
    /// large prediction errors, more than the series usually shows.
    Deviation,
    /// The value left the range the series has ever shown.
    RangeBreakout,
}

impl Kind {
    /// Short name used in alert fields.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Normal => "normal",
            Kind::Deviation => "deviation",
            Kind::RangeBreakout => "range_breakout",
        }
    }
}

/// What the model says about one record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Output {
    /// Anomaly score in [0, 1].
    pub score: f64,
    /// `score`, or 0 while the series cools down after an alert: the score
    /// stream as the deployment sees it. Cut at the configured threshold it
    /// gives exactly the alerts; a sweep shows what other cuts would give.
    /// (Threshold-free suppression, `PeakSuppressor`, lost 13 points on the
    /// local corpus: a rising anomaly passes each new maximum.)
    pub stream_score: f64,
    /// True when this record raises an alert (score ≥ threshold, not cooling down).
    pub alert: bool,
    /// The predictor's expectation for this record.
    pub expected: f64,
    /// Half-width of the usual range around `expected` (about 3 typical errors).
    pub band: f64,
    /// `value - expected`.
    pub residual: f64,
    /// Residual in units of the predictor's typical error.
    pub z: f64,
    /// The record completed a pattern of movement never seen before.
    pub novel: bool,
    /// The record's level had never been seen at this time of day.
    pub novel_time_of_day: bool,
    /// The anomaly likelihoods of (prediction error, movement novelty,
    /// time-of-day novelty, repeated values, level shift, daily rhythm,
    /// scale change, day-aware level shift, rhythm break);
    /// `score` is their maximum
    /// (lowered on long series, see `Tuning::threshold_growth`) unless the
    /// value broke out of the seen range.
    pub likelihoods: [f64; 9],
    /// Why the score is high.
    pub kind: Kind,
}

impl Output {
    /// Which signal made the score: `"range_breakout"`, else the largest
    /// likelihood: `"prediction_error"`, `"movement_pattern"`,
    /// `"time_of_day"`, `"repeated_values"`, `"level_shift"`,
    /// `"daily_rhythm"`, `"scale_change"`, `"day_level_shift"` or `"rhythm_break"` (`"none"`
    /// while nothing scores).
    pub fn signal(&self) -> &'static str {
        if self.kind == Kind::RangeBreakout {
            return "range_breakout";
        }
        if self.score <= 0.0 {
            return "none";
        }
        // The first of equal maxima wins, in this order.
        const NAMES: [&str; 9] = [
            "prediction_error",
            "movement_pattern",
            "time_of_day",
            "repeated_values",
            "level_shift",
            "daily_rhythm",
            "scale_change",
            "day_level_shift",
            "rhythm_break",
        ];
        let mut best = 0;
        for (i, &l) in self.likelihoods.iter().enumerate() {
            if l > self.likelihoods[best] {
                best = i;
            }
        }
        NAMES[best]
    }
}
