//! Deployment configuration of the rcf detector and its validation.

use serde::{Deserialize, Serialize};

/// Config JSON of the detector. Only `fields` is required.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Numeric value columns modelled together (declared in the
    /// deployment's value schema), 1 to 16.
    pub fields: Vec<String>,
    /// `"none"` (one model per partition, the default), `"record_key"`, or
    /// a string column (one model per host, card, …).
    pub key: String,
    /// Consecutive rows per point: the forest sees the last `shingle` rows
    /// of every column at once, so an unusual *change* is a far point too.
    /// 1 (the default) suits several columns (unusual combinations);
    /// a single column needs 4–8 to see patterns at all. More dimensions
    /// also blur point anomalies (a far value is one of `fields × shingle`
    /// coordinates).
    pub shingle: usize,
    /// Trees in the forest (more: steadier scores, proportionally slower).
    pub trees: usize,
    /// Points each tree holds: the forest models the last `sample_size` points.
    pub sample_size: usize,
    /// A record is anomalous when its score exceeds the mean of the
    /// series' past scores by this many standard deviations. CoDisp is
    /// heavy-tailed: with the default forest, the highest of 2600 ordinary
    /// records of 3 Gaussian columns reached 20, one column 5 std off 35,
    /// so the default is 25.
    pub threshold: f64,
    /// Half-width of the expected range in alerts, in standard deviations
    /// of the column.
    pub band: f64,
    /// Rows per series before it can alert (at least `sample_size +
    /// shingle - 1` are needed anyway, for a full window).
    pub warmup: usize,
    /// Records below threshold that close an incident.
    pub quiet: usize,
    /// Records after an incident opens during which no new one opens.
    pub cooldown: usize,
    /// Half-life in records of each column's level and spread.
    pub level_half_life: f64,
    /// Half-life in records of the score distribution.
    pub score_half_life: f64,
    /// Most series (keys) modelled at once; least recently seen evicted.
    pub max_keys: usize,
    /// Seed of the random cuts (every run with the same seed and input
    /// gives the same alerts).
    pub seed: u64,
    /// Emit a score stream (`vigil_sdk::blocks::score_record`, score =
    /// score / alert level, 0 while an incident is open) instead of
    /// alerts, for `vigil eval --sweep`.
    pub scores: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fields: Vec::new(),
            key: "none".into(),
            shingle: 1,
            trees: 40,
            sample_size: 512,
            threshold: 25.0,
            band: 3.0,
            warmup: 600,
            quiet: 10,
            cooldown: 100,
            level_half_life: 500.0,
            score_half_life: 2000.0,
            max_keys: 16,
            seed: 0x005e_ed0f_c0ff_ee00,
            scores: false,
        }
    }
}

/// Memory one series may use, beyond which a config is refused: the wasm
/// memory limit is a few hundred MiB at most, and failing at deploy time
/// with the arithmetic beats an out-of-memory trap later.
pub const MAX_BYTES: u64 = 1 << 30;

impl Config {
    /// Dimensions of a forest point.
    pub fn dims(&self) -> usize {
        self.fields.len() * self.shingle
    }

    /// Upper bound of one series' memory: per tree, a leaf (point + 8
    /// bytes) per point and an internal node (box of 2 × dims + 24 bytes)
    /// per point, plus the window's leaf index.
    pub fn bytes_per_key(&self) -> u64 {
        let d = self.dims() as u64;
        let per_point = d * 8 + 8 + 2 * d * 8 + 24 + 4;
        self.trees as u64 * self.sample_size as u64 * per_point
    }

    /// Checks every field, naming the offending one in the error.
    pub fn validate(&self) -> Result<(), String> {
        if self.fields.is_empty() || self.fields.len() > 16 {
            return Err(format!(
                "`fields` must list 1 to 16 numeric value columns, got {}",
                self.fields.len()
            ));
        }
        if let Some(f) = self.fields.iter().find(|f| f.is_empty()) {
            return Err(format!("`fields` has an empty column name: {f:?}"));
        }
        if self.key.is_empty() {
            return Err("`key` must be \"none\", \"record_key\" or a string column".into());
        }
        let range = |name: &str, v: usize, lo: usize, hi: usize| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("`{name}` must be in {lo}..={hi}, got {v}"))
            }
        };
        range("shingle", self.shingle, 1, 64)?;
        range("trees", self.trees, 1, 500)?;
        range("sample_size", self.sample_size, 4, 8192)?;
        range("quiet", self.quiet, 1, 1_000_000)?;
        range("max_keys", self.max_keys, 1, 1_000_000)?;
        for (name, v) in [
            ("threshold", self.threshold),
            ("band", self.band),
            ("level_half_life", self.level_half_life),
            ("score_half_life", self.score_half_life),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("`{name}` must be a positive number, got {v}"));
            }
        }
        let total = self.bytes_per_key().saturating_mul(self.max_keys as u64);
        if total > MAX_BYTES {
            return Err(format!(
                "trees × sample_size × dimensions is too big: about {} MiB per key × {} keys \
                 (`max_keys`) exceeds {} MiB; lower `trees`, `sample_size`, `shingle` or `max_keys`",
                self.bytes_per_key() >> 20,
                self.max_keys,
                MAX_BYTES >> 20
            ));
        }
        Ok(())
    }
}
