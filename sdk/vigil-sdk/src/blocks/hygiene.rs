//! Alert hygiene: turning a per-record anomaly score into few, useful
//! alerts, and into a score stream that an evaluation can sweep.
//!
//! * [`Incidents`] groups a continuing anomaly into one incident: it opens
//!   when the score reaches the threshold, stays open while the score keeps
//!   coming back above it, and closes after `quiet` records below it, with
//!   its start, end and peak. After an incident opens, no new one opens for
//!   `cooldown` records (suppression window), so a flapping series pages once.
//! * [`PeakSuppressor`] does the same for a score *stream*, without knowing
//!   the threshold: a score is passed on only when it exceeds every score of
//!   the previous `window` records, otherwise it is reported as 0. A stream
//!   suppressed this way, flagged at any threshold, behaves like a detector
//!   with a cooldown at that threshold, which is what a threshold sweep
//!   (NAB's optimiser, `vigil eval --sweep`) should be judging.
//! * The score-record convention ([`score_record`], [`SCORE_STREAM_FIELD`])
//!   marks alerts that carry a score for one record rather than an alert.
//! * The labels convention ([`Label`], [`LABELS_TOPIC_SUFFIX`]) is how
//!   operators mark alerts true or false so a live deployment can be scored.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::Alert;

/// Field of a score record naming it as such (value [`SCORE_STREAM_VALUE`]).
pub const SCORE_STREAM_FIELD: &str = "stream";
/// Value of [`SCORE_STREAM_FIELD`] on score records.
pub const SCORE_STREAM_VALUE: &str = "score";
/// Field of a score record saying whether the deployed detector alerts on
/// that record (its own threshold and cooldown applied).
pub const SCORE_ALERT_FIELD: &str = "alert";

/// A score record for the record at `source_offset`: an [`Alert`] whose
/// score is the anomaly score, with `stream: "score"` and `alert: <bool>`
/// fields. Consumers of an alert topic tell the two apart by the field.
pub fn score_record(source_offset: i64, score: f64, alert: bool) -> Alert {
    Alert::new(source_offset)
        .severity(crate::Severity::Info)
        .score(score)
        .field(SCORE_STREAM_FIELD, SCORE_STREAM_VALUE)
        .field(SCORE_ALERT_FIELD, alert)
}

/// Field of an alert that is about an incident ([`Incidents`]): value
/// [`INCIDENT_OPENED`] on the alert raised when it opens, and
/// [`INCIDENT_CLOSED`] on the notice written when it closes.
pub const INCIDENT_FIELD: &str = "incident";
/// [`INCIDENT_FIELD`] of the alert that opens an incident.
pub const INCIDENT_OPENED: &str = "opened";
/// [`INCIDENT_FIELD`] of the notice that closes one. It is not a new
/// detection: evaluations (`vigil eval`) skip it.
pub const INCIDENT_CLOSED: &str = "closed";

impl IncidentEvent {
    /// Adds this event's fields to `alert`: `incident` (`"opened"` /
    /// `"closed"`), `incident_start`, and for a closing also
    /// `incident_end`, `incident_peak` and `incident_records`. A closing
    /// notice should also get severity `Info` (see [`IncidentEvent::notice`]).
    pub fn annotate(&self, alert: Alert) -> Alert {
        match *self {
            IncidentEvent::Opened { start } => alert
                .field(INCIDENT_FIELD, INCIDENT_OPENED)
                .field("incident_start", start),
            IncidentEvent::Closed {
                start,
                end,
                peak,
                records,
            } => alert
                .field(INCIDENT_FIELD, INCIDENT_CLOSED)
                .field("incident_start", start)
                .field("incident_end", end)
                .field("incident_peak", peak)
                .field("incident_records", records),
        }
    }

    /// The notice written at the record `at` where a closed incident was
    /// found to be over (severity `Info`, score = its peak); `None` for
    /// [`IncidentEvent::Opened`], which the detector reports with an alert
    /// of its own.
    pub fn notice(&self, at: i64) -> Option<Alert> {
        let IncidentEvent::Closed {
            start,
            end,
            peak,
            records,
        } = *self
        else {
            return None;
        };
        let alert = Alert::new(at)
            .severity(crate::Severity::Info)
            .score(peak)
            .message(format!(
                "incident over: offsets {start}..={end}, {records} anomalous records, peak score {peak:.4}"
            ));
        Some(self.annotate(alert))
    }
}

/// Suffix of the labels topic of an alert topic: labels for alerts written
/// to `payments.alerts` go to `payments.alerts.labels`.
pub const LABELS_TOPIC_SUFFIX: &str = ".labels";

/// One label record (JSON value of a record on the labels topic): the input
/// record an alert was about, and whether it was a real anomaly. A label
/// with `anomaly: true` on a record no alert names is a missed anomaly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    /// Input topic of the labelled record.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// True: a real anomaly (alert correct / detection missed); false: a
    /// false alarm.
    pub anomaly: bool,
}

/// What one record did to the incident state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IncidentEvent {
    /// A new incident starts at this record: alert now.
    Opened {
        /// Offset of the first anomalous record.
        start: i64,
    },
    /// The open incident ended: `quiet` records have stayed below threshold.
    Closed {
        /// Offset of its first anomalous record.
        start: i64,
        /// Offset of its last anomalous record.
        end: i64,
        /// Highest score seen during it.
        peak: f64,
        /// Anomalous records during it.
        records: u64,
    },
}

/// The open incident, if any.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Open {
    start: i64,
    end: i64,
    peak: f64,
    records: u64,
    /// Records below threshold since `end`.
    quiet_for: usize,
}

/// Incident de-duplication with a cooldown (see the module docs). Memory is
/// constant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incidents {
    threshold: f64,
    quiet: usize,
    cooldown: usize,
    open: Option<Open>,
    /// Records left during which no new incident opens.
    cooldown_left: usize,
}

impl Incidents {
    /// An incident opens at a score `>= threshold`, closes after `quiet`
    /// (at least 1) records below it, and no incident opens within
    /// `cooldown` records of the previous opening.
    pub fn new(threshold: f64, quiet: usize, cooldown: usize) -> Self {
        Incidents {
            threshold,
            quiet: quiet.max(1),
            cooldown,
            open: None,
            cooldown_left: 0,
        }
    }

    /// Feeds the score of the record at `offset` (non-finite counts as 0).
    pub fn update(&mut self, offset: i64, score: f64) -> Option<IncidentEvent> {
        let hot = score.is_finite() && score >= self.threshold;
        let cooling = self.cooldown_left > 0;
        self.cooldown_left = self.cooldown_left.saturating_sub(1);
        match (&mut self.open, hot) {
            (Some(o), true) => {
                o.end = offset;
                o.peak = o.peak.max(score);
                o.records += 1;
                o.quiet_for = 0;
                None
            }
            (Some(o), false) => {
                o.quiet_for += 1;
                if o.quiet_for < self.quiet {
                    return None;
                }
                let o = *o;
                self.open = None;
                Some(IncidentEvent::Closed {
                    start: o.start,
                    end: o.end,
                    peak: o.peak,
                    records: o.records,
                })
            }
            (None, true) if !cooling => {
                self.open = Some(Open {
                    start: offset,
                    end: offset,
                    peak: score,
                    records: 1,
                    quiet_for: 0,
                });
                self.cooldown_left = self.cooldown;
                Some(IncidentEvent::Opened { start: offset })
            }
            (None, _) => None,
        }
    }

    /// Whether an incident is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }
}

/// Threshold-free suppression of a score stream (see the module docs):
/// memory is at most `window` entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeakSuppressor {
    window: usize,
    seen: u64,
    /// (record number, score) with decreasing scores: the running maximum
    /// of the last `window` records is the front.
    maxima: VecDeque<(u64, f64)>,
}

impl PeakSuppressor {
    /// Suppresses scores not above the maximum of the previous `window` records.
    pub fn new(window: usize) -> Self {
        PeakSuppressor {
            window,
            seen: 0,
            maxima: VecDeque::new(),
        }
    }

    /// Feeds one score (non-finite counts as 0); returns it when it exceeds
    /// every score of the previous `window` records, else 0.
    pub fn update(&mut self, score: f64) -> f64 {
        let score = if score.is_finite() { score } else { 0.0 };
        let n = self.seen;
        self.seen += 1;
        while self
            .maxima
            .front()
            .is_some_and(|&(i, _)| i + (self.window as u64) < n)
        {
            self.maxima.pop_front();
        }
        let out = match self.maxima.front() {
            Some(&(_, max)) if score <= max => 0.0,
            _ => score,
        };
        while self.maxima.back().is_some_and(|&(_, s)| s <= score) {
            self.maxima.pop_back();
        }
        if self.window > 0 {
            self.maxima.push_back((n, score));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuing_anomaly_is_one_incident_with_start_and_end() {
        let mut inc = Incidents::new(0.5, 3, 0);
        let scores = [0.1, 0.6, 0.9, 0.2, 0.7, 0.1, 0.1, 0.1, 0.1, 0.8];
        let events: Vec<(usize, IncidentEvent)> = scores
            .iter()
            .enumerate()
            .filter_map(|(i, &s)| inc.update(i as i64 + 100, s).map(|e| (i, e)))
            .collect();
        assert_eq!(
            events,
            vec![
                (1, IncidentEvent::Opened { start: 101 }),
                (
                    7,
                    IncidentEvent::Closed {
                        start: 101,
                        end: 104,
                        peak: 0.9,
                        records: 3
                    }
                ),
                (9, IncidentEvent::Opened { start: 109 }),
            ]
        );
        assert!(inc.is_open());
    }

    #[test]
    fn cooldown_suppresses_new_incidents() {
        let mut inc = Incidents::new(0.5, 1, 5);
        let opened: Vec<i64> = (0..20)
            .filter_map(
                |i| match inc.update(i, if i % 2 == 0 { 1.0 } else { 0.0 }) {
                    Some(IncidentEvent::Opened { start }) => Some(start),
                    _ => None,
                },
            )
            .collect();
        // Every other record is hot, but openings are 5 records apart at least.
        assert_eq!(opened, vec![0, 6, 12, 18]);
    }

    #[test]
    fn peak_suppressor_passes_only_new_maxima_of_the_window() {
        let mut p = PeakSuppressor::new(3);
        let out: Vec<f64> = [0.2, 0.5, 0.4, 0.5, 0.1, 0.1, 0.1, 0.3, f64::NAN]
            .iter()
            .map(|&s| p.update(s))
            .collect();
        // Record 6's window (records 3..=5) still holds the 0.5.
        assert_eq!(out, vec![0.2, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.3, 0.0]);
        // Window 0: nothing is suppressed.
        let mut p = PeakSuppressor::new(0);
        assert_eq!(p.update(0.5), 0.5);
        assert_eq!(p.update(0.5), 0.5);
    }

    #[test]
    fn labels_and_score_records_follow_the_convention() {
        let l: Label =
            serde_json::from_str(r#"{"topic":"m","partition":2,"offset":7,"anomaly":false}"#)
                .unwrap();
        assert_eq!((l.partition, l.offset, l.anomaly), (2, 7, false));
        let r = score_record(7, 0.25, true);
        assert_eq!(r.get_field(SCORE_STREAM_FIELD), Some("\"score\""));
        assert_eq!(r.get_field(SCORE_ALERT_FIELD), Some("true"));
        assert_eq!(r.get_score(), 0.25);
        let closed = IncidentEvent::Closed {
            start: 3,
            end: 9,
            peak: 2.5,
            records: 4,
        };
        let n = closed.notice(12).unwrap();
        assert_eq!(n.source_offset(), 12);
        assert_eq!(n.get_severity(), crate::Severity::Info);
        assert_eq!(n.get_field(INCIDENT_FIELD), Some("\"closed\""));
        assert_eq!(n.get_field("incident_end"), Some("9"));
        assert!(IncidentEvent::Opened { start: 3 }.notice(3).is_none());
        let o = IncidentEvent::Opened { start: 3 }.annotate(Alert::new(3));
        assert_eq!(o.get_field(INCIDENT_FIELD), Some("\"opened\""));
    }
}
