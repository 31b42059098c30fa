//! The pure half of `vigil eval`: how a NAB series becomes records, how the
//! replay's alerts become per-record detection flags, and the scored report
//! with its text table. Nothing here talks to a broker, so all of it is unit
//! tested.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;

use serde::Serialize;
use vigil_nab::{best_threshold, normalize, score_dataset, Dataset, FileScore, Profile};
use vigil_sdk::blocks::{
    INCIDENT_CLOSED, INCIDENT_FIELD, SCORE_ALERT_FIELD, SCORE_STREAM_FIELD, SCORE_STREAM_VALUE,
};

/// Header naming the input partition an alert concerns (set by the broker).
pub const H_SOURCE_PARTITION: &str = "vigil.source.partition";
/// Header naming the input offset an alert concerns (set by the broker).
pub const H_SOURCE_OFFSET: &str = "vigil.source.offset";
/// Header naming the input topic an alert concerns (set by the broker).
pub const H_SOURCE_TOPIC: &str = "vigil.source.topic";

/// The value of the record carrying one series row: `{"value": v}`, with
/// `null` for a non-finite value because JSON has no NaN or infinity (the
/// host then hands the detector a null, which detectors skip).
pub fn record_value(v: f64) -> Vec<u8> {
    let value = if v.is_finite() {
        serde_json::json!({ "value": v })
    } else {
        serde_json::json!({ "value": null })
    };
    value.to_string().into_bytes()
}

/// Splits `len` rows into consecutive ranges of at most `max_rows` (one
/// produce request each, so a long series never makes one huge request).
pub fn chunks(len: usize, max_rows: usize) -> Vec<Range<usize>> {
    let step = max_rows.max(1);
    (0..len)
        .step_by(step)
        .map(|a| a..(a + step).min(len))
        .collect()
}

/// Where an output record points in the input: partition (= series
/// index) and offset (= row index, the topic being fresh), and what it says
/// about that row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertRef {
    /// Input partition.
    pub partition: i32,
    /// Input offset.
    pub offset: i64,
    /// The anomaly score, when the record is a score record (see
    /// `vigil_sdk::blocks::score_record`).
    pub score: Option<f64>,
    /// Whether the deployed detector alerts on the row: always for a plain
    /// alert, as the score record says for a score record.
    pub alert: bool,
}

impl AlertRef {
    /// Reads the record's JSON value (the broker's alert document): a
    /// record whose `fields.stream` is `"score"` is a score record carrying
    /// `score` and `fields.alert`; a notice closing an incident
    /// (`fields.incident` = `"closed"`) is no detection; anything else is a
    /// plain alert.
    pub fn with_value(mut self, value: Option<&[u8]>) -> Result<Self, String> {
        let Some(doc) = value.and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
        else {
            return Ok(self);
        };
        let fields = &doc["fields"];
        if fields[INCIDENT_FIELD].as_str() == Some(INCIDENT_CLOSED) {
            self.alert = false;
            return Ok(self);
        }
        if fields[SCORE_STREAM_FIELD].as_str() != Some(SCORE_STREAM_VALUE) {
            return Ok(self);
        }
        let score = doc["score"]
            .as_f64()
            .ok_or_else(|| format!("score record without a numeric score: {}", doc["score"]))?;
        self.score = Some(score);
        self.alert = fields[SCORE_ALERT_FIELD].as_bool().unwrap_or(false);
        Ok(self)
    }
}

/// Reads an alert's provenance headers: the input topic (when the header
/// is there), partition and offset; a missing or non-numeric partition or
/// offset is an error.
pub fn alert_source<'a>(
    headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> Result<(Option<String>, i32, i64), String> {
    let (mut partition, mut offset, mut source) = (None, None, None);
    for (k, v) in headers {
        let text = v.map(|b| String::from_utf8_lossy(b).into_owned());
        match k {
            H_SOURCE_PARTITION => partition = text,
            H_SOURCE_OFFSET => offset = text,
            H_SOURCE_TOPIC => source = text,
            _ => {}
        }
    }
    let num = |name: &str, v: Option<String>| -> Result<i64, String> {
        let v = v.ok_or_else(|| format!("alert without a {name} header"))?;
        v.trim()
            .parse()
            .map_err(|_| format!("alert with a non-numeric {name} header {v:?}"))
    };
    let partition = num(H_SOURCE_PARTITION, partition)?;
    let partition = i32::try_from(partition)
        .map_err(|_| format!("alert with partition {partition} out of range"))?;
    Ok((source, partition, num(H_SOURCE_OFFSET, offset)?))
}

/// Reads an alert's provenance headers. `topic` is the eval's input topic:
/// an alert about another topic is an error, as is a missing or
/// non-numeric header.
pub fn alert_ref<'a>(
    headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    topic: &str,
) -> Result<AlertRef, String> {
    let (source, partition, offset) = alert_source(headers)?;
    if let Some(s) = source.as_deref().filter(|s| *s != topic) {
        return Err(format!("alert about topic {s:?}, expected {topic:?}"));
    }
    Ok(AlertRef {
        partition,
        offset,
        score: None,
        alert: true,
    })
}

/// Detection flags built from alerts, with what did not map cleanly.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Detections {
    /// One flag per row of each series, in dataset order.
    pub flags: Vec<Vec<bool>>,
    /// One score per row of each series (0 where no score record named
    /// the row), in dataset order.
    pub scores: Vec<Vec<f64>>,
    /// Score records read.
    pub score_records: usize,
    /// Alerts read, out-of-range ones and score records that alert included.
    pub alerts: usize,
    /// Alerts on a row already flagged (counted once in the score).
    pub duplicates: usize,
    /// Alerts naming a partition or row the dataset does not have (ignored).
    pub out_of_range: usize,
}

/// Flags row `offset` of series `partition` for every alert; `lens[i]` is
/// the row count of series `i`. Alerts outside the dataset are counted and
/// ignored rather than fatal, so one stray alert does not lose a long run.
pub fn detection_flags(lens: &[usize], alerts: &[AlertRef]) -> Detections {
    let mut d = Detections {
        flags: lens.iter().map(|&n| vec![false; n]).collect(),
        scores: lens.iter().map(|&n| vec![0.0; n]).collect(),
        ..Detections::default()
    };
    for a in alerts {
        d.alerts += usize::from(a.alert);
        let row = usize::try_from(a.partition)
            .ok()
            .zip(usize::try_from(a.offset).ok())
            .filter(|&(p, o)| lens.get(p).is_some_and(|&n| o < n));
        let Some((p, o)) = row else {
            d.out_of_range += 1;
            continue;
        };
        if let Some(s) = a.score {
            d.score_records += 1;
            d.scores[p][o] = d.scores[p][o].max(s);
        }
        if !a.alert {
            continue;
        }
        if d.flags[p][o] {
            d.duplicates += 1;
        } else {
            d.flags[p][o] = true;
        }
    }
    d
}

/// How the replay ran (from its final status).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RunInfo {
    /// The corpus directory.
    pub dataset: String,
    /// Module as the broker labels it (`name@version`) or as given.
    pub module: String,
    /// Replay job id.
    pub replay: String,
    /// Input topic (one partition per series).
    pub topic: String,
    /// Alert topic the replay wrote.
    pub output: String,
    /// Wall time of the replay, milliseconds.
    pub elapsed_ms: u64,
    /// Records processed per second by the replay.
    pub records_per_sec: f64,
}

/// One series' line of the table, under the table's profile.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FileRow {
    /// Series name (path under `data/`).
    pub name: String,
    /// Records in the series.
    pub records: usize,
    /// Flagged records (anywhere, probation included).
    pub detections: usize,
    /// Their row indices (0-based, data rows of the CSV), so the score can be
    /// checked or the detections plotted.
    pub flagged_rows: Vec<usize>,
    /// Scored windows.
    pub windows: usize,
    /// Scored windows with a detection.
    pub windows_hit: usize,
    /// Scored detections outside every window.
    pub false_positives: usize,
    /// Raw NAB score of the series.
    pub raw: f64,
}

/// A profile's corpus score.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProfileScore {
    /// Normalised score: 0 = never detect, 100 = perfect.
    pub normalized: f64,
    /// Corpus raw score.
    pub raw: f64,
    /// Scored windows.
    pub windows: usize,
}

/// A profile's corpus score at the threshold NAB's optimiser picks over the
/// score stream.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SweptScore {
    /// Normalised score at that threshold.
    pub normalized: f64,
    /// Corpus raw score at that threshold.
    pub raw: f64,
    /// The threshold (`None`: no threshold beats never alerting).
    pub threshold: Option<f64>,
}

/// One category's (first path component of the series names) scores under
/// the table's profile, normalised over the category's own windows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CategoryRow {
    /// Category, e.g. `realKnownCause`.
    pub category: String,
    /// Series in it.
    pub files: usize,
    /// Scored windows in it (0: only false positives can count).
    pub windows: usize,
    /// Scored false positives at the deployed threshold.
    pub false_positives: usize,
    /// Normalised score at the deployed threshold.
    pub fixed: f64,
    /// Normalised score at the corpus-wide swept threshold (with `--sweep`).
    pub swept: Option<f64>,
}

/// Everything `vigil eval` prints (`--json` prints exactly this).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EvalReport {
    /// How the replay ran.
    #[serde(flatten)]
    pub run: RunInfo,
    /// Records over all series.
    pub records: usize,
    /// Alerts read from the output topic.
    pub alerts: usize,
    /// Alerts on an already flagged row.
    pub duplicate_alerts: usize,
    /// Alerts outside the dataset (ignored).
    pub out_of_range_alerts: usize,
    /// Profile of the per-file rows.
    pub profile: String,
    /// Per series, under `profile`.
    pub files: Vec<FileRow>,
    /// Corpus score per profile name, at the threshold the detector is
    /// deployed with (its alerts).
    pub scores: BTreeMap<String, ProfileScore>,
    /// Score records read (`--sweep`).
    pub score_records: usize,
    /// Corpus score per profile name at the best threshold over the score
    /// stream, chosen per profile as NAB's optimiser does (`--sweep` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swept: Option<BTreeMap<String, SweptScore>>,
    /// Per category, under `profile`.
    pub categories: Vec<CategoryRow>,
}

/// Scores `detections` under every profile; the per-file rows use the
/// profile named `table_profile`, which must be one of `profiles`.
pub fn build_report(
    dataset: &Dataset,
    profiles: &[Profile],
    detections: &Detections,
    table_profile: &str,
    sweep: bool,
    run: RunInfo,
) -> anyhow::Result<EvalReport> {
    let Some(table) = profiles.iter().find(|p| p.name == table_profile) else {
        let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
        anyhow::bail!("no profile {table_profile:?} in profiles.json (it has {names:?})");
    };
    let mut scores = BTreeMap::new();
    let mut swept_scores = BTreeMap::new();
    let (mut fixed_files, mut swept_files) = (Vec::new(), None);
    for p in profiles {
        let r = score_dataset(dataset, &detections.flags, p)?;
        scores.insert(
            p.name.clone(),
            ProfileScore {
                normalized: r.normalized,
                raw: r.raw,
                windows: r.windows,
            },
        );
        if sweep {
            let (threshold, s) = best_threshold(dataset, &detections.scores, p)?;
            swept_scores.insert(
                p.name.clone(),
                SweptScore {
                    normalized: s.normalized,
                    raw: s.raw,
                    threshold,
                },
            );
            if p.name == table_profile {
                swept_files = Some(s.per_file);
            }
        }
        if p.name == table_profile {
            fixed_files = r.per_file;
        }
    }
    let files = dataset
        .files
        .iter()
        .zip(&detections.flags)
        .zip(&fixed_files)
        .map(|((f, flags), s)| FileRow {
            name: f.name.clone(),
            records: f.len(),
            detections: flags.iter().filter(|&&b| b).count(),
            flagged_rows: flags
                .iter()
                .enumerate()
                .filter_map(|(i, &b)| b.then_some(i))
                .collect(),
            windows: s.windows,
            windows_hit: s.windows_hit,
            false_positives: s.false_positives,
            raw: s.raw,
        })
        .collect();
    Ok(EvalReport {
        run,
        records: dataset.records(),
        alerts: detections.alerts,
        duplicate_alerts: detections.duplicates,
        out_of_range_alerts: detections.out_of_range,
        profile: table_profile.to_string(),
        categories: categories(dataset, table, &fixed_files, swept_files.as_deref()),
        files,
        scores,
        score_records: detections.score_records,
        swept: sweep.then_some(swept_scores),
    })
}

/// The category of a series: its name's first path component.
fn category(name: &str) -> &str {
    name.split_once('/').map_or("(top)", |(c, _)| c)
}

/// Per-category rows from per-file scores (in dataset order), in name order.
fn categories(
    dataset: &Dataset,
    profile: &Profile,
    fixed: &[FileScore],
    swept: Option<&[FileScore]>,
) -> Vec<CategoryRow> {
    let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, f) in dataset.files.iter().enumerate() {
        by_name.entry(category(&f.name)).or_default().push(i);
    }
    let total = |scores: &[FileScore], idx: &[usize]| -> (f64, usize, usize) {
        idx.iter()
            .filter_map(|&i| scores.get(i))
            .fold((0.0, 0, 0), |acc, s| {
                (acc.0 + s.raw, acc.1 + s.windows, acc.2 + s.false_positives)
            })
    };
    by_name
        .into_iter()
        .map(|(name, idx)| {
            let (raw, windows, false_positives) = total(fixed, &idx);
            CategoryRow {
                category: name.to_string(),
                files: idx.len(),
                windows,
                false_positives,
                fixed: normalize(raw, windows, profile),
                swept: swept.map(|s| normalize(total(s, &idx).0, windows, profile)),
            }
        })
        .collect()
}

/// The human-readable report: one line per series, then the corpus scores.
pub fn format_table(r: &EvalReport) -> String {
    let width = column_width(r.files.iter().map(|f| f.name.len()), 4);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:>8}  {:>7}  {:>7}  {:>5}  {:>8}",
        "file",
        "records",
        "alerts",
        "windows",
        "fp",
        format!("raw ({})", short_profile(&r.profile)),
    );
    for f in &r.files {
        let _ = writeln!(
            out,
            "{:<width$}  {:>8}  {:>7}  {:>7}  {:>5}  {:>8.3}",
            f.name,
            f.records,
            f.detections,
            format!("{}/{}", f.windows_hit, f.windows),
            f.false_positives,
            // A file without windows scores -0.0 (= -fn × 0); print it as 0.
            f.raw + 0.0,
        );
    }
    let (hit, total) = r
        .files
        .iter()
        .fold((0, 0), |(h, t), f| (h + f.windows_hit, t + f.windows));
    let fps: usize = r.files.iter().map(|f| f.false_positives).sum();
    let _ = writeln!(
        out,
        "{:<width$}  {:>8}  {:>7}  {:>7}  {:>5}",
        "total",
        r.records,
        r.alerts,
        format!("{hit}/{total}"),
        fps,
    );
    let _ = writeln!(
        out,
        "\nby category ({}; normalised over the category's own windows):",
        r.profile
    );
    let cw = column_width(r.categories.iter().map(|c| c.category.len()), 8);
    let _ = writeln!(
        out,
        "  {:<cw$}  {:>5}  {:>7}  {:>5}  {:>7}  {:>7}",
        "category", "files", "windows", "fp", "fixed", "swept"
    );
    for c in &r.categories {
        let _ = writeln!(
            out,
            "  {:<cw$}  {:>5}  {:>7}  {:>5}  {:>7.2}  {:>7}",
            c.category,
            c.files,
            c.windows,
            c.false_positives,
            c.fixed,
            c.swept.map_or("-".into(), |s| format!("{s:.2}")),
        );
    }
    let _ = writeln!(
        out,
        "\nNAB score (0 = never alert, 100 = perfect); fixed = the detector's own \
         alerts at its configured threshold (what a deployment gets){}:",
        if r.swept.is_some() {
            "; swept = best threshold over the score stream per profile (NAB's optimiser)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "  {:<20} {:>7}  {:>15}",
        "profile", "fixed", "swept (thr)"
    );
    for (name, s) in &r.scores {
        let swept = match r.swept.as_ref().and_then(|m| m.get(name)) {
            Some(w) => format!(
                "{:>7.2} ({})",
                w.normalized,
                w.threshold.map_or("none".into(), |t| format!("{t:.3}"))
            ),
            None => "-".into(),
        };
        let _ = writeln!(out, "  {name:<20} {:>7.2}  {swept:>15}", s.normalized);
    }
    let _ = writeln!(
        out,
        "\nmodule {}, replay {}: {} records in {:.1} s ({:.0} records/s), {} alerts",
        r.run.module,
        r.run.replay,
        r.records,
        r.run.elapsed_ms as f64 / 1000.0,
        r.run.records_per_sec,
        r.alerts,
    );
    if r.duplicate_alerts + r.out_of_range_alerts > 0 {
        let _ = writeln!(
            out,
            "note: {} duplicate alerts counted once, {} alerts outside the dataset ignored",
            r.duplicate_alerts, r.out_of_range_alerts
        );
    }
    out
}

/// Width of a name column: the longest name, at least `min`.
fn column_width(lens: impl Iterator<Item = usize>, min: usize) -> usize {
    lens.chain([min]).max().unwrap_or(min)
}

/// Keeps the raw column narrow for the long profile names.
fn short_profile(name: &str) -> &str {
    match name {
        "standard" => "std",
        "reward_low_FP_rate" => "lowFP",
        "reward_low_FN_rate" => "lowFN",
        other => other,
    }
}
