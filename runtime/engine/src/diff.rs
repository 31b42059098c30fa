//! Comparing two alert streams: which input records did A alert on that B
//! did not, and the other way round.
//!
//! Alerts are compared by what they point at, their source topic, partition
//! and offset (the `vigil.source.*` headers), not by their position in the
//! alert topic, so two deployments writing to different topics, a shadow and
//! its primary, or a replay and the live deployment can be compared.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
pub use vigil_api::diff::{DiffReport, DiffRequest, DiffTotal, PartitionDiff};
use vigil_storage::{Log, Topic};

use super::output::{header, headers, scan_records};
use super::spec::SpecError;
use super::DetectorError;

/// How many unmatched offsets of each side a report shows per partition.
pub const SAMPLES: usize = 20;

/// Bytes asked for per read while scanning an alert topic.
const READ_BYTES: usize = 1 << 20;

/// The outcome of matching one source partition's alerts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionCounts {
    /// A alerts with no B alert within the window.
    pub only_a: u64,
    /// B alerts with no A alert within the window.
    pub only_b: u64,
    /// Matched pairs.
    pub both: u64,
    /// The first (lowest) source offsets of unmatched A alerts, at most [`SAMPLES`].
    pub sample_only_a: Vec<i64>,
    /// The first (lowest) source offsets of unmatched B alerts, at most [`SAMPLES`].
    pub sample_only_b: Vec<i64>,
}

fn within(x: i64, y: i64, window: u64) -> bool {
    x.abs_diff(y) <= window
}

/// Pairs A and B alerts whose source offsets are at most `window` apart.
/// `a` and `b` are sorted (duplicates allowed: a record can be alerted on
/// twice); each alert is in at most one pair.
///
/// The pairing goes through both sides in offset order and pairs the lowest
/// unpaired A with the lowest unpaired B whenever they are within the
/// window. That yields the largest possible number of pairs. A "closest
/// partner first" greedy does not: with A = [11, 12], B = [10, 11] and
/// window 1 it pairs 11–11 and leaves 12 and 10 alone, while 11–10 and 12–11
/// pair everything, and a detector whose alerts moved by one record is
/// exactly that case. Then, without changing the count, each pair is moved
/// to the closest free partner between its neighbours' partners, so that
/// an exact match is reported as such and the samples show the alerts that
/// really differ.
pub fn match_offsets(a: &[i64], b: &[i64], window: i64) -> PartitionCounts {
    // A negative window matches nothing; callers validate it anyway.
    if window < 0 {
        return unmatched(a, b);
    }
    let w = window.unsigned_abs();
    let mut pairs = largest_pairing(a, b, w);
    nudge_to_closest(&mut pairs, a, b);
    let mut flipped: Vec<(usize, usize)> = pairs.iter().map(|&(i, j)| (j, i)).collect();
    nudge_to_closest(&mut flipped, b, a);
    let mut in_a = vec![false; a.len()];
    let mut in_b = vec![false; b.len()];
    for &(j, i) in &flipped {
        in_a[i] = true;
        in_b[j] = true;
    }
    let free = |xs: &[i64], paired: &[bool]| -> Vec<i64> {
        xs.iter()
            .zip(paired)
            .filter(|(_, &p)| !p)
            .map(|(&x, _)| x)
            .collect()
    };
    let (fa, fb) = (free(a, &in_a), free(b, &in_b));
    PartitionCounts {
        only_a: fa.len() as u64,
        only_b: fb.len() as u64,
        both: flipped.len() as u64,
        sample_only_a: fa.into_iter().take(SAMPLES).collect(),
        sample_only_b: fb.into_iter().take(SAMPLES).collect(),
    }
}

fn unmatched(a: &[i64], b: &[i64]) -> PartitionCounts {
    PartitionCounts {
        only_a: a.len() as u64,
        only_b: b.len() as u64,
        both: 0,
        sample_only_a: a.iter().copied().take(SAMPLES).collect(),
        sample_only_b: b.iter().copied().take(SAMPLES).collect(),
    }
}

/// Index pairs `(i, j)`, increasing in both, of a largest pairing.
///
/// Why the lowest-with-lowest rule is optimal: some largest pairing never
/// crosses (uncrossing a1–b2, a2–b1 into a1–b1, a2–b2 keeps both within the
/// window), and in a non-crossing one, if the lowest free A and B are within
/// the window, re-pairing them with each other never loses a pair.
fn largest_pairing(a: &[i64], b: &[i64], w: u64) -> Vec<(usize, usize)> {
    let mut pairs = Vec::with_capacity(a.len().min(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if within(a[i], b[j], w) {
            pairs.push((i, j));
            i += 1;
            j += 1;
        } else if a[i] < b[j] {
            // Every later B is further away still: a[i] stays alone.
            i += 1;
        } else {
            j += 1;
        }
    }
    pairs
}

/// Moves each pair `(x, y)` to the free `ys` element closest to `xs[x]`, if
/// strictly closer and between the neighbouring pairs' `y` (so the pairing
/// stays non-crossing and keeps its size).
fn nudge_to_closest(pairs: &mut [(usize, usize)], xs: &[i64], ys: &[i64]) {
    for k in 0..pairs.len() {
        // Between the neighbours' partners every element but our own is free.
        let lo = if k == 0 { 0 } else { pairs[k - 1].1 + 1 };
        let hi = pairs.get(k + 1).map_or(ys.len(), |next| next.1);
        let (x, current) = (xs[pairs[k].0], pairs[k].1);
        let mut best = (x.abs_diff(ys[current]), current);
        // Only the two neighbours of x's insertion point can be closest.
        let at = lo + ys[lo..hi].partition_point(|&y| y < x);
        for cand in [at.checked_sub(1), Some(at)].into_iter().flatten() {
            if cand >= lo && cand < hi {
                let d = x.abs_diff(ys[cand]);
                // Closer than the current partner is within the window too.
                if d < best.0 {
                    best = (d, cand);
                }
            }
        }
        pairs[k].1 = best.1;
    }
}

/// Source offsets a deployment has processed, by source (topic, partition):
/// `[first, next)`.
pub type Coverage = BTreeMap<(String, i32), (i64, i64)>;

/// The offsets both deployments processed. A partition only one of them
/// reads is left out: nothing there can be compared.
pub fn intersect(a: &Coverage, b: &Coverage) -> Coverage {
    a.iter()
        .filter_map(|(k, &(af, at))| {
            let &(bf, bt) = b.get(k)?;
            let (f, t) = (af.max(bf), at.min(bt));
            Some((k.clone(), (f, t.max(f))))
        })
        .collect()
}

/// Alert offsets by source (topic, partition), each list sorted.
pub type AlertOffsets = BTreeMap<(String, i32), Vec<i64>>;

/// Reads the alert topic up to its current high watermark and returns the
/// source offsets of its alerts, optionally only those written by
/// `deployment` and only those with a source offset in `[from, to)`.
/// Records without the source headers (not alerts) are ignored.
pub async fn collect(
    log: &Log,
    topic: &Topic,
    deployment: Option<&str>,
    range: Option<(i64, i64)>,
) -> Result<AlertOffsets, DetectorError> {
    let mut out = AlertOffsets::new();
    for p in &topic.partitions {
        // A snapshot of the end: a live topic keeps growing, and a diff is
        // of what was there when it was asked for.
        let end = p.high_watermark();
        let what = format!("{}-{}", topic.name, p.index);
        scan_records(log, p, p.log_start_offset(), end, READ_BYTES, &what, |r| {
            if deployment.is_some() && header(r, headers::DEPLOYMENT) != deployment {
                return;
            }
            let source = (
                header(r, headers::SOURCE_TOPIC),
                header(r, headers::SOURCE_PARTITION).and_then(|v| v.parse().ok()),
                header(r, headers::SOURCE_OFFSET).and_then(|v| v.parse::<i64>().ok()),
            );
            let (Some(t), Some(sp), Some(so)) = source else {
                return;
            };
            if range.is_some_and(|(from, to)| so < from || so >= to) {
                return;
            }
            out.entry((t.to_string(), sp)).or_default().push(so);
        })
        .await?;
    }
    for v in out.values_mut() {
        v.sort_unstable();
    }
    Ok(out)
}

/// Compares the alerts of A (`a_topic`, only `a_deployment`'s records if
/// given) with those of B, per source partition.
pub async fn diff(
    log: &Log,
    a_topic: &Topic,
    a_deployment: Option<&str>,
    b_topic: &Topic,
    b_deployment: Option<&str>,
    covered: Option<&Coverage>,
    req: &DiffRequest,
) -> Result<DiffReport, DetectorError> {
    req.check()
        .map_err(|e| SpecError(format!("invalid diff request: {e}")))?;
    let range = req.range();
    let a = collect(log, a_topic, a_deployment, range).await?;
    let b = collect(log, b_topic, b_deployment, range).await?;
    Ok(report(req, &a, &b, covered))
}

/// The report of two collected alert sets.
/// With `covered`, only the partitions and offsets in it are compared (a
/// shadow started later than its live deployment, so the live one's earlier
/// alerts have nothing to be compared with).
pub fn report(
    req: &DiffRequest,
    a: &AlertOffsets,
    b: &AlertOffsets,
    covered: Option<&Coverage>,
) -> DiffReport {
    let mut keys: Vec<&(String, i32)> = a.keys().chain(b.keys()).collect();
    if let Some(c) = covered {
        keys.extend(c.keys());
        keys.retain(|k| c.contains_key(*k));
    }
    keys.sort();
    keys.dedup();
    let within = |side: Option<&Vec<i64>>, key: &(String, i32)| -> Vec<i64> {
        let all = side.map_or(&[][..], Vec::as_slice);
        match covered.and_then(|c| c.get(key)) {
            Some(&(f, t)) => all.iter().copied().filter(|o| (f..t).contains(o)).collect(),
            None => all.to_vec(),
        }
    };
    let mut total = DiffTotal::default();
    let partitions = keys
        .into_iter()
        .map(|key| {
            let (sa, sb) = (within(a.get(key), key), within(b.get(key), key));
            let c = match_offsets(&sa, &sb, req.window);
            total.only_a += c.only_a;
            total.only_b += c.only_b;
            total.both += c.both;
            PartitionDiff {
                topic: key.0.clone(),
                partition: key.1,
                only_a: c.only_a,
                only_b: c.only_b,
                both: c.both,
                sample_only_a: c.sample_only_a,
                sample_only_b: c.sample_only_b,
                covered: covered.and_then(|c| c.get(key)).copied(),
            }
        })
        .collect();
    DiffReport {
        a: req.a.clone(),
        b: req.b.clone(),
        window: req.window,
        from: req.from,
        to: req.to,
        partitions,
        total,
    }
}

/// What one side of a diff names: the alert topic to read and, for a
/// deployment, the deployment whose records count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    /// Alert topic.
    pub topic: String,
    /// Only records whose `vigil.deployment` header is this.
    pub deployment: Option<String>,
    /// For a deployment: the offsets it has processed.
    pub covered: Option<Coverage>,
}

/// Resolves a diff side: `output_of(name)` gives a deployment's alert topic
/// (None when there is no such deployment); any other name is a topic read
/// whole. A deployment wins over a topic of the same name.
pub fn resolve(name: &str, output_of: impl FnOnce(&str) -> Option<(String, Coverage)>) -> Side {
    match output_of(name) {
        Some((topic, covered)) => Side {
            topic,
            deployment: Some(name.to_string()),
            covered: Some(covered),
        },
        None => Side {
            topic: name.to_string(),
            deployment: None,
            covered: None,
        },
    }
}

#[cfg(test)]
mod tests;
