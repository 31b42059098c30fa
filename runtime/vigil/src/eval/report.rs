//! The pure half of `vigil eval`: how a NAB series becomes records, how the
//! replay's alerts become per-record detection flags, and the scored report
//! with its text table. Nothing here talks to a broker, so all of it is unit
//! tested.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;

use serde::Serialize;
use vigil_nab::{score_dataset, Dataset, Profile};

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

/// Where an alert points in the input: partition (= series index) and
/// offset (= row index, the topic being fresh).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertRef {
    /// Input partition.
    pub partition: i32,
    /// Input offset.
    pub offset: i64,
}

/// Reads an alert's provenance headers. `topic` is the eval's input topic:
/// an alert about another topic is an error, as is a missing or
/// non-numeric header.
pub fn alert_ref<'a>(
    headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    topic: &str,
) -> Result<AlertRef, String> {
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
    if let Some(s) = source.as_deref().filter(|s| *s != topic) {
        return Err(format!("alert about topic {s:?}, expected {topic:?}"));
    }
    let num = |name: &str, v: Option<String>| -> Result<i64, String> {
        let v = v.ok_or_else(|| format!("alert without a {name} header"))?;
        v.trim()
            .parse()
            .map_err(|_| format!("alert with a non-numeric {name} header {v:?}"))
    };
    let partition = num(H_SOURCE_PARTITION, partition)?;
    Ok(AlertRef {
        partition: i32::try_from(partition)
            .map_err(|_| format!("alert with partition {partition} out of range"))?,
        offset: num(H_SOURCE_OFFSET, offset)?,
    })
}

/// Detection flags built from alerts, with what did not map cleanly.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Detections {
    /// One flag per row of each series, in dataset order.
    pub flags: Vec<Vec<bool>>,
    /// Alerts read.
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
        alerts: alerts.len(),
        ..Detections::default()
    };
    for a in alerts {
        let slot = usize::try_from(a.partition)
            .ok()
            .and_then(|p| d.flags.get_mut(p))
            .and_then(|f| usize::try_from(a.offset).ok().and_then(|o| f.get_mut(o)));
        match slot {
            None => d.out_of_range += 1,
            Some(flag) if *flag => d.duplicates += 1,
            Some(flag) => *flag = true,
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
    /// Corpus score per profile name.
    pub scores: BTreeMap<String, ProfileScore>,
}

/// Scores `detections` under every profile; the per-file rows use the
/// profile named `table_profile`, which must be one of `profiles`.
pub fn build_report(
    dataset: &Dataset,
    profiles: &[Profile],
    detections: &Detections,
    table_profile: &str,
    run: RunInfo,
) -> anyhow::Result<EvalReport> {
    if !profiles.iter().any(|p| p.name == table_profile) {
        let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
        anyhow::bail!("no profile {table_profile:?} in profiles.json (it has {names:?})");
    }
    let mut scores = BTreeMap::new();
    let mut files = Vec::new();
    for p in profiles {
        let r = score_dataset(dataset, &detections.flags, p)?;
        if p.name == table_profile {
            files = dataset
                .files
                .iter()
                .zip(&detections.flags)
                .zip(&r.per_file)
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
        }
        scores.insert(
            p.name.clone(),
            ProfileScore {
                normalized: r.normalized,
                raw: r.raw,
                windows: r.windows,
            },
        );
    }
    Ok(EvalReport {
        run,
        records: dataset.records(),
        alerts: detections.alerts,
        duplicate_alerts: detections.duplicates,
        out_of_range_alerts: detections.out_of_range,
        profile: table_profile.to_string(),
        files,
        scores,
    })
}

/// The human-readable report: one line per series, then the corpus scores.
pub fn format_table(r: &EvalReport) -> String {
    let width = r
        .files
        .iter()
        .map(|f| f.name.len())
        .chain([4])
        .max()
        .unwrap_or(4);
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
    let _ = writeln!(out, "\nNAB score (0 = never alert, 100 = perfect):");
    for (name, s) in &r.scores {
        let _ = writeln!(out, "  {name:<20} {:>7.2}", s.normalized);
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

/// Keeps the raw column narrow for the long profile names.
fn short_profile(name: &str) -> &str {
    match name {
        "standard" => "std",
        "reward_low_FP_rate" => "lowFP",
        "reward_low_FN_rate" => "lowFN",
        other => other,
    }
}
