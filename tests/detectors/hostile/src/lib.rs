//! A deliberately misbehaving detector (trap, endless loop, memory growth,
//! deep recursion, alert flood) for the host's isolation tests.
//!
//! Config: `{"mode": "<mode>"}`; the misbehaviour happens on every batch:
//!
//! | mode | on each batch |
//! |---|---|
//! | `ok` | one alert at the batch's first offset, message `ok` |
//! | `trap` | panics with `hostile: deliberate panic` |
//! | `loop` | loops forever |
//! | `memory` | allocates 1 MiB chunks forever |
//! | `recursion` | recurses without bound |
//! | `flood` | pushes 1,000,000 alerts |
//! | `error` | returns the error `hostile: detector error` |
//!
//! Any other mode fails `new`, listing the valid ones. `ok` and `flood`
//! emit nothing for an empty batch (an alert must name one of its records).

use std::hint::black_box;

use serde::Deserialize;
use vigil_sdk::{bail, Alert, Alerts, Batch, Detector, Result};

/// The valid modes, in the order the error message lists them.
pub const MODES: [&str; 7] = [
    "ok",
    "trap",
    "loop",
    "memory",
    "recursion",
    "flood",
    "error",
];

/// Number of alerts the `flood` mode pushes per batch.
pub const FLOOD_ALERTS: usize = 1_000_000;

/// The detector's config.
#[derive(Debug, Deserialize)]
pub struct Config {
    /// Which misbehaviour to show; see the crate docs.
    pub mode: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ok,
    Trap,
    Loop,
    Memory,
    Recursion,
    Flood,
    Error,
}

/// The hostile detector.
#[derive(Debug)]
pub struct Hostile {
    mode: Mode,
    /// Where `memory` mode keeps its chunks, so they stay reachable.
    hoard: Vec<Vec<u8>>,
}

#[vigil_sdk::detector]
impl Detector for Hostile {
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        let mode = match config.mode.as_str() {
            "ok" => Mode::Ok,
            "trap" => Mode::Trap,
            "loop" => Mode::Loop,
            "memory" => Mode::Memory,
            "recursion" => Mode::Recursion,
            "flood" => Mode::Flood,
            "error" => Mode::Error,
            other => bail!(
                "hostile: unknown mode {other:?}; valid modes: {}",
                MODES.join(", ")
            ),
        };
        Ok(Hostile {
            mode,
            hoard: Vec::new(),
        })
    }

    fn process(&mut self, batch: &Batch, alerts: &mut Alerts) -> Result<()> {
        // Alerts must name a record of the batch, so the alerting modes do
        // nothing on an empty batch.
        let first = batch.offsets().first().copied();
        match self.mode {
            Mode::Ok => {
                if let Some(first) = first {
                    alerts.push(Alert::new(first).message("ok"));
                }
            }
            Mode::Trap => panic!("hostile: deliberate panic"),
            Mode::Loop => spin(),
            Mode::Memory => loop {
                // Touching every page forces real commitment; black_box keeps
                // the allocation from being elided.
                let chunk = black_box(vec![1u8; 1 << 20]);
                self.hoard.push(chunk);
                black_box(&self.hoard);
            },
            Mode::Recursion => {
                black_box(recurse(black_box(1)));
            }
            Mode::Flood => {
                let Some(first) = first else { return Ok(()) };
                for i in 0..FLOOD_ALERTS {
                    alerts.push(Alert::new(first).score(i as f64).message("flood"));
                }
            }
            Mode::Error => bail!("hostile: detector error"),
        }
        Ok(())
    }
}

/// Never returns; the counter goes through `black_box` so the loop has an
/// observable effect the optimizer must keep.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Unbounded, non-tail recursion: the addition after the call needs the
/// frame, and `black_box` hides the base case from the optimizer.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u64; 16];
    frame[(depth % 16) as usize] = depth;
    let frame = black_box(frame);
    if black_box(depth) == 0 {
        return 0;
    }
    recurse(depth + 1) + frame[(depth % 16) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vigil_sdk::testing::{new_detector, run, Rows};

    fn batch(first: i64) -> Batch {
        Rows::new(3, first)
            .keyed_row(1, "k", json!({"x": 1}))
            .keyed_row(2, "k", json!({"x": 2}))
            .build()
    }

    #[test]
    fn ok_mode_alerts_once_per_batch() {
        let alerts = run::<Hostile>(json!({"mode": "ok"}), &[batch(10), batch(20)]).unwrap();
        let got: Vec<(i64, Option<&str>)> = alerts
            .iter()
            .map(|a| (a.source_offset(), a.get_message()))
            .collect();
        assert_eq!(got, vec![(10, Some("ok")), (20, Some("ok"))]);
    }

    #[test]
    fn flood_mode_floods_and_empty_batches_are_quiet() {
        let alerts = run::<Hostile>(json!({"mode": "flood"}), &[batch(5)]).unwrap();
        assert_eq!(alerts.len(), FLOOD_ALERTS);
        assert!(alerts.iter().all(|a| a.source_offset() == 5));
        // Called directly: `run` sends batches through the ABI encoding,
        // which (vigil-abi 0.1) cannot decode a zero-row batch yet.
        let empty = Rows::new(0, 0).build();
        for mode in ["ok", "flood"] {
            let mut d = new_detector::<Hostile>(json!({ "mode": mode })).unwrap();
            let mut alerts = vigil_sdk::Alerts::new();
            d.process(&empty, &mut alerts).unwrap();
            assert!(alerts.is_empty(), "{mode}");
        }
    }

    #[test]
    fn error_mode_returns_the_error() {
        let err = run::<Hostile>(json!({"mode": "error"}), &[batch(0)]).unwrap_err();
        assert_eq!(err.to_string(), "hostile: detector error");
    }

    #[test]
    fn unknown_mode_lists_valid_ones() {
        let err = run::<Hostile>(json!({"mode": "bad-config"}), &[]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"bad-config\""), "{msg}");
        for m in MODES {
            assert!(msg.contains(m), "{msg} lacks {m}");
        }
        let err = run::<Hostile>(json!({}), &[]).unwrap_err();
        assert!(err.to_string().contains("missing field `mode`"), "{err}");
    }

    #[test]
    fn trap_mode_panics_with_the_message() {
        let r = std::panic::catch_unwind(|| {
            let _ = run::<Hostile>(json!({"mode": "trap"}), &[batch(0)]);
        });
        let payload = r.unwrap_err();
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"hostile: deliberate panic")
        );
    }
}
