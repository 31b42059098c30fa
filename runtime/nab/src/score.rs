//! NAB's scoring rules: per-record weights, per-file scores, corpus scores
//! and the threshold sweep.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Dataset, NabError, Profile, SeriesFile};

/// Fraction of each series that is probationary (not scored).
pub const PROBATION_FRACTION: f64 = 0.15;
/// Upper bound of the probationary period, in records (15 % of 5000).
pub const MAX_PROBATION_ROWS: usize = 750;
/// Threshold NAB reports when no threshold beats flagging nothing (above
/// every score in `[0, 1]`).
pub const NULL_THRESHOLD: f64 = 1.1;

/// NAB's probationary period of a series of `records` records:
/// `floor(0.15 * records)`, at most 750.
pub fn probation_rows(records: usize) -> usize {
    ((PROBATION_FRACTION * records as f64).floor() as usize).min(MAX_PROBATION_ROWS)
}

/// NAB's scaled sigmoid `2 / (1 + e^(5x)) - 1`, i.e. `-tanh(5x / 2)`: +0.987
/// at `x = -1` (a window's first record), 0 at `x = 0` (just past its end),
/// and exactly -1 from `x = 3` on.
pub fn scaled_sigmoid(x: f64) -> f64 {
    if x >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * x).exp()) - 1.0
    }
}

/// Score of one series under one profile.
#[derive(Debug, Clone, PartialEq)]
pub struct FileScore {
    /// Series name.
    pub name: String,
    /// Raw (un-normalised) score: true-positive rewards, minus false-positive
    /// costs, minus `fn_` for every missed window.
    pub raw: f64,
    /// Windows with at least one scored (post-probation) record.
    pub windows: usize,
    /// Of those, windows with at least one detection.
    pub windows_hit: usize,
    /// Scored detections outside every window.
    pub false_positives: usize,
}

/// Score of a whole corpus under one profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// One entry per series, in dataset order.
    pub per_file: Vec<FileScore>,
    /// Corpus raw score.
    pub raw: f64,
    /// Scored windows over the corpus.
    pub windows: usize,
    /// `100 * (raw - null) / (perfect - null)` with `null = -fn_ * windows`
    /// (never detect) and `perfect = tp * windows` (detect every window at its
    /// first record, nothing else): 0 for the null detector, 100 for a perfect
    /// one. 0 when the corpus has no scored window.
    pub normalized: f64,
}

/// Weight a detection on one scored record would earn.
#[derive(Debug, Clone, Copy)]
struct Row {
    index: usize,
    /// Index into the file's `window_rows()` of the window holding the row.
    window: Option<usize>,
    weight: f64,
}

/// Weights of the records from `probation` on: inside a window of `w`
/// records ending at record `r`, record `i` earns `tp * S(-(r - i + 1) / w) /
/// S(-1)` (exactly `tp` at the window's first record); outside, it costs
/// `fp * S(|i - r'| / (w' - 1))` for the last window `(r', w')` that ended
/// before it, or `-fp` when there is none.
fn row_weights(rows: &[(usize, usize)], n: usize, p: &Profile, probation: usize) -> Vec<Row> {
    let max_tp = scaled_sigmoid(-1.0);
    let mut out = Vec::with_capacity(n.saturating_sub(probation));
    let mut prev: Option<(usize, f64)> = None; // (last index, width) of the previous window
    for i in 0..n {
        let window = rows.iter().position(|&(l, r)| l <= i && i <= r);
        let weight = match window {
            Some(w) => {
                let (l, r) = rows[w];
                let width = (r - l + 1) as f64;
                let pos = -((r - i) as f64 + 1.0) / width;
                if i == r {
                    prev = Some((r, width));
                }
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
        if i >= probation {
            out.push(Row {
                index: i,
                window,
                weight,
            });
        }
    }
    out
}

/// Scores one series: `detections[i]` says whether record `i` was flagged;
/// records before `probation` are ignored, and so are windows holding no
/// scored record. Within a window only the best (earliest) detection counts.
pub fn score_file(
    file: &SeriesFile,
    detections: &[bool],
    profile: &Profile,
    probation: usize,
) -> Result<FileScore, NabError> {
    check_len(file, detections.len())?;
    let rows = row_weights(&file.window_rows(), file.len(), profile, probation);
    let windows = rows
        .iter()
        .filter_map(|r| r.window)
        .collect::<BTreeSet<_>>()
        .len();
    let mut raw = -profile.fn_ * windows as f64;
    let mut best: BTreeMap<usize, f64> = BTreeMap::new();
    let mut false_positives = 0;
    for row in rows.iter().filter(|r| detections[r.index]) {
        match row.window {
            None => {
                raw += row.weight;
                false_positives += 1;
            }
            Some(w) => {
                let b = best.entry(w).or_insert(-profile.fn_);
                if row.weight > *b {
                    raw += row.weight - *b;
                    *b = row.weight;
                }
            }
        }
    }
    Ok(FileScore {
        name: file.name.clone(),
        raw,
        windows,
        windows_hit: best.len(),
        false_positives,
    })
}

/// Scores fixed detections (one flag per record of each file, in dataset
/// order) over the corpus, with NAB's probationary period.
pub fn score_dataset(
    dataset: &Dataset,
    detections_per_file: &[Vec<bool>],
    profile: &Profile,
) -> Result<Report, NabError> {
    check_count(dataset, detections_per_file.len())?;
    let per_file = dataset
        .files
        .iter()
        .zip(detections_per_file)
        .map(|(f, d)| score_file(f, d, profile, probation_rows(f.len())))
        .collect::<Result<Vec<_>, _>>()?;
    let raw = per_file.iter().map(|f| f.raw).sum();
    let windows = per_file.iter().map(|f| f.windows).sum();
    Ok(Report {
        normalized: normalize(raw, windows, profile),
        per_file,
        raw,
        windows,
    })
}

/// NAB's threshold optimisation: one threshold for the whole corpus, a
/// record being flagged when its score is `>= threshold`; every distinct
/// score is tried and the one maximising the corpus raw score kept (the
/// highest on ties). Returns `None` when no threshold beats flagging nothing
/// (NAB reports [`NULL_THRESHOLD`] then), with the report of that choice.
///
/// The report's `raw` is the sweep's running total, so it may differ from
/// the sum of `per_file` raws in the last bits.
pub fn best_threshold(
    dataset: &Dataset,
    scores_per_file: &[Vec<f64>],
    profile: &Profile,
) -> Result<(Option<f64>, Report), NabError> {
    check_count(dataset, scores_per_file.len())?;
    // (score, weight, corpus-wide window id)
    let mut points: Vec<(f64, f64, Option<usize>)> = Vec::new();
    let mut first_window = 0;
    for (file, scores) in dataset.files.iter().zip(scores_per_file) {
        check_len(file, scores.len())?;
        if let Some(row) = scores.iter().position(|s| s.is_nan()) {
            return Err(NabError::NanScore {
                file: file.name.clone(),
                row,
            });
        }
        let rows = file.window_rows();
        for r in row_weights(&rows, file.len(), profile, probation_rows(file.len())) {
            points.push((
                scores[r.index],
                r.weight,
                r.window.map(|w| w + first_window),
            ));
        }
        first_window += rows.len();
    }
    points.sort_by(|a, b| b.0.total_cmp(&a.0));

    let mut parts: BTreeMap<usize, f64> = points
        .iter()
        .filter_map(|p| p.2.map(|w| (w, -profile.fn_)))
        .collect();
    let windows = parts.len();
    let mut total: f64 = parts.values().sum();
    let (mut best_total, mut best_thr) = (total, None);
    let mut i = 0;
    while i < points.len() {
        let thr = points[i].0;
        while i < points.len() && points[i].0 == thr {
            let (_, weight, window) = points[i];
            match window {
                None => total += weight,
                Some(w) => {
                    let part = parts.entry(w).or_insert(-profile.fn_);
                    if weight > *part {
                        total += weight - *part;
                        *part = weight;
                    }
                }
            }
            i += 1;
        }
        if total > best_total {
            (best_total, best_thr) = (total, Some(thr));
        }
    }

    let per_file = dataset
        .files
        .iter()
        .zip(scores_per_file)
        .map(|(f, s)| {
            let flags: Vec<bool> = s
                .iter()
                .map(|&x| best_thr.is_some_and(|t| x >= t))
                .collect();
            score_file(f, &flags, profile, probation_rows(f.len()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        best_thr,
        Report {
            per_file,
            raw: best_total,
            windows,
            normalized: normalize(best_total, windows, profile),
        },
    ))
}

/// Normalises a corpus raw score so the null detector scores 0 and the
/// perfect one 100 (see [`Report::normalized`]).
pub fn normalize(raw: f64, windows: usize, profile: &Profile) -> f64 {
    let null = -profile.fn_ * windows as f64;
    let perfect = profile.tp * windows as f64;
    if perfect == null {
        return 0.0;
    }
    100.0 * (raw - null) / (perfect - null)
}

fn check_count(dataset: &Dataset, got: usize) -> Result<(), NabError> {
    if got != dataset.files.len() {
        return Err(NabError::FileCount {
            expected: dataset.files.len(),
            got,
        });
    }
    Ok(())
}

fn check_len(file: &SeriesFile, got: usize) -> Result<(), NabError> {
    if got != file.len() {
        return Err(NabError::Length {
            file: file.name.clone(),
            expected: file.len(),
            got,
        });
    }
    Ok(())
}
