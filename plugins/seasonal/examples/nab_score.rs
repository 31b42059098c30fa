//! Dev tool: scores the seasonal model on the Numenta Anomaly Benchmark (NAB)
//! the way NAB's own scorer does, reading the CSVs directly.
//!
//! Scoring rules (NAB's `sweeper.py`): the first 15 % of each file (at most
//! 750 rows) is probationary and not scored; a detection inside a labelled
//! window is worth the scaled sigmoid of its position in the window (earliest
//! = `tpWeight`), only the best detection per window counts, a window with none
//! costs `fnWeight`, and each detection outside windows costs `fpWeight` times
//! the scaled sigmoid of its distance past the previous window (-1 with no
//! previous window). One threshold per profile is chosen over the whole corpus
//! to maximise the total; the total is normalised so the null detector scores 0
//! and the perfect one 100.
//!
//! Two results per profile: `raw` sweeps the model's per-record score (NAB's
//! own threshold optimisation, no cooldown); `alerts` runs the detector as it
//! is deployed (cooldown included) for each threshold of a grid and keeps the best.
//!
//! Usage: `cargo run --release -p vigil-plugin-seasonal --example nab_score --
//!   [--data DIR] [--set field=json]... [--grid 0.3,0.4,..] [--verbose]`

use std::collections::BTreeMap;
use std::error::Error;
use std::fs;

use vigil_plugin_seasonal::config::Config;
use vigil_plugin_seasonal::model::SeriesModel;

type Res<T> = Result<T, Box<dyn Error>>;

struct Series {
    name: String,
    ts_ms: Vec<i64>,
    values: Vec<f64>,
    /// Inclusive (left, right) row indices of each labelled window.
    windows: Vec<(usize, usize)>,
}

#[derive(Clone, Copy)]
struct Profile {
    tp: f64,
    fp: f64,
    fn_: f64,
}

/// One scorable row (after the probationary period).
struct Point {
    score: f64,
    sweep: f64,
    window: Option<usize>,
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC) into epoch milliseconds.
fn parse_ts(s: &str) -> Option<i64> {
    let s = s.trim();
    let num = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let days = days_from_civil(num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let secs = num(11, 13)? * 3600 + num(14, 16)? * 60 + num(17, 19)?;
    Some((days * 86_400 + secs) * 1000)
}

fn load(data: &str) -> Res<Vec<Series>> {
    let windows: BTreeMap<String, Vec<Vec<String>>> = serde_json::from_str(&fs::read_to_string(
        format!("{data}/combined_windows.json"),
    )?)?;
    let mut out = Vec::new();
    for (name, wins) in windows {
        let text = fs::read_to_string(format!("{data}/data/{name}"))?;
        let mut ts_ms = Vec::new();
        let mut values = Vec::new();
        for line in text.lines().skip(1) {
            let Some((t, v)) = line.split_once(',') else {
                continue;
            };
            ts_ms.push(parse_ts(t).ok_or_else(|| format!("{name}: bad timestamp {t}"))?);
            values.push(v.trim().parse::<f64>()?);
        }
        let mut idx = Vec::new();
        for w in wins {
            let (Some(a), Some(b)) = (
                w.first().and_then(|s| parse_ts(s)),
                w.get(1).and_then(|s| parse_ts(s)),
            ) else {
                return Err(format!("{name}: bad window {w:?}").into());
            };
            let left = ts_ms.iter().position(|&t| t >= a);
            let right = ts_ms.iter().rposition(|&t| t <= b);
            if let (Some(l), Some(r)) = (left, right) {
                idx.push((l, r));
            }
        }
        out.push(Series {
            name,
            ts_ms,
            values,
            windows: idx,
        });
    }
    Ok(out)
}

fn scaled_sigmoid(pos: f64) -> f64 {
    if pos >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * pos).exp()) - 1.0
    }
}

/// NAB's `calcSweepScore`; window ids are offset by `first_window` so they are
/// unique across the corpus.
fn sweep(s: &Series, scores: &[f64], p: Profile, first_window: usize) -> Vec<Point> {
    let n = s.ts_ms.len().min(scores.len());
    let probation = ((0.15 * n as f64).floor()).min(0.15 * 5000.0) as usize;
    let max_tp = scaled_sigmoid(-1.0);
    let mut out = Vec::new();
    let mut prev: Option<(usize, f64)> = None; // (right index, width)
    for (i, &score) in scores.iter().enumerate().take(n) {
        let win = s.windows.iter().position(|&(l, r)| l <= i && i <= r);
        let sweep = match win {
            Some(w) => {
                let (l, r) = s.windows[w];
                let width = (r - l + 1) as f64;
                let pos = -((r as f64) - (i as f64) + 1.0) / width;
                scaled_sigmoid(pos) * p.tp / max_tp
            }
            None => {
                let pos = match prev {
                    None => 3.0,
                    Some((r, width)) => (i as f64 - r as f64).abs() / (width - 1.0),
                };
                scaled_sigmoid(pos) * p.fp
            }
        };
        if let Some(w) = win {
            let (l, r) = s.windows[w];
            if i == r {
                prev = Some((r, (r - l + 1) as f64));
            }
        }
        if i >= probation {
            out.push(Point {
                score,
                sweep,
                window: win.map(|w| w + first_window),
            });
        }
    }
    out
}

/// NAB's threshold sweep: returns (best raw total, its threshold).
fn optimise(points: &mut [Point], p: Profile) -> (f64, f64, usize) {
    points.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut parts: BTreeMap<usize, f64> = BTreeMap::new();
    for pt in points.iter() {
        if let Some(w) = pt.window {
            parts.insert(w, -p.fn_);
        }
    }
    let n_windows = parts.len();
    let mut total: f64 = parts.values().sum();
    let mut best = (total, 1.1);
    let mut i = 0;
    while i < points.len() {
        let thr = points[i].score;
        while i < points.len() && points[i].score == thr {
            let pt = &points[i];
            match pt.window {
                None => total += pt.sweep,
                Some(w) => {
                    let old = parts.get(&w).copied().unwrap_or(-p.fn_);
                    if pt.sweep > old {
                        total += pt.sweep - old;
                        parts.insert(w, pt.sweep);
                    }
                }
            }
            i += 1;
        }
        if total > best.0 {
            best = (total, thr);
        }
    }
    (best.0, best.1, n_windows)
}

fn normalise(raw: f64, n_windows: usize, p: Profile) -> f64 {
    let null = -p.fn_ * n_windows as f64;
    let perfect = p.tp * n_windows as f64;
    100.0 * (raw - null) / (perfect - null)
}

/// Runs the model over a series; returns (scores, alert flags).
fn run(cfg: &Config, s: &Series) -> (Vec<f64>, Vec<f64>) {
    let mut m = SeriesModel::new(cfg);
    let mut scores = Vec::with_capacity(s.values.len());
    let mut alerts = Vec::with_capacity(s.values.len());
    for (&t, &v) in s.ts_ms.iter().zip(&s.values) {
        let o = m.update(cfg, t, v);
        scores.push(o.score);
        alerts.push(if o.alert { 1.0 } else { 0.0 });
    }
    (scores, alerts)
}

fn corpus_score(series: &[Series], outputs: &[Vec<f64>], p: Profile) -> (f64, f64) {
    let mut points = Vec::new();
    let mut first = 0;
    for (s, o) in series.iter().zip(outputs) {
        points.extend(sweep(s, o, p, first));
        first += s.windows.len();
    }
    let (raw, thr, nw) = optimise(&mut points, p);
    (normalise(raw, nw, p), thr)
}

/// Per-file detail for alert output: (windows hit, windows, false positives, raw).
fn file_detail(s: &Series, alerts: &[f64], p: Profile) -> (usize, usize, usize, f64) {
    let mut pts = sweep(s, alerts, p, 0);
    let fps = pts
        .iter()
        .filter(|x| x.window.is_none() && x.score > 0.5)
        .count();
    let mut hit = std::collections::BTreeSet::new();
    for x in &pts {
        if let (Some(w), true) = (x.window, x.score > 0.5) {
            hit.insert(w);
        }
    }
    let nw = pts
        .iter()
        .filter_map(|x| x.window)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let mut raw: f64 = -p.fn_ * nw as f64;
    let mut best: BTreeMap<usize, f64> = BTreeMap::new();
    for x in pts.iter_mut().filter(|x| x.score > 0.5) {
        match x.window {
            None => raw += x.sweep,
            Some(w) => {
                let e = best.entry(w).or_insert(-p.fn_);
                if x.sweep > *e {
                    raw += x.sweep - *e;
                    *e = x.sweep;
                }
            }
        }
    }
    (hit.len(), nw, fps, raw)
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
    let profiles: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&fs::read_to_string(format!("{data}/profiles.json"))?)?;
    let profiles: Vec<(String, Profile)> = profiles
        .into_iter()
        .map(|(name, v)| {
            let c = &v["CostMatrix"];
            let f = |k: &str| c[k].as_f64().unwrap_or(0.0);
            (
                name,
                Profile {
                    tp: f("tpWeight"),
                    fp: f("fpWeight"),
                    fn_: f("fnWeight"),
                },
            )
        })
        .collect();
    let series = load(&data)?;
    if check {
        // The scorer's own calibration: a detector firing exactly at each
        // window's start must score 100, one that never fires 0.
        let perfect: Vec<Vec<f64>> = series
            .iter()
            .map(|s| {
                let mut v = vec![0.0; s.values.len()];
                for &(l, _) in &s.windows {
                    v[l] = 1.0;
                }
                v
            })
            .collect();
        let null: Vec<Vec<f64>> = series.iter().map(|s| vec![0.0; s.values.len()]).collect();
        for (name, p) in &profiles {
            let (ps, _) = corpus_score(&series, &perfect, *p);
            let (ns, _) = corpus_score(&series, &null, *p);
            println!("check   {name:<20} perfect {ps:6.2}  null {ns:6.2}");
        }
    }

    let raw_scores: Vec<Vec<f64>> = series.iter().map(|s| run(&base, s).0).collect();
    for (name, p) in &profiles {
        let (score, thr) = corpus_score(&series, &raw_scores, *p);
        println!("raw     {name:<20} score {score:6.2}  (threshold {thr:.4})");
    }

    let mut best: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let mut best_alerts: BTreeMap<String, Vec<Vec<f64>>> = BTreeMap::new();
    for &t in &grid {
        let cfg = Config {
            threshold: t,
            ..base.clone()
        };
        let alerts: Vec<Vec<f64>> = series.iter().map(|s| run(&cfg, s).1).collect();
        for (name, p) in &profiles {
            let (score, _) = corpus_score(&series, &alerts, *p);
            if verbose && name == "standard" {
                println!("  threshold {t:.3}: standard {score:.2}");
            }
            if best.get(name).is_none_or(|b| score > b.0) {
                best.insert(name.clone(), (score, t));
                best_alerts.insert(name.clone(), alerts.clone());
            }
        }
    }
    for (name, (score, t)) in &best {
        println!(
            "alerts  {name:<20} score {score:6.2}  (threshold {t:.3}, cooldown {})",
            base.cooldown
        );
    }
    if verbose {
        if let (Some(alerts), Some((_, p))) = (
            best_alerts.get("standard"),
            profiles.iter().find(|(n, _)| n == "standard"),
        ) {
            for (s, a) in series.iter().zip(alerts) {
                let (hit, nw, fps, raw) = file_detail(s, a, *p);
                println!(
                    "  {:<58} windows {hit}/{nw}  fp {fps:3}  raw {raw:6.2}",
                    s.name
                );
            }
        }
    }
    Ok(())
}
