//! The detector workload shared by the `detectors` and `replay` benches:
//! synthetic card payments, zscore's config and value schema, and where the
//! SDK-built wasm modules are (and whether they are older than their
//! sources).

use std::path::Path;
use std::time::SystemTime;

use rdkafka::config::ClientConfig;
use serde_json::{json, Value};

/// Where `vigil detector build --target-dir target/wasm` puts the modules.
pub const DEFAULT_WASM_DIR: &str = "target/wasm/wasm32-unknown-unknown/release";
pub const BUILD_CMD: &str = "cargo build --release -p vigil && ./target/release/vigil \
    detector build --target-dir target/wasm plugins/zscore plugins/rate-spike";
/// zscore's config everywhere in these benches.
pub const ZSCORE_WINDOW: u64 = 100;
pub const ZSCORE_MIN_SAMPLES: u64 = 20;

// ---------------------------------------------------------------- data

/// SplitMix64: a well-mixed hash of `x`.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One generated record.
pub struct Rec {
    pub key: String,
    pub value: String,
    pub outlier: bool,
}

/// Record `i` of a stream over `keys` keys with `outlier_ppm` outliers: a
/// card payment whose amount is uniform in 85..115 (so a key's |z| stays
/// below 1.8 without outliers), or an outlier of 1000..1100. Deterministic.
pub fn record(i: u64, keys: u64, outlier_ppm: u64) -> Rec {
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

/// The producer settings of every source producer of the detector benches
/// (the detectors bench's pipelines and load, the replay bench's live
/// load), as printed.
pub fn source_producer_config(addr: &str, linger_ms: u64) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("compression.type", "none")
        .set("enable.idempotence", "false")
        .set("queue.buffering.max.messages", "100000")
        .set("message.timeout.ms", "60000");
    c
}

pub fn zscore_config() -> Value {
    json!({
        "field": "amount",
        "window": ZSCORE_WINDOW,
        "threshold": 3.0,
        "min_samples": ZSCORE_MIN_SAMPLES,
    })
}

pub fn value_schema() -> Value {
    json!({"amount": "float64"})
}

// ---------------------------------------------------------------- modules

/// Why the module built from `plugins/<plugin>` at `module` may be stale
/// (its sources, or the SDK's, are newer), if they are.
pub fn stale_module(plugin: &str, module: &Path) -> Option<String> {
    let root = super::workspace_root();
    let built = std::fs::metadata(module).and_then(|m| m.modified()).ok()?;
    // The plugin and everything it compiles in from the workspace.
    let sources = [
        root.join("plugins").join(plugin).join("src"),
        root.join("sdk/vigil-sdk/src"),
        root.join("sdk/vigil-abi/src"),
        root.join("sdk/vigil-macros/src"),
    ];
    let newest = sources.iter().filter_map(|d| newest_mtime(d)).max()?;
    (newest > built).then(|| {
        format!(
            "{plugin}: its sources (or the SDK's) are newer than {}",
            module.display()
        )
    })
}

fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let t = if e.path().is_dir() {
            newest_mtime(&e.path())
        } else {
            e.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(t);
    }
    newest
}
