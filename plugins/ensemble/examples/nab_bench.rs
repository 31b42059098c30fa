//! Reproducible benchmark: scores the ensemble model on a Numenta Anomaly
//! Benchmark corpus the way NAB's scorer does (the `vigil-nab` crate),
//! natively, per split of the corpus' categories and in total.
//!
//! Three figures per split and profile:
//! * `fixed`: the detector as deployed (default threshold, cooldown) — what
//!   a deployment actually gets;
//! * `grid`: the deployed detector with the best threshold of a grid (an
//!   upper bound of what re-tuning the threshold could give);
//! * `sweep`: NAB's own threshold optimisation over the per-record score
//!   stream (0 during cooldowns, the stream `"scores": true` emits), as
//!   NAB reports detectors that emit scores.
//!
//! The two splits exist to keep development honest: tune on one, check on
//! the other, then swap (see `docs/design/0007-detector-ensemble.md`).
//!
//! Usage: `cargo run --release -p vigil-plugin-ensemble --example nab_bench --
//!   [--data DIR] [--set field=json]... [--tune name=number]...
//!   [--shift-minutes N] [--verbose] [--checksum]`
//! (`--checksum` prints only a hash of every output bit of every record;
//! `--quick` skips the threshold grid and sweep.)
//! (DIR defaults to `$NAB_DATA` or `../shared/data/nab`; `examples/data/nab`
//! in this repository is a small corpus in the same layout).

use std::error::Error;
use std::path::PathBuf;

use vigil_nab::{best_threshold, score_dataset, Dataset, Profile, SeriesFile};
use vigil_plugin_ensemble::config::Config;
use vigil_plugin_ensemble::model::{SeriesModel, Tuning};

type Res<T> = Result<T, Box<dyn Error>>;

/// Category splits: (name, category directory prefixes).
const SPLITS: &[(&str, &[&str])] = &[
    ("A", &["realAWSCloudwatch/", "artificialNoAnomaly/"]),
    ("B", &["realKnownCause/", "artificialWithAnomaly/"]),
    ("total", &[""]),
];

/// Runs the model over a series; returns (scores, alert flags).
fn run(cfg: &Config, t: &Tuning, s: &SeriesFile) -> (Vec<f64>, Vec<bool>) {
    let mut m = SeriesModel::with_tuning(cfg, t);
    let mut scores = Vec::with_capacity(s.len());
    let mut alerts = Vec::with_capacity(s.len());
    for (&v, &ts) in s.values.iter().zip(&s.timestamps) {
        let o = m.update_tuned(cfg, t, v, ts);
        scores.push(o.stream_score);
        alerts.push(o.alert);
    }
    (scores, alerts)
}

/// Per window: where it lies, the highest raw score in it and where the
/// first alert fell (diagnostics for `--verbose`).
fn explain(cfg: &Config, t: &Tuning, s: &SeriesFile) {
    let mut m = SeriesModel::with_tuning(cfg, t);
    let outs: Vec<_> = s
        .values
        .iter()
        .zip(&s.timestamps)
        .map(|(&v, &ts)| m.update_tuned(cfg, t, v, ts))
        .collect();
    let inside = |i: usize| {
        s.windows
            .iter()
            .any(|&(a, b)| s.timestamps[i] >= a && s.timestamps[i] <= b)
    };
    let probation = vigil_nab::probation_rows(s.len());
    for (i, o) in outs.iter().enumerate() {
        if o.alert && i >= probation && !inside(i) {
            println!(
                "      FP at {i}: {:?} score {:.2}, likelihoods (error, pattern, time of day, repeats, shift, daily, scale, day shift, rhythm) {:.2?}",
                o.kind, o.score, o.likelihoods
            );
        }
    }
    for &(a, b) in &s.windows {
        let lo = s.timestamps.partition_point(|&x| x < a);
        let hi = s.timestamps.partition_point(|&x| x <= b);
        let (mut best, mut at) = (0.0f64, lo);
        for (i, o) in outs.iter().enumerate().take(hi).skip(lo) {
            if o.score > best {
                best = o.score;
                at = i;
            }
        }
        let mut lmax = [0.0f64; 9];
        for o in &outs[lo..hi] {
            for (m, l) in lmax.iter_mut().zip(o.likelihoods) {
                *m = m.max(l);
            }
        }
        let first = (lo..hi).find(|&i| outs[i].alert);
        let prev = (0..lo).rev().find(|&i| outs[i].alert);
        println!(
            "      window {lo}..{hi} of {}: max score {best:.3} at {at} ({:?}), first alert {first:?}, previous alert {prev:?}, likelihood maxima {lmax:.2?}",
            s.len(),
            outs[at].kind
        );
    }
}

/// FNV-1a over the bits of every output of every record (`--checksum`):
/// a faster implementation must leave this unchanged, not just the
/// rounded scores.
fn checksum(cfg: &Config, t: &Tuning, d: &Dataset) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for s in &d.files {
        let mut m = SeriesModel::with_tuning(cfg, t);
        for (&v, &ts) in s.values.iter().zip(&s.timestamps) {
            let o = m.update_tuned(cfg, t, v, ts);
            // The sixth likelihood (session 9) counts only when it is not
            // 0, so a run with it off hashes as before it existed.
            let sixth = (o.likelihoods[5] != 0.0).then_some(o.likelihoods[5]);
            // Likewise the seventh (session 9, round 2).
            let seventh = (o.likelihoods[6] != 0.0).then_some(o.likelihoods[6]);
            // And the eighth (session 10).
            let eighth = (o.likelihoods[7] != 0.0).then_some(o.likelihoods[7]);
            let ninth = (o.likelihoods[8] != 0.0).then_some(o.likelihoods[8]);
            let fields = [o.score, o.stream_score, o.expected, o.band, o.z]
                .into_iter()
                .chain(o.likelihoods[..5].iter().copied())
                .chain(sixth)
                .chain(seventh)
                .chain(eighth)
                .chain(ninth)
                .map(f64::to_bits)
                .chain([o.alert as u64, o.novel as u64, o.novel_time_of_day as u64]);
            for x in fields {
                for b in x.to_le_bytes() {
                    h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
                }
            }
        }
    }
    h
}

fn subset(d: &Dataset, prefixes: &[&str]) -> (Dataset, Vec<usize>) {
    let idx: Vec<usize> = (0..d.files.len())
        .filter(|&i| prefixes.iter().any(|p| d.files[i].name.starts_with(p)))
        .collect();
    let files = idx.iter().map(|&i| d.files[i].clone()).collect();
    (Dataset { files }, idx)
}

fn pick<T: Clone>(all: &[T], idx: &[usize]) -> Vec<T> {
    idx.iter().map(|&i| all[i].clone()).collect()
}

fn set_tuning(t: &mut Tuning, name: &str, v: f64) -> Res<()> {
    match name {
        "level_window" => t.level_window = v as usize,
        "novelty_weight" => t.novelty_weight = v,
        "error_cap" => t.error_cap = v,
        "std_floor" => t.std_floor = v,
        "separate" => t.separate = v != 0.0,
        "tod_buckets" => t.tod_buckets = v as usize,
        "breakout_bypass" => t.breakout_bypass = v != 0.0,
        "shift_log_fall" => t.shift_log_fall = v != 0.0,
        "shift_coarse_cap" => t.shift_coarse_cap = v,
        "flat_signal" => t.flat_signal = v != 0.0,
        "flat_std_floor" => t.flat_std_floor = v,
        "threshold_growth" => t.threshold_growth = v,
        "breakout_rearm" => t.breakout_rearm = v as usize,
        "rearm_tolerance" => t.rearm_tolerance = v,
        "shift_cap" => t.shift_cap = v,
        "shift_recent" => t.shift_recent = v as usize,
        "shift_ref" => t.shift_ref = v as usize,
        "shift_std_floor" => t.shift_std_floor = v,
        "shift_short" => t.shift_short = v as usize,
        "shift_short_minutes" => t.shift_short_minutes = v,
        "seasonal_cap" => t.seasonal_cap = v,
        "seasonal_slots" => t.seasonal_slots = v as usize,
        "seasonal_days" => t.seasonal_days = v as usize,
        "seasonal_min_days" => t.seasonal_min_days = v as usize,
        "seasonal_weekend" => t.seasonal_weekend = v != 0.0,
        "seasonal_short_minutes" => t.seasonal_short_minutes = v,
        "seasonal_std_floor" => t.seasonal_std_floor = v,
        "seasonal_learn" => t.seasonal_learn = v as usize,
        "seasonal_gap_zero" => t.seasonal_gap_zero = v != 0.0,
        "scale_cap" => t.scale_cap = v,
        "scale_std_floor" => t.scale_std_floor = v,
        "scale_recent_minutes" => t.scale_recent_minutes = v,
        "scale_ref_factor" => t.scale_ref_factor = v,
        "dayshift_days" => t.dayshift_days = v as usize,
        "dayshift_kind_days" => t.dayshift_kind_days = v as usize,
        "dayshift_slots" => t.dayshift_slots = v as usize,
        "dayshift_std_floor" => t.dayshift_std_floor = v,
        "rhythm_days" => t.rhythm_days = v as usize,
        "rhythm_min_days" => t.rhythm_min_days = v as usize,
        "rhythm_cap" => t.rhythm_cap = v,
        "rhythm_std_floor" => t.rhythm_std_floor = v,
        "rhythm_max_span_minutes" => t.rhythm_max_span_minutes = v,
        "flat_bypass" => t.flat_bypass = v as usize,
        "pattern_forget" => t.pattern_forget = v as u32,
        "pattern_generations" => t.pattern_generations = v as usize,
        "pattern_forgotten" => t.pattern_forgotten = v,
        "breakout_area" => t.breakout_area = v,
        "deviation_rearm" => t.deviation_rearm = v,
        "early_minutes" => t.early_minutes = v,
        "early_records" => t.early_records = v as usize,
        "early_area" => t.early_area = v,
        "young_burst_minutes" => t.young_burst_minutes = v,
        "young_burst_ratio" => t.young_burst_ratio = v,
        "rearm_minutes" => t.rearm_minutes = v,
        "rearm_min_records" => t.rearm_min_records = v as usize,
        "peak_slots" => t.peak_slots = v as usize,
        "peak_cap" => t.peak_cap = v,
        "peak_std_floor" => t.peak_std_floor = v,
        "peak_dead" => t.peak_dead = v,
        "peak_learn" => t.peak_learn = v as usize,
        "swing_cap" => t.swing_cap = v,
        "swing_days" => t.swing_days = v as usize,
        "swing_std_floor" => t.swing_std_floor = v,
        "swing_min_step" => t.swing_min_step = v,
        "swing_log" => t.swing_log = v != 0.0,
        "swing_gain_hours" => t.swing_gain_hours = v,
        "swing_gain_floor" => t.swing_gain_floor = v,
        "hour_cusum_cap" => t.hour_cusum_cap = v,
        "hour_cusum_slack" => t.hour_cusum_slack = v,
        "hour_cusum_floor" => t.hour_cusum_floor = v,
        "hour_cusum_drop" => t.hour_cusum_drop = v,
        "shift_fall" => t.shift_fall = v != 0.0,
        "shift_fall_max_step" => t.shift_fall_max_step = v,
        "open_minutes" => t.open_minutes = v,
        "open_leave_out" => t.open_leave_out = v != 0.0,
        "open_east_hours" => t.open_east_hours = v,
        "profile_records" => t.profile_records = v as usize,
        "profile_floor" => t.profile_floor = v,
        other => return Err(format!("unknown tuning {other}").into()),
    }
    Ok(())
}

fn main() -> Res<()> {
    let mut data = std::env::var("NAB_DATA").unwrap_or_else(|_| "../shared/data/nab".into());
    let mut overrides = serde_json::to_value(Config::default())?;
    let mut tuning = Tuning::default();
    let grid: Vec<f64> = (1..=19).map(|i| i as f64 * 0.05).collect();
    let mut verbose = false;
    let mut want_checksum = false;
    let mut quick = false;
    let mut shift_ms = 0i64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--data" => data = args.next().ok_or("--data needs a directory")?,
            "--verbose" => verbose = true,
            "--checksum" => want_checksum = true,
            "--quick" => quick = true,
            "--shift-minutes" => {
                shift_ms = args
                    .next()
                    .ok_or("--shift-minutes needs a number")?
                    .parse::<i64>()?
                    * 60_000
            }
            "--set" => {
                let kv = args.next().ok_or("--set needs field=value")?;
                let (k, v) = kv.split_once('=').ok_or("--set needs field=value")?;
                let v = serde_json::from_str(v).unwrap_or(serde_json::Value::String(v.to_string()));
                if let Some(o) = overrides.as_object_mut() {
                    o.insert(k.to_string(), v);
                }
            }
            "--tune" => {
                let kv = args.next().ok_or("--tune needs name=number")?;
                let (k, v) = kv.split_once('=').ok_or("--tune needs name=number")?;
                set_tuning(&mut tuning, k, v.parse()?)?;
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let base: Config = serde_json::from_value(overrides)?;
    base.validate()?;
    let data = PathBuf::from(data);
    let profiles = Profile::load_all(&data)?;
    let mut dataset = Dataset::load(&data)?;
    // Moving every timestamp (and window) by the same amount changes
    // nothing NAB scores, only where the day's bucket boundaries fall: a
    // robustness check of the time-of-day context.
    for f in &mut dataset.files {
        f.timestamps.iter_mut().for_each(|t| *t += shift_ms);
        f.windows
            .iter_mut()
            .for_each(|w| *w = (w.0 + shift_ms, w.1 + shift_ms));
    }
    if want_checksum {
        println!("checksum {:016x}", checksum(&base, &tuning, &dataset));
        return Ok(());
    }
    let started = std::time::Instant::now();
    let runs: Vec<(Vec<f64>, Vec<bool>)> = dataset
        .files
        .iter()
        .map(|s| run(&base, &tuning, s))
        .collect();
    let rows: usize = dataset.files.iter().map(|f| f.len()).sum();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} series, {rows} records, {:.0} records/s native",
        dataset.files.len(),
        rows as f64 / secs.max(1e-9)
    );
    let scores: Vec<Vec<f64>> = runs.iter().map(|r| r.0.clone()).collect();
    let fixed: Vec<Vec<bool>> = runs.iter().map(|r| r.1.clone()).collect();
    // Alerts of the deployed detector for every grid threshold.
    // `--quick`: the fixed figures only (grid and sweep equal `fixed`).
    let grid = if quick { vec![base.threshold] } else { grid };
    let per_threshold: Vec<Vec<Vec<bool>>> = grid
        .iter()
        .map(|&thr| {
            let cfg = Config {
                threshold: thr,
                ..base.clone()
            };
            dataset
                .files
                .iter()
                .map(|s| run(&cfg, &tuning, s).1)
                .collect()
        })
        .collect();

    println!(
        "{:<6} {:<20} {:>7} {:>15} {:>15}",
        "split", "profile", "fixed", "grid (thr)", "sweep (thr)"
    );
    // The fixed splits, then every category alone (standard profile only):
    // the synthetic held-out corpus has its own categories.
    let mut categories: Vec<String> = dataset
        .files
        .iter()
        .filter_map(|f| f.name.split_once('/').map(|(c, _)| format!("{c}/")))
        .collect();
    categories.dedup();
    let splits: Vec<(String, Vec<String>)> = SPLITS
        .iter()
        .map(|(n, p)| (n.to_string(), p.iter().map(|s| s.to_string()).collect()))
        .chain(categories.iter().map(|c| (c.clone(), vec![c.clone()])))
        .collect();
    for (split, prefixes) in &splits {
        let prefixes: Vec<&str> = prefixes.iter().map(String::as_str).collect();
        let (sub, idx) = subset(&dataset, &prefixes);
        if sub.files.is_empty() {
            continue;
        }
        let per_category = !SPLITS.iter().any(|(n, _)| n == split);
        for p in &profiles {
            if per_category && p.name != "standard" {
                continue;
            }
            let f = score_dataset(&sub, &pick(&fixed, &idx), p)?;
            let mut best = (f64::NEG_INFINITY, 0.0);
            for (g, thr) in per_threshold.iter().zip(&grid) {
                let r = score_dataset(&sub, &pick(g, &idx), p)?.normalized;
                if r > best.0 {
                    best = (r, *thr);
                }
            }
            let (thr, sw) = if quick {
                (Some(base.threshold), f.clone())
            } else {
                best_threshold(&sub, &pick(&scores, &idx), p)?
            };
            println!(
                "{:<6} {:<20} {:>7.2} {:>8.2} ({:.2}) {:>8.2} ({:.3})",
                split.trim_end_matches('/'),
                p.name,
                f.normalized,
                best.0,
                best.1,
                sw.normalized,
                thr.unwrap_or(vigil_nab::NULL_THRESHOLD)
            );
            if verbose && p.name == "standard" && split == "total" {
                for (r, s) in f.per_file.iter().zip(&dataset.files) {
                    println!(
                        "  {:<58} windows {}/{}  fp {:3}  raw {:6.2}",
                        r.name, r.windows_hit, r.windows, r.false_positives, r.raw
                    );
                    explain(&base, &tuning, s);
                }
            }
        }
    }
    Ok(())
}
