//! Alerts as the guest hands them to the host.

use crate::wire::{len32, put_opt_bytes, put_u32, Reader};
use crate::AbiError;

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Severity {
    /// Informational.
    Info,
    /// Low.
    Low,
    /// Medium (the default).
    #[default]
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Wire byte.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// From the wire byte.
    pub fn from_u8(b: u8) -> Result<Self, AbiError> {
        Ok(match b {
            0 => Severity::Info,
            1 => Severity::Low,
            2 => Severity::Medium,
            3 => Severity::High,
            4 => Severity::Critical,
            other => return Err(AbiError::BadSeverity(other)),
        })
    }

    /// Lower-case name, as written in alert records.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert: what a detector flagged and which input record it concerns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Alert {
    /// Offset of the input record the alert is about.
    pub source_offset: i64,
    /// Severity.
    pub severity: Severity,
    /// Detector-defined score (e.g. a z-score).
    pub score: f64,
    /// Key of the alert record (e.g. the card or host).
    pub key: Option<Vec<u8>>,
    /// Free text or bytes describing the alert.
    pub value: Option<Vec<u8>>,
    /// Free-form fields: name → JSON text.
    pub fields: Vec<(String, String)>,
}

/// Appends `alerts` to `out` in the ABI's alert encoding.
pub fn encode_alerts(alerts: &[Alert], out: &mut Vec<u8>) -> Result<(), AbiError> {
    put_u32(out, len32(alerts.len(), "alert count")?);
    for a in alerts {
        out.extend_from_slice(&a.source_offset.to_le_bytes());
        out.push(a.severity.as_u8());
        out.extend_from_slice(&a.score.to_le_bytes());
        put_opt_bytes(out, a.key.as_deref(), "alert key")?;
        put_opt_bytes(out, a.value.as_deref(), "alert value")?;
        let n = u16::try_from(a.fields.len()).map_err(|_| AbiError::TooLarge("alert fields"))?;
        out.extend_from_slice(&n.to_le_bytes());
        for (name, json) in &a.fields {
            put_opt_bytes(out, Some(name.as_bytes()), "field name")?;
            put_opt_bytes(out, Some(json.as_bytes()), "field value")?;
        }
    }
    Ok(())
}

/// Decodes what [`encode_alerts`] wrote. Never panics on hostile input.
pub fn decode_alerts(buf: &[u8]) -> Result<Vec<Alert>, AbiError> {
    let mut r = Reader::new(buf);
    let count = r.u32()? as usize;
    // Each alert takes at least 29 bytes, so a lying count cannot make us
    // reserve more than the payload could hold.
    let mut alerts = Vec::with_capacity(count.min(buf.len() / 29));
    for _ in 0..count {
        let source_offset = r.i64()?;
        let severity = Severity::from_u8(r.u8()?)?;
        let score = r.f64()?;
        let key = r.opt_bytes()?.map(<[u8]>::to_vec);
        let value = r.opt_bytes()?.map(<[u8]>::to_vec);
        let n = r.u16()?;
        let mut fields = Vec::with_capacity(usize::from(n).min(64));
        for _ in 0..n {
            let name = r.str32("alert field name")?.to_string();
            let json = r.str32("alert field value")?.to_string();
            fields.push((name, json));
        }
        alerts.push(Alert {
            source_offset,
            severity,
            score,
            key,
            value,
            fields,
        });
    }
    Ok(alerts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_round_trip() {
        let alerts = vec![
            Alert {
                source_offset: 42,
                severity: Severity::Critical,
                score: -3.25,
                key: Some(b"card-7".to_vec()),
                value: None,
                fields: vec![
                    ("z".into(), "4.5".into()),
                    ("why".into(), "\"burst\"".into()),
                ],
            },
            Alert::default(),
        ];
        let mut buf = Vec::new();
        encode_alerts(&alerts, &mut buf).unwrap();
        assert_eq!(decode_alerts(&buf).unwrap(), alerts);
        // Every truncation is an error, never a panic.
        for cut in 0..buf.len() {
            assert!(decode_alerts(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn lying_count_is_an_error() {
        let mut buf = Vec::new();
        put_u32(&mut buf, u32::MAX - 1);
        assert!(matches!(
            decode_alerts(&buf),
            Err(AbiError::Truncated { .. })
        ));
        let mut bad = Vec::new();
        encode_alerts(&[Alert::default()], &mut bad).unwrap();
        bad[12] = 9; // severity byte
        assert_eq!(decode_alerts(&bad), Err(AbiError::BadSeverity(9)));
    }
}
