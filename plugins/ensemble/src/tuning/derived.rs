//! Values derived from a [`Tuning`]: the length shift of deviation
//! scores and the scale estimator's settings.

use super::Tuning;
use crate::scale::ScaleSettings;

/// Records after which deviation scores start to be lowered
/// (`Tuning::threshold_growth`): NAB's usual file length.
const THRESHOLD_BASE_RECORDS: f64 = 4000.0;
/// Most that deviation scores are lowered by (`Tuning::threshold_growth`;
/// reached after about 12 600 records at the default 0.4): a long-lived
/// deployment keeps alerting on deviations.
const MAX_THRESHOLD_SHIFT: f64 = 0.2;

impl Tuning {
    /// How much a deviation score is lowered after `records` records
    /// (`threshold_growth` per decade beyond `THRESHOLD_BASE_RECORDS`, at
    /// most `MAX_THRESHOLD_SHIFT`; 0 with the growth off).
    pub(crate) fn length_shift(&self, records: u64) -> f64 {
        if self.threshold_growth <= 0.0 {
            return 0.0;
        }
        let decades = (records as f64 / THRESHOLD_BASE_RECORDS).max(1.0).log10();
        (self.threshold_growth * decades).min(MAX_THRESHOLD_SHIFT)
    }
}

impl From<&Tuning> for ScaleSettings {
    fn from(t: &Tuning) -> Self {
        ScaleSettings {
            cap: t.scale_cap,
            recent_minutes: t.scale_recent_minutes,
            ref_factor: t.scale_ref_factor,
            min_recent: t.shift_recent,
        }
    }
}
