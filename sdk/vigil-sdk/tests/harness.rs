//! The native harness on a small stateful detector built from the blocks:
//! run, config errors, snapshot round trips.

use serde::{Deserialize, Serialize};
use serde_json::json;
use vigil_sdk::blocks::{KeyedState, ZScore};
use vigil_sdk::prelude::*;
use vigil_sdk::testing::{new_detector, process_all, run, snapshot_round_trip, FieldType, Rows};

#[derive(Deserialize)]
struct Config {
    threshold: f64,
}

#[derive(Serialize, Deserialize)]
struct PerCard {
    threshold: f64,
    cards: KeyedState<ZScore>,
}

#[vigil_sdk::detector]
impl Detector for PerCard {
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        if config.threshold <= 0.0 {
            bail!("threshold must be positive, got {}", config.threshold);
        }
        Ok(PerCard {
            threshold: config.threshold,
            cards: KeyedState::new(100),
        })
    }

    fn process(&mut self, batch: &Batch, alerts: &mut Alerts) -> Result<()> {
        let amounts = batch.column_f64("amount")?;
        for (row, &x) in amounts.iter().enumerate() {
            let card = batch.key(row).unwrap_or_default();
            let z = self.cards.get_or_insert_with(card, || ZScore::new(20, 5));
            if let Some(s) = z.score(x).filter(|s| s.abs() > self.threshold) {
                alerts.push(
                    Alert::new(batch.offsets()[row])
                        .key(card)
                        .score(s)
                        .severity(Severity::High)
                        .field("amount", x),
                );
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> Option<Result<Vec<u8>>> {
        Some(vigil_sdk::state::to_bytes(self))
    }

    fn restore(&mut self, state: &[u8]) -> Option<Result<()>> {
        Some(vigil_sdk::state::from_bytes(state).map(|s| *self = s))
    }
}

struct NoSnapshot;

#[vigil_sdk::detector]
impl Detector for NoSnapshot {
    type Config = ();
    fn new(_config: ()) -> Result<Self> {
        Ok(NoSnapshot)
    }
    fn process(&mut self, _batch: &Batch, _alerts: &mut Alerts) -> Result<()> {
        Ok(())
    }
}

fn batches() -> Vec<Batch> {
    (0..4)
        .map(|b| {
            let mut rows = Rows::new(0, b * 10).schema(&[("amount", FieldType::F64)]);
            for i in 0..10 {
                let card = if i % 2 == 0 { "a" } else { "b" };
                let amount = if b == 3 && i == 6 {
                    500.0
                } else {
                    10.0 + (i % 3) as f64
                };
                rows = rows.keyed_row(b * 10_000 + i, card, json!({ "amount": amount }));
            }
            rows.build()
        })
        .collect()
}

#[test]
fn run_finds_the_outlier() {
    let alerts = run::<PerCard>(json!({"threshold": 4.0}), &batches()).unwrap();
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!((a.source_offset(), a.get_key()), (36, Some(&b"a"[..])));
    assert_eq!(a.get_field("amount"), Some("500.0"));
    assert!(a.get_score() > 4.0);
}

#[test]
fn config_errors_read_well() {
    let e = run::<PerCard>(json!({"threshold": -1.0}), &[]).unwrap_err();
    assert_eq!(e.to_string(), "threshold must be positive, got -1");
    let e = run::<PerCard>(json!({}), &[]).unwrap_err();
    assert_eq!(e.to_string(), "invalid config: missing field `threshold`");
    let e = run::<PerCard>(
        json!({"threshold": 1.0}),
        &[Rows::new(0, 0).row(0, None, json!({})).build()],
    )
    .unwrap_err();
    assert!(e.to_string().contains("no column `amount`"), "{e}");
}

#[test]
fn snapshot_resumes_identically() {
    let cfg = json!({"threshold": 4.0});
    let all = batches();
    let mut straight = new_detector::<PerCard>(cfg.clone()).unwrap();
    let expected = process_all(&mut straight, &all).unwrap();

    let mut first = new_detector::<PerCard>(cfg.clone()).unwrap();
    let mut got = process_all(&mut first, &all[..2]).unwrap();
    let mut resumed = snapshot_round_trip(cfg.clone(), &first).unwrap();
    got.extend(process_all(&mut resumed, &all[2..]).unwrap());
    assert_eq!(got, expected);

    let e = snapshot_round_trip(json!(null), &NoSnapshot)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.to_string(), "detector does not support snapshot");
    let mut d = NoSnapshot;
    assert!(d.restore(b"x").is_none());
}
