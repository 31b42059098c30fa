//! The pure half of `vigil eval --alerts`: scoring a live deployment's
//! alerts against operator labels (`vigil_sdk::blocks::Label` records on
//! the labels topic, by convention `<alert topic>.labels`).
//!
//! Matching is by input record: an alert is about `(topic, partition,
//! offset)` (its `vigil.source.*` headers), a label names one too. With a
//! window `w`, an alert and a label match when topic and partition agree
//! and the offsets differ by at most `w` (an incident's alert and the label
//! an operator put on a neighbouring record). Then:
//!
//! * an alert matching a label `anomaly: true` is a **true** alert; one
//!   matching only `anomaly: false` labels is a **false** alert; one
//!   matching no label is **unlabelled** (not in precision: nobody judged it);
//! * a label `anomaly: true` matched by some alert is **detected**, else
//!   **missed**;
//! * precision = true / (true + false) alerts, recall = detected /
//!   (detected + missed) anomalies, F1 their harmonic mean.
//!
//! A later label for the same record replaces an earlier one (operators can
//! correct themselves).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use vigil_sdk::blocks::Label;

/// An input record: (topic, partition, offset).
pub type RecordId = (String, i32, i64);

/// What the alert topic and labels topic held.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LiveInput {
    /// Records the alerts are about, one per alert (duplicates kept).
    pub alerts: Vec<RecordId>,
    /// Score records that do not alert and incident-closing notices: read
    /// and not counted as alerts.
    pub skipped: usize,
    /// Label records in topic order.
    pub labels: Vec<Label>,
    /// Label records that were not a `Label` JSON document (ignored).
    pub malformed_labels: usize,
}

/// Counts for one input topic (or all).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LiveScore {
    /// Input topic, or `"total"`.
    pub topic: String,
    /// Alerts.
    pub alerts: usize,
    /// Alerts matching an `anomaly: true` label.
    pub true_alerts: usize,
    /// Alerts matching only `anomaly: false` labels.
    pub false_alerts: usize,
    /// Alerts matching no label.
    pub unlabelled: usize,
    /// Labels `anomaly: true` (after corrections).
    pub anomalies: usize,
    /// Of those, matched by an alert.
    pub detected: usize,
    /// true / (true + false) alerts; `None` when no alert was judged.
    pub precision: Option<f64>,
    /// detected / anomalies; `None` without anomalies.
    pub recall: Option<f64>,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: Option<f64>,
}

impl LiveScore {
    fn finish(mut self) -> Self {
        let judged = self.true_alerts + self.false_alerts;
        self.precision = (judged > 0).then(|| self.true_alerts as f64 / judged as f64);
        self.recall = (self.anomalies > 0).then(|| self.detected as f64 / self.anomalies as f64);
        self.f1 = match (self.precision, self.recall) {
            (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
            (Some(_), Some(_)) => Some(0.0),
            _ => None,
        };
        self
    }

    fn add(&mut self, o: &LiveScore) {
        self.alerts += o.alerts;
        self.true_alerts += o.true_alerts;
        self.false_alerts += o.false_alerts;
        self.unlabelled += o.unlabelled;
        self.anomalies += o.anomalies;
        self.detected += o.detected;
    }
}

/// The live evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveReport {
    /// Alert topic read.
    pub alerts_topic: String,
    /// Labels topic read.
    pub labels_topic: String,
    /// Match window in offsets (0: the very record).
    pub window: i64,
    /// Records of the alert topic not counted as alerts.
    pub skipped: usize,
    /// Labels read (before corrections).
    pub labels: usize,
    /// Label records that did not parse.
    pub malformed_labels: usize,
    /// One row per input topic, then the total.
    pub rows: Vec<LiveScore>,
}

/// Scores `input` (see the module docs).
pub fn score_live(
    input: &LiveInput,
    window: i64,
    alerts_topic: &str,
    labels_topic: &str,
) -> LiveReport {
    let window = window.max(0);
    // Last label per record wins.
    let mut labels: BTreeMap<RecordId, bool> = BTreeMap::new();
    for l in &input.labels {
        labels.insert((l.topic.clone(), l.partition, l.offset), l.anomaly);
    }
    // Alerts per (topic, partition), sorted by offset, for window lookups.
    let mut alerted: BTreeMap<(String, i32), Vec<i64>> = BTreeMap::new();
    for (t, p, o) in &input.alerts {
        alerted.entry((t.clone(), *p)).or_default().push(*o);
    }
    for v in alerted.values_mut() {
        v.sort_unstable();
    }
    let mut per_topic: BTreeMap<String, LiveScore> = BTreeMap::new();
    for (t, p, o) in &input.alerts {
        let near = labels.range(
            (t.clone(), *p, o.saturating_sub(window))..=(t.clone(), *p, o.saturating_add(window)),
        );
        let (mut yes, mut no) = (false, false);
        for (_, &anomaly) in near {
            if anomaly {
                yes = true;
            } else {
                no = true;
            }
        }
        let s = row(&mut per_topic, t);
        s.alerts += 1;
        match (yes, no) {
            (true, _) => s.true_alerts += 1,
            (false, true) => s.false_alerts += 1,
            (false, false) => s.unlabelled += 1,
        }
    }
    for ((t, p, o), &anomaly) in &labels {
        if !anomaly {
            continue;
        }
        let hit = alerted.get(&(t.clone(), *p)).is_some_and(|offs| {
            let i = offs.partition_point(|&a| a < o.saturating_sub(window));
            offs.get(i).is_some_and(|&a| a <= o.saturating_add(window))
        });
        let s = row(&mut per_topic, t);
        s.anomalies += 1;
        s.detected += usize::from(hit);
    }
    let mut total = LiveScore {
        topic: "total".into(),
        ..LiveScore::default()
    };
    let mut rows: Vec<LiveScore> = per_topic
        .into_values()
        .map(|s| {
            total.add(&s);
            s.finish()
        })
        .collect();
    rows.push(total.finish());
    LiveReport {
        alerts_topic: alerts_topic.to_string(),
        labels_topic: labels_topic.to_string(),
        window,
        skipped: input.skipped,
        labels: input.labels.len(),
        malformed_labels: input.malformed_labels,
        rows,
    }
}

/// The row of topic `t`, created empty.
fn row<'a>(m: &'a mut BTreeMap<String, LiveScore>, t: &str) -> &'a mut LiveScore {
    m.entry(t.to_string()).or_insert_with(|| LiveScore {
        topic: t.to_string(),
        ..LiveScore::default()
    })
}

/// The report as a text table.
pub fn format_live(r: &LiveReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "alerts {} against labels {} ({} labels, {} malformed; {} score/notice records not counted as alerts)",
        r.alerts_topic, r.labels_topic, r.labels, r.malformed_labels, r.skipped
    );
    let _ = writeln!(
        out,
        "match: {}; precision over labelled alerts, recall over anomaly labels",
        if r.window == 0 {
            "the labelled record itself".to_string()
        } else {
            format!("within ±{} offsets in the same partition", r.window)
        }
    );
    let width = r
        .rows
        .iter()
        .map(|s| s.topic.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        out,
        "{:width$}  {:>6} {:>6} {:>6} {:>10} {:>9} {:>8} {:>9} {:>6} {:>6}",
        "topic",
        "alerts",
        "true",
        "false",
        "unlabelled",
        "anomalies",
        "detected",
        "precision",
        "recall",
        "F1"
    );
    let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.3}"));
    for s in &r.rows {
        let _ = writeln!(
            out,
            "{:width$}  {:>6} {:>6} {:>6} {:>10} {:>9} {:>8} {:>9} {:>6} {:>6}",
            s.topic,
            s.alerts,
            s.true_alerts,
            s.false_alerts,
            s.unlabelled,
            s.anomalies,
            s.detected,
            pct(s.precision),
            pct(s.recall),
            pct(s.f1)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(topic: &str, partition: i32, offset: i64, anomaly: bool) -> Label {
        Label {
            topic: topic.into(),
            partition,
            offset,
            anomaly,
        }
    }

    fn alert(topic: &str, partition: i32, offset: i64) -> RecordId {
        (topic.into(), partition, offset)
    }

    #[test]
    fn record_level_precision_recall_f1() {
        let input = LiveInput {
            alerts: vec![
                alert("m", 0, 10), // labelled true
                alert("m", 0, 20), // labelled false
                alert("m", 1, 10), // other partition: unlabelled
                alert("m", 0, 30), // labelled false, then corrected to true
                alert("n", 0, 5),  // other topic, false
            ],
            skipped: 3,
            labels: vec![
                label("m", 0, 10, true),
                label("m", 0, 20, false),
                label("m", 0, 30, false),
                label("m", 0, 30, true),
                label("m", 0, 40, true), // missed
                label("n", 0, 5, false),
            ],
            malformed_labels: 1,
        };
        let r = score_live(&input, 0, "m.alerts", "m.alerts.labels");
        let m = &r.rows[0];
        assert_eq!(m.topic, "m");
        assert_eq!(
            (m.alerts, m.true_alerts, m.false_alerts, m.unlabelled),
            (4, 2, 1, 1)
        );
        assert_eq!((m.anomalies, m.detected), (3, 2));
        assert_eq!(m.precision, Some(2.0 / 3.0));
        assert_eq!(m.recall, Some(2.0 / 3.0));
        let n = &r.rows[1];
        assert_eq!((n.alerts, n.false_alerts, n.anomalies), (1, 1, 0));
        assert_eq!((n.precision, n.recall, n.f1), (Some(0.0), None, None));
        let t = &r.rows[2];
        assert_eq!(t.topic, "total");
        assert_eq!((t.alerts, t.true_alerts, t.false_alerts), (5, 2, 2));
        assert_eq!(t.precision, Some(0.5));
        let f1 = t.f1.unwrap();
        assert!((f1 - 2.0 * 0.5 * (2.0 / 3.0) / (0.5 + 2.0 / 3.0)).abs() < 1e-12);
        assert_eq!((r.skipped, r.labels, r.malformed_labels), (3, 6, 1));
        let table = format_live(&r);
        assert!(table.contains("the labelled record itself"), "{table}");
        assert!(table.lines().any(|l| l.starts_with("total")), "{table}");
    }

    #[test]
    fn a_window_matches_neighbouring_records_in_the_same_partition_only() {
        let input = LiveInput {
            alerts: vec![alert("m", 0, 100), alert("m", 0, 500)],
            labels: vec![
                label("m", 0, 103, true),
                label("m", 1, 100, true),
                label("m", 0, 495, false),
            ],
            ..LiveInput::default()
        };
        let exact = score_live(&input, 0, "a", "l");
        let t = exact.rows.last().unwrap();
        assert_eq!(
            (t.true_alerts, t.false_alerts, t.unlabelled, t.detected),
            (0, 0, 2, 0)
        );
        let near = score_live(&input, 5, "a", "l");
        let t = near.rows.last().unwrap();
        assert_eq!((t.true_alerts, t.false_alerts, t.unlabelled), (1, 1, 0));
        // Partition 1's anomaly is missed: no alert there.
        assert_eq!((t.anomalies, t.detected), (2, 1));
        assert_eq!(t.recall, Some(0.5));
        assert!(format_live(&near).contains("±5 offsets"));
    }
}
