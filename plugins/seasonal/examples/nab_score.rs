//! Dev tool: scores the seasonal model on the Numenta Anomaly Benchmark (NAB)
//! the way NAB's own scorer does, with the `vigil-nab` crate.
//!
//! The scoring rules live in the `vigil-nab` crate (see its crate docs).
//!
//! Two results per profile: `raw` sweeps the model's per-record score (NAB's
//! own threshold optimisation, no cooldown); `alerts` runs the detector as it
//! is deployed (cooldown included) for each threshold of a grid and keeps the best.
//!
//! Usage: `cargo run --release -p vigil-plugin-seasonal --example nab_score --
//!   [--data DIR] [--set field=json]... [--grid 0.3,0.4,..] [--verbose]`

use std::collections::BTreeMap;
use std::error::Error;
use std::path::PathBuf;

use vigil_nab::{best_threshold, score_dataset, Dataset, Profile, SeriesFile, NULL_THRESHOLD};
use vigil_plugin_seasonal::config::Config;
use vigil_plugin_seasonal::model::SeriesModel;

type Res<T> = Result<T, Box<dyn Error>>;

/// Runs the model over a series; returns (scores, alert flags).
fn run(cfg: &Config, s: &SeriesFile) -> (Vec<f64>, Vec<bool>) {
    let mut m = SeriesModel::new(cfg);
    let mut scores = Vec::with_capacity(s.len());
    let mut alerts = Vec::with_capacity(s.len());
    for (&t, &v) in s.timestamps.iter().zip(&s.values) {
        let o = m.update(cfg, t, v);
        scores.push(o.score);
        alerts.push(o.alert);
    }
    (scores, alerts)
}

fn main() -> Res<()> {
    let mut data = "/work/shared/data/nab".to_string();
    let mut overrides = serde_json::to_value(Config::default())?;
    let mut grid: Vec<f64> = (2..=19).map(|i| i as f64 * 0.05).collect();
    let mut verbose = false;
    let mut check = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--data" => data = args.next().ok_or("--data needs a directory")?,
            "--verbose" => verbose = true,
            "--check" => check = true,
            "--grid" => {
                grid = args
                    .next()
                    .ok_or("--grid needs a list")?
                    .split(',')
                    .map(|x| x.parse::<f64>())
                    .collect::<Result<_, _>>()?
            }
            "--set" => {
                let kv = args.next().ok_or("--set needs field=value")?;
                let (k, v) = kv.split_once('=').ok_or("--set needs field=value")?;
                let v = serde_json::from_str(v).unwrap_or(serde_json::Value::String(v.to_string()));
                if let Some(o) = overrides.as_object_mut() {
                    o.insert(k.to_string(), v);
                }
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let base: Config = serde_json::from_value(overrides)?;
    base.validate()?;
    let data = PathBuf::from(data);
    let profiles = Profile::load_all(&data)?;
    let dataset = Dataset::load(&data)?;
    let series = &dataset.files;
    if check {
        // The scorer's own calibration: a detector firing exactly at each
        // window's start must score 100, one that never fires 0.
        let perfect: Vec<Vec<bool>> = series
            .iter()
            .map(|s| {
                let mut v = vec![false; s.len()];
                for (l, _) in s.window_rows() {
                    v[l] = true;
                }
                v
            })
            .collect();
        let null: Vec<Vec<bool>> = series.iter().map(|s| vec![false; s.len()]).collect();
        for p in &profiles {
            let ps = score_dataset(&dataset, &perfect, p)?.normalized;
            let ns = score_dataset(&dataset, &null, p)?.normalized;
            println!("check   {:<20} perfect {ps:6.2}  null {ns:6.2}", p.name);
        }
    }

    let raw_scores: Vec<Vec<f64>> = series.iter().map(|s| run(&base, s).0).collect();
    for p in &profiles {
        let (thr, report) = best_threshold(&dataset, &raw_scores, p)?;
        println!(
            "raw     {:<20} score {:6.2}  (threshold {:.4})",
            p.name,
            report.normalized,
            thr.unwrap_or(NULL_THRESHOLD)
        );
    }

    // Per profile: (threshold, report) of the best grid threshold.
    let mut best: BTreeMap<String, (f64, vigil_nab::Report)> = BTreeMap::new();
    for &t in &grid {
        let cfg = Config {
            threshold: t,
            ..base.clone()
        };
        let alerts: Vec<Vec<bool>> = series.iter().map(|s| run(&cfg, s).1).collect();
        for p in &profiles {
            let report = score_dataset(&dataset, &alerts, p)?;
            if verbose && p.name == "standard" {
                println!("  threshold {t:.3}: standard {:.2}", report.normalized);
            }
            if best
                .get(&p.name)
                .is_none_or(|b| report.normalized > b.1.normalized)
            {
                best.insert(p.name.clone(), (t, report));
            }
        }
    }
    for (name, (t, report)) in &best {
        println!(
            "alerts  {name:<20} score {:6.2}  (threshold {t:.3}, cooldown {})",
            report.normalized, base.cooldown
        );
    }
    if verbose {
        if let Some((_, report)) = best.get("standard") {
            for f in &report.per_file {
                println!(
                    "  {:<58} windows {}/{}  fp {:3}  raw {:6.2}",
                    f.name, f.windows_hit, f.windows, f.false_positives, f.raw
                );
            }
        }
    }
    Ok(())
}
