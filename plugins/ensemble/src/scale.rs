//! Scale-change statistic (design 0007, session 9 round 2): the median
//! absolute prediction error of the last day against that of the week
//! before it. A daily swing that triples, or noise that grows, moves
//! neither the level (the shift statistic) nor the range, and the error
//! likelihood judges single errors against a scale that adapts within
//! about 100 records; a day's errors against a week's are a comparison of
//! scales that holds still long enough to see such a change.

use serde::{Deserialize, Serialize};
use vigil_sdk::blocks::AnomalyLikelihood;

use crate::median::median_of;
use crate::shift::{ShiftMedians, ShiftWindow};

/// Settings of the scale statistic (from `Tuning`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleSettings {
    /// Error ratio (recent over reference) that counts as full surprise;
    /// the raw surprise is `ln(ratio) / ln(cap)`, growth only. ≤ 1: off.
    pub cap: f64,
    /// Minutes of record time of the recent part.
    pub recent_minutes: f64,
    /// Reference length in multiples of the recent part.
    pub ref_factor: f64,
    /// Fewest records in the recent part.
    pub min_recent: usize,
}

/// Per-series state of the scale statistic and its likelihood.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleChange {
    /// Timestamps of the first records (emptied once the step is known).
    probe_ts: Vec<i64>,
    /// Recent and reference lengths in records (0 until the step is known).
    len: (usize, usize),
    /// The last `len.0 + len.1` absolute prediction errors.
    hist: ShiftWindow,
    likelihood: AnomalyLikelihood,
}

impl ScaleChange {
    /// A fresh statistic; `likelihood` is the likelihood it feeds.
    pub fn new(likelihood: AnomalyLikelihood) -> Self {
        ScaleChange {
            probe_ts: Vec::new(),
            len: (0, 0),
            hist: ShiftWindow::default(),
            likelihood,
        }
    }

    /// Notes the timestamp of a record before the step is known; after
    /// `probe` of them, sets the window lengths from their median gap.
    pub fn observe_time(&mut self, s: &ScaleSettings, ts_ms: i64, probe: usize) {
        if self.len.0 > 0 || self.probe_ts.len() > probe {
            return;
        }
        self.probe_ts.push(ts_ms);
        if self.probe_ts.len() == probe + 1 {
            let step = median_gap_minutes(&self.probe_ts);
            self.probe_ts = Vec::new();
            if step > 0.0 {
                let m = ((s.recent_minutes / step).ceil() as usize).max(s.min_recent.max(1));
                let r = ((m as f64 * s.ref_factor).ceil() as usize).max(2);
                self.len = (m, r);
            }
        }
    }

    /// Replaces the likelihood (its short window follows the shift
    /// likelihood's); only while it has heard nothing.
    pub fn set_likelihood(&mut self, likelihood: AnomalyLikelihood) {
        self.likelihood = likelihood;
    }

    /// Adds one absolute prediction error; the likelihood of the scale
    /// statistic. The likelihood hears nothing until the statistic exists
    /// (a day and a week of history): a learning period of zeros would
    /// make the first ordinary ratios look new.
    pub fn update(&mut self, s: &ScaleSettings, err: f64) -> f64 {
        let (m, r) = self.len;
        if m == 0 {
            return 0.0;
        }
        let Some(ShiftMedians {
            recent, reference, ..
        }) = self.hist.push(m, r, err)
        else {
            return 0.0;
        };
        // A reference median of 0 (a series that mostly repeats) has no
        // scale to compare with.
        let raw = if reference > 0.0 && recent > reference {
            ((recent / reference).ln() / s.cap.ln()).min(1.0)
        } else {
            0.0
        };
        self.likelihood.update(raw)
    }
}

/// Median gap between consecutive timestamps, in minutes (0 if none): the
/// record step, robust to one long gap among the first records (their
/// mean span took a 5-minute series with a 19-hour gap for an hourly one).
fn median_gap_minutes(ts: &[i64]) -> f64 {
    let mut gaps: Vec<f64> = ts
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]) as f64 / 60_000.0)
        .collect();
    median_of(&mut gaps).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::{SeriesModel, Tuning};
    use crate::tests::swing_week;

    #[test]
    fn a_tripled_daily_swing_is_flagged_by_the_scale_likelihood() {
        let values = swing_week();
        let cfg = Config::default();
        let outputs = |t: &Tuning| {
            let mut m = SeriesModel::with_tuning(&cfg, t);
            values
                .iter()
                .enumerate()
                .map(|(i, &v)| m.update_tuned(&cfg, t, v, i as i64 * 3_600_000))
                .collect::<Vec<_>>()
        };
        let on = outputs(&Tuning::default());
        let week = &on[900..1068];
        let top = week.iter().map(|o| o.likelihoods[6]).fold(0.0, f64::max);
        assert!(top >= 0.5, "scale likelihood at most {top}");
        // The prediction error notices the first larger swings; later in
        // the week only the scale of the errors still says the day is
        // unusual: records whose score reaches the threshold on that alone.
        let alone = |outs: &[crate::model::Output]| {
            outs[900..1068]
                .iter()
                .filter(|o| o.score >= 0.5 && o.likelihoods[..6].iter().all(|&l| l < 0.5))
                .count()
        };
        assert!(alone(&on) > 0, "the scale likelihood never scored alone");
        // The ordinary days before it are not news.
        let before = on[600..900]
            .iter()
            .map(|o| o.likelihoods[6])
            .fold(0.0, f64::max);
        assert!(before < 0.5, "scale likelihood {before} before the week");
        // Off with the daily swing (`swing.rs`), which shares its
        // likelihood slot and sees the same week.
        let off = outputs(&Tuning {
            scale_cap: 0.0,
            swing_cap: 0.0,
            ..Tuning::default()
        });
        assert_eq!(alone(&off), 0);
        assert!(off.iter().all(|o| o.likelihoods[6] == 0.0));
    }

    #[test]
    fn one_long_gap_does_not_change_the_step() {
        let mut ts: Vec<i64> = (0..21).map(|i| i * 300_000).collect();
        for t in ts.iter_mut().skip(12) {
            *t += 19 * 3_600_000;
        }
        assert_eq!(median_gap_minutes(&ts), 5.0);
    }
}
