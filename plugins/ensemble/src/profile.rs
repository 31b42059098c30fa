//! The profile shift: the level shift measured against the previous
//! days' 5-minute profile, in the unit of that profile's residuals
//! (design 0007, session 18 round 17).
//!
//! The day-aware shift (`dayshift.rs`) counts in the shift statistic's
//! scale, the spread of the last 200 records. On a series with rush
//! hours that spread holds the rush hours' swing, so a travel time that
//! rises by a third for good (a recalibration, inside the range the rush
//! hours span) scores no more than noise. Here every record of a fine
//! series (the open hour's 5-minute slot means) leaves a residual: its
//! distance, signed, to the nearest of the previous days' means of its
//! 5-minute slot. What the rush hours do every day is in those means, so
//! the residuals are only what the days do not share: noise, and a shift.
//! The statistic is the median residual of the shift's recent part (at
//! most the recent median's distance from the reference median, as the
//! day-aware shift: a level the series has held for the reference's
//! length is no news), in 1.4826 × the median absolute residual of the
//! last day of records, but not below half the shift's scale (a series
//! whose days repeat almost exactly would make any change loud). It
//! joins the day-aware shift's raw surprise (the larger counts) and so
//! its likelihood, which already learns how often such distances occur.
//!
//! The nearest day of any kind, not the same kind: a first weekend has
//! no previous weekend, and a Saturday morning at the weekdays' rush
//! hour is held back by the distance from the reference (the level did
//! not move), not by the profile.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::dayshift::ShiftView;
use crate::median::{median_of, SortedWindow};
use crate::openhour::OpenHour;
use crate::tuning::Tuning;

/// The last records' signed residuals against the previous days' profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Residuals {
    /// Newest last.
    kept: VecDeque<f64>,
    /// Their absolute values, sorted (a median every record from a copy
    /// made the whole model 40 % slower); rebuilt from `kept` after a
    /// restore.
    #[serde(skip)]
    abs: SortedWindow,
}

impl Residuals {
    /// Adds the residual of `value` against the nearest of `means` (the
    /// previous days' means of its slot), if there are at least
    /// `min_days` of them; keeps the last `keep`.
    pub fn push(
        &mut self,
        value: f64,
        means: impl Iterator<Item = f64>,
        min_days: usize,
        keep: usize,
    ) {
        if keep == 0 {
            return;
        }
        let mut days = 0;
        let mut nearest: Option<f64> = None;
        for m in means.filter(|m| m.is_finite()) {
            days += 1;
            let r = value - m;
            if nearest.is_none_or(|n| r.abs() < n.abs()) {
                nearest = Some(r);
            }
        }
        let Some(r) = nearest.filter(|r| r.is_finite() && days >= min_days.max(1)) else {
            return;
        };
        if self.abs.len() != self.kept.len() {
            self.abs.clear();
            self.kept.iter().for_each(|x| self.abs.insert(x.abs()));
        }
        while self.kept.len() >= keep {
            if let Some(old) = self.kept.pop_front() {
                self.abs.remove(old.abs());
            }
        }
        self.kept.push_back(r);
        self.abs.insert(r.abs());
    }

    /// 1.4826 × the median absolute residual, once at least half of
    /// `keep` residuals are there.
    pub fn unit(&self, keep: usize) -> Option<f64> {
        if keep == 0 || self.kept.len() * 2 < keep {
            return None;
        }
        let m = match self.abs.len() == self.kept.len() {
            true => self.abs.median(),
            false => median_of(&mut self.kept.iter().map(|r| r.abs()).collect::<Vec<_>>()),
        };
        m.map(|m| 1.4826 * m)
    }

    /// The median of the last `k` residuals (all `k` there).
    pub fn recent(&self, k: usize) -> Option<f64> {
        if k == 0 || self.kept.len() < k {
            return None;
        }
        let mut xs: Vec<f64> = self.kept.iter().rev().take(k).copied().collect();
        median_of(&mut xs)
    }
}

/// The profile shift's raw surprise, in [0, 1]: the median residual of
/// the shift's last `shift_recent` records (at most the recent median's
/// distance from the reference) in the larger of the residual unit and
/// `profile_floor` × the shift's scale, over the shift's cap. `None` off,
/// before a day of residuals, or where the shift's recent part spans more
/// than `rhythm_max_span_minutes` (a 5-minute profile says nothing of an
/// hourly series' hours).
pub(crate) fn profile_surprise(
    res: Option<&Residuals>,
    t: &Tuning,
    view: Option<ShiftView>,
) -> Option<f64> {
    let v = view?;
    if t.profile_records == 0
        || (t.rhythm_max_span_minutes > 0.0
            && v.span_ms as f64 > t.rhythm_max_span_minutes * 60_000.0)
    {
        return None;
    }
    let res = res?;
    let unit = res.unit(t.profile_records)?.max(t.profile_floor * v.scale);
    let r = res.recent(t.shift_recent)?;
    let dist = r.abs().min((v.recent - v.reference).abs());
    (unit > 0.0).then(|| (dist / unit / t.shift_cap).min(1.0))
}

/// The day-aware shift's raw surprise `raw` joined with the profile
/// shift's (the larger counts; nothing where the day-aware shift has no
/// statistic yet). The open hour adds a record's residual after this is
/// asked, so the profile shift hears the residuals up to the last record.
pub(crate) fn joined(
    raw: Option<f64>,
    open: Option<&OpenHour>,
    t: &Tuning,
    view: Option<ShiftView>,
) -> Option<f64> {
    let prof = profile_surprise(open.map(OpenHour::residuals), t, view).unwrap_or(0.0);
    raw.map(|r| r.max(prof))
}

#[cfg(test)]
#[path = "profile_tests.rs"]
mod tests;
