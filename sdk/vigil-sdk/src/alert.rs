//! Alerts: what a detector flags, and the per-call collection of them.

use serde::Serialize;
use vigil_abi::Severity;

/// Alert field: the value the detector expected (see [`Alert::expected`]).
pub const EXPECTED_FIELD: &str = "expected";
/// Alert field: low end of the expected range.
pub const EXPECTED_LOW_FIELD: &str = "expected_low";
/// Alert field: high end of the expected range.
pub const EXPECTED_HIGH_FIELD: &str = "expected_high";

/// One alert, built fluently:
///
/// ```
/// use vigil_sdk::{Alert, Severity};
/// let a = Alert::new(42)
///     .key("card-7")
///     .severity(Severity::High)
///     .score(4.2)
///     .message("amount 4.2 sigma above the card's mean")
///     .field("amount", 912.5);
/// assert_eq!(a.get_field("amount"), Some("912.5"));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[repr(transparent)]
pub struct Alert(vigil_abi::Alert);

impl Alert {
    /// An alert about the record at `source_offset`: severity
    /// [`Severity::Medium`], score 0, no key, message or fields.
    pub fn new(source_offset: i64) -> Self {
        Alert(vigil_abi::Alert {
            source_offset,
            ..Default::default()
        })
    }

    /// Sets the key of the alert record (e.g. the card or host).
    pub fn key(mut self, k: impl AsRef<[u8]>) -> Self {
        self.0.key = Some(k.as_ref().to_vec());
        self
    }

    /// Sets the severity.
    pub fn severity(mut self, s: Severity) -> Self {
        self.0.severity = s;
        self
    }

    /// Sets the score (e.g. a z-score).
    pub fn score(mut self, s: f64) -> Self {
        self.0.score = s;
        self
    }

    /// Sets the human-readable message, stored as the alert record's value.
    pub fn message(mut self, m: impl Into<String>) -> Self {
        self.0.value = Some(m.into().into_bytes());
        self
    }

    /// Adds (or replaces) the field `name` with `value` as JSON text.
    /// Non-finite floats become `null` (JSON has no NaN); a value serde_json
    /// cannot serialize (a map with non-string keys) also becomes `null`.
    pub fn field(mut self, name: &str, value: impl Serialize) -> Self {
        let json = serde_json::to_string(&value).unwrap_or_else(|_| "null".to_string());
        match self.0.fields.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = json,
            None => self.0.fields.push((name.to_string(), json)),
        }
        self
    }

    /// Adds what the detector expected: fields `expected` (the value it
    /// predicted), `expected_low` and `expected_high` (the range it would
    /// not have alerted on). The metric detectors all use these names, so
    /// a consumer can show "value v, expected e (lo..hi)" for any of them.
    pub fn expected(self, expected: f64, low: f64, high: f64) -> Self {
        self.field(EXPECTED_FIELD, expected)
            .field(EXPECTED_LOW_FIELD, low)
            .field(EXPECTED_HIGH_FIELD, high)
    }

    /// Offset of the record the alert is about.
    pub fn source_offset(&self) -> i64 {
        self.0.source_offset
    }

    /// The severity.
    pub fn get_severity(&self) -> Severity {
        self.0.severity
    }

    /// The score.
    pub fn get_score(&self) -> f64 {
        self.0.score
    }

    /// The key, if set.
    pub fn get_key(&self) -> Option<&[u8]> {
        self.0.key.as_deref()
    }

    /// The message, if set and UTF-8.
    pub fn get_message(&self) -> Option<&str> {
        self.0
            .value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The JSON text of field `name`, if set.
    pub fn get_field(&self, name: &str) -> Option<&str> {
        self.0
            .fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The ABI form of the alert.
    pub fn into_abi(self) -> vigil_abi::Alert {
        self.0
    }

    /// Upper bound of the alert's size in the ABI encoding, used to decide
    /// when to flush.
    pub(crate) fn encoded_len(&self) -> usize {
        let a = &self.0;
        8 + 1
            + 8
            + 4
            + a.key.as_ref().map_or(0, Vec::len)
            + 4
            + a.value.as_ref().map_or(0, Vec::len)
            + 2
            + a.fields
                .iter()
                .map(|(n, v)| 8 + n.len() + v.len())
                .sum::<usize>()
    }
}

impl From<Alert> for vigil_abi::Alert {
    fn from(a: Alert) -> Self {
        a.0
    }
}

/// Flushes buffered alerts to the host (set by the wasm glue only).
pub(crate) type Sink = fn(&mut Vec<Alert>);

/// The alerts produced by one [`Detector::process`](crate::Detector::process)
/// call.
///
/// Inside a wasm module, alerts are sent to the host in chunks of about
/// 64 KiB while the detector runs, so a detector that floods alerts is
/// stopped at the deployment's alert limit instead of exhausting memory;
/// [`len`](Alerts::len) counts all alerts of the call, while
/// [`iter`](Alerts::iter) only sees those not yet sent. Natively (tests)
/// nothing is sent and every alert stays visible.
#[derive(Debug, Default)]
pub struct Alerts {
    items: Vec<Alert>,
    pending_bytes: usize,
    sent: usize,
    sink: Option<Sink>,
}

/// Pending encoded size at which the wasm glue flushes to the host.
pub(crate) const FLUSH_BYTES: usize = 64 * 1024;

impl Alerts {
    /// An empty collection that keeps every alert (native use).
    pub fn new() -> Self {
        Alerts::default()
    }

    /// A collection that hands pending alerts to `sink` past [`FLUSH_BYTES`].
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn with_sink(sink: Sink) -> Self {
        Alerts {
            sink: Some(sink),
            ..Alerts::default()
        }
    }

    /// Adds an alert.
    pub fn push(&mut self, alert: Alert) {
        self.pending_bytes += alert.encoded_len();
        self.items.push(alert);
        if self.pending_bytes > FLUSH_BYTES {
            self.flush();
        }
    }

    /// Hands pending alerts to the sink, if there is one.
    pub(crate) fn flush(&mut self) {
        if let Some(sink) = self.sink {
            self.sent += self.items.len();
            sink(&mut self.items);
            self.items.clear();
            self.pending_bytes = 0;
        }
    }

    /// Number of alerts pushed during this call.
    pub fn len(&self) -> usize {
        self.sent + self.items.len()
    }

    /// Whether no alert was pushed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The alerts pushed and not yet sent to the host.
    pub fn iter(&self) -> impl Iterator<Item = &Alert> {
        self.items.iter()
    }

    /// The alerts not yet sent to the host (all of them natively).
    pub fn into_vec(self) -> Vec<Alert> {
        self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_and_getters() {
        let a = Alert::new(7)
            .key(b"k1")
            .severity(Severity::Critical)
            .score(-2.5)
            .message("hello")
            .field("x", 1)
            .field("nan", f64::NAN)
            .field("x", "two")
            .field("v", vec![1.0, f64::INFINITY]);
        assert_eq!(a.source_offset(), 7);
        assert_eq!(a.get_key(), Some(&b"k1"[..]));
        assert_eq!(a.get_severity(), Severity::Critical);
        assert_eq!(a.get_score(), -2.5);
        assert_eq!(a.get_message(), Some("hello"));
        assert_eq!(a.get_field("x"), Some("\"two\""));
        assert_eq!(a.get_field("nan"), Some("null"));
        assert_eq!(a.get_field("v"), Some("[1.0,null]"));
        assert_eq!(a.get_field("missing"), None);
        let r = Alert::new(1).expected(5.0, 4.0, 6.5);
        assert_eq!(r.get_field(EXPECTED_FIELD), Some("5.0"));
        assert_eq!(r.get_field(EXPECTED_LOW_FIELD), Some("4.0"));
        assert_eq!(r.get_field(EXPECTED_HIGH_FIELD), Some("6.5"));
        let d = Alert::new(1);
        assert_eq!(d.get_severity(), Severity::Medium);
        assert_eq!(d.get_score(), 0.0);
        let abi = a.clone().into_abi();
        assert_eq!(abi.fields.len(), 3);
        let mut buf = Vec::new();
        vigil_abi::encode_alerts(std::slice::from_ref(&abi), &mut buf).unwrap();
        assert!(
            buf.len() - 4 <= a.encoded_len(),
            "estimate is an upper bound"
        );
    }

    #[test]
    fn native_alerts_keep_everything() {
        let mut alerts = Alerts::new();
        assert!(alerts.is_empty());
        for i in 0..5000 {
            alerts.push(Alert::new(i).message("x".repeat(100)));
        }
        assert_eq!(alerts.len(), 5000);
        assert_eq!(alerts.iter().count(), 5000);
        assert_eq!(alerts.into_vec()[4999].source_offset(), 4999);
    }

    #[test]
    fn sink_receives_chunks() {
        use std::cell::Cell;
        thread_local!(static SEEN: Cell<usize> = const { Cell::new(0) });
        #[allow(clippy::ptr_arg)] // must match the `Sink` type
        fn sink(v: &mut Vec<Alert>) {
            SEEN.with(|s| s.set(s.get() + v.len()));
        }
        let mut alerts = Alerts::with_sink(sink);
        for i in 0..5000 {
            alerts.push(Alert::new(i).message("x".repeat(100)));
        }
        let seen = SEEN.with(Cell::get);
        assert!(seen > 0 && seen < 5000);
        assert_eq!(alerts.len(), 5000);
        assert_eq!(alerts.iter().count(), 5000 - seen);
        alerts.flush();
        assert_eq!(SEEN.with(Cell::get), 5000);
        assert_eq!(alerts.len(), 5000);
    }
}
