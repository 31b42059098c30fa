//! The one way the CLI reads a position in a partition:
//! `earliest | latest | N | @RFC3339 | @MS`.
//!
//! `N` is an offset; `@` marks a time, either RFC 3339
//! (`@2026-11-17T00:00:00Z`) or milliseconds since the epoch (`@1763337600000`),
//! meaning the first record with a timestamp at or after it. The forms
//! earlier releases accepted (`offset:N`, `timestamp:MS`, a bare RFC 3339
//! time) are still read, so scripts keep working.

use anyhow::bail;
use vigil_api::StartPosition;

/// What `--help` says about positions.
pub const SYNTAX: &str = "earliest | latest | N (offset) | @RFC3339 | @MS (time)";

/// Parses a position in the CLI's syntax.
pub fn parse(s: &str) -> anyhow::Result<StartPosition> {
    let s = s.trim();
    match s {
        "earliest" => return Ok(StartPosition::Earliest),
        "latest" => return Ok(StartPosition::Latest),
        _ => {}
    }
    if let Ok(n) = s.parse::<i64>() {
        return offset(n, s);
    }
    if let Some(t) = s.strip_prefix('@') {
        return time(t, s);
    }
    // Older spellings.
    if let Some(n) = s.strip_prefix("offset:") {
        if let Ok(n) = n.parse::<i64>() {
            return offset(n, s);
        }
    }
    if let Some(t) = s.strip_prefix("timestamp:") {
        return time(t, s);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(StartPosition::Timestamp(t.timestamp_millis()));
    }
    bail!("{s:?} is not a position: use {SYNTAX}, e.g. 42, @2026-11-17T00:00:00Z or @1763337600000")
}

fn offset(n: i64, s: &str) -> anyhow::Result<StartPosition> {
    if n < 0 {
        bail!("{s:?}: an offset cannot be negative (use earliest, latest or a time @…)");
    }
    Ok(StartPosition::Offset(n))
}

fn time(t: &str, s: &str) -> anyhow::Result<StartPosition> {
    if let Ok(ms) = t.parse::<i64>() {
        if ms < 0 {
            bail!("{s:?}: a time in ms cannot be negative");
        }
        return Ok(StartPosition::Timestamp(ms));
    }
    match chrono::DateTime::parse_from_rfc3339(t) {
        Ok(d) => Ok(StartPosition::Timestamp(d.timestamp_millis())),
        Err(e) => bail!(
            "{s:?}: after @ comes an RFC 3339 time (e.g. @2026-11-17T00:00:00Z) or ms since the epoch ({e})"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_to_its_position() {
        use StartPosition::*;
        for (text, want) in [
            ("earliest", Earliest),
            ("latest", Latest),
            ("42", Offset(42)),
            ("@1763337600000", Timestamp(1_763_337_600_000)),
            ("@2025-11-17T00:00:00Z", Timestamp(1_763_337_600_000)),
            ("@2025-11-17T01:00:00+01:00", Timestamp(1_763_337_600_000)),
            ("offset:7", Offset(7)),
            ("timestamp:5", Timestamp(5)),
            ("2025-11-17T00:00:00Z", Timestamp(1_763_337_600_000)),
        ] {
            assert_eq!(parse(text).expect(text), want, "{text}");
        }
    }

    #[test]
    fn bad_positions_say_the_syntax() {
        for bad in ["", "soon", "-1", "@-5", "@yesterday", "offset:x"] {
            let e = parse(bad).expect_err(bad).to_string();
            assert!(
                e.contains(SYNTAX) || e.contains("cannot be negative") || e.contains("after @"),
                "{bad}: {e}"
            );
        }
    }
}
