//! Synthetic records and the detector configs shared by all sections.

use serde_json::{json, Value};

use crate::{ZSCORE_MIN_SAMPLES, ZSCORE_WINDOW};

// ---------------------------------------------------------------- data

/// SplitMix64: a well-mixed hash of `x`.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One generated record.
pub(crate) struct Rec {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) outlier: bool,
}

/// Record `i` of a stream over `keys` keys with `outlier_ppm` outliers: a
/// card payment whose amount is uniform in 85..115 (so a key's |z| stays
/// below 1.8 without outliers), or an outlier of 1000..1100. Deterministic.
pub(crate) fn record(i: u64, keys: u64, outlier_ppm: u64) -> Rec {
    let h = mix(i);
    let key = format!("card-{:05}", h % keys);
    let u = (mix(h) >> 11) as f64 / (1u64 << 53) as f64;
    let outlier = mix(h ^ 0x5555) % 1_000_000 < outlier_ppm;
    let amount = if outlier {
        1000.0 + 100.0 * u
    } else {
        85.0 + 30.0 * u
    };
    let merchant = mix(h ^ 0xAAAA) % 500;
    let value = format!(r#"{{"card":"{key}","amount":{amount:.2},"merchant":"m-{merchant}"}}"#);
    Rec {
        key,
        value,
        outlier,
    }
}

pub(crate) fn zscore_config() -> Value {
    json!({
        "field": "amount",
        "window": ZSCORE_WINDOW,
        "threshold": 3.0,
        "min_samples": ZSCORE_MIN_SAMPLES,
    })
}

pub(crate) fn value_schema() -> Value {
    json!({"amount": "float64"})
}
