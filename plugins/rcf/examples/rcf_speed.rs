//! Native rows/s of the rcf detector on synthetic rows (one series, 3
//! columns, default config): `cargo run --release -p vigil-plugin-rcf
//! --example rcf_speed [ROWS]`. The wasm figure is in the detector bench.

use std::time::Instant;

use serde_json::json;
use vigil_plugin_rcf::Rcf;
use vigil_sdk::testing::{new_detector, process_all, FieldType, Rows};

fn main() -> vigil_sdk::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let mut batches = Vec::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    for b in 0..n.div_ceil(1000) {
        let mut rows = Rows::new(0, (b * 1000) as i64).schema(&[
            ("cpu", FieldType::F64),
            ("mem", FieldType::F64),
            ("lat", FieldType::F64),
        ]);
        for i in 0..1000 {
            let o = (b * 1000 + i) as i64;
            rows = rows.row(
                o,
                None,
                json!({"cpu": 50.0 + uniform(), "mem": 30.0 + uniform(), "lat": 20.0 + uniform()}),
            );
        }
        batches.push(rows.build());
    }
    let mut d = new_detector::<Rcf>(json!({"fields": ["cpu", "mem", "lat"]}))?;
    let t = Instant::now();
    let alerts = process_all(&mut d, &batches)?;
    let secs = t.elapsed().as_secs_f64();
    let rows = batches.len() * 1000;
    println!(
        "{rows} rows, {} alerts, {:.0} rows/s native (default config: 40 trees × 512 points, 3 columns)",
        alerts.len(),
        rows as f64 / secs
    );
    Ok(())
}
