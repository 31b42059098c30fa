//! The module log ring: the last lines each deployment's module logged
//! (SDK `log::info` and friends), kept in memory for `vigil detector logs`.
//!
//! Bounded twice: [`LINES_PER_DEPLOYMENT`] per deployment, and at most
//! [`MAX_DEPLOYMENTS`] deployments (replay jobs are deployments too, and come
//! and go), the one that logged least recently being forgotten first. Lines
//! are not persisted: a restarted broker starts with empty rings.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use vigil_api::logs::{LogLine, LogsPage};
use vigil_host::{GuestLogLine, GuestLogSink};

use crate::{DetectorError, Detectors};

/// Lines kept per deployment.
pub const LINES_PER_DEPLOYMENT: usize = 1000;
/// Deployments (including replay jobs) whose lines are kept.
pub const MAX_DEPLOYMENTS: usize = 512;
/// Most lines one read returns.
pub const MAX_PAGE: usize = 1000;

/// Every deployment's recent module log lines; the host's log sink.
#[derive(Debug, Default)]
pub struct ModuleLogs {
    inner: Mutex<Rings>,
}

#[derive(Debug, Default)]
struct Rings {
    /// `seq` of the last line written (lines are numbered from 1).
    last_seq: u64,
    by_deployment: HashMap<String, Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    /// Lines this ring has ever held, to tell a reader how many it missed.
    written: u64,
}

impl ModuleLogs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Rings> {
        // Every critical section leaves the rings consistent, so a panic
        // elsewhere while holding the lock does not make them unusable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps one line of `deployment`, written by `instance`.
    pub fn push(&self, deployment: &str, instance: &str, module: &str, level: &str, message: &str) {
        let time_ms = chrono::Utc::now().timestamp_millis();
        let mut rings = self.lock();
        rings.last_seq += 1;
        let seq = rings.last_seq;
        if !rings.by_deployment.contains_key(deployment)
            && rings.by_deployment.len() >= MAX_DEPLOYMENTS
        {
            let stalest = rings
                .by_deployment
                .iter()
                .min_by_key(|(_, r)| r.lines.back().map_or(0, |l| l.seq))
                .map(|(name, _)| name.clone());
            if let Some(name) = stalest {
                rings.by_deployment.remove(&name);
            }
        }
        let ring = rings
            .by_deployment
            .entry(deployment.to_string())
            .or_default();
        if ring.lines.len() >= LINES_PER_DEPLOYMENT {
            ring.lines.pop_front();
        }
        ring.written += 1;
        ring.lines.push_back(LogLine {
            seq,
            time_ms,
            level: level.to_string(),
            instance: instance.to_string(),
            module: module.to_string(),
            message: message.to_string(),
        });
    }

    /// The kept lines of `deployment` with `seq > after`, oldest first, at
    /// most `limit` (capped at [`MAX_PAGE`]); `None` if it has none kept.
    pub fn read(&self, deployment: &str, after: u64, limit: usize) -> Option<LogsPage> {
        let rings = self.lock();
        let ring = rings.by_deployment.get(deployment)?;
        let lines: Vec<LogLine> = ring
            .lines
            .iter()
            .filter(|l| l.seq > after)
            .take(limit.min(MAX_PAGE))
            .cloned()
            .collect();
        // Lines after `after` that were pushed out: only knowable when the
        // oldest kept line is newer than `after` and some were dropped.
        let evicted = ring.written - ring.lines.len() as u64;
        let dropped = match ring.lines.front() {
            Some(first) if first.seq > after.saturating_add(1) && evicted > 0 => {
                // Lines are numbered across deployments, so the gap in `seq`
                // overstates; the ring's own eviction count bounds it.
                (first.seq - after - 1).min(evicted)
            }
            _ => 0,
        };
        Some(LogsPage {
            deployment: deployment.to_string(),
            next: lines.last().map_or(after, |l| l.seq),
            lines,
            dropped,
        })
    }

    /// Forgets a deployment's lines (it was undeployed).
    pub fn forget(&self, deployment: &str) {
        self.lock().by_deployment.remove(deployment);
    }
}

impl GuestLogSink for ModuleLogs {
    fn line(&self, line: &GuestLogLine<'_>) {
        // The engine labels instances `DEPLOYMENT/INSTANCE`; other labels
        // (a host user's own) are kept under their whole label.
        let (deployment, instance) = line.label.split_once('/').unwrap_or((line.label, ""));
        let level = line.level.as_str().to_ascii_lowercase();
        self.push(deployment, instance, line.module, &level, line.message);
    }
}

impl Detectors {
    /// The module log lines of deployment `name` after `after` (see
    /// [`ModuleLogs::read`]); an existing deployment that logged nothing
    /// has an empty page.
    pub fn logs(&self, name: &str, after: u64, limit: usize) -> Result<LogsPage, DetectorError> {
        if let Some(page) = self.logs.read(name, after, limit) {
            return Ok(page);
        }
        if self.view(name).is_none() {
            return Err(DetectorError::NotFound(name.to_string()));
        }
        Ok(LogsPage {
            deployment: name.to_string(),
            lines: Vec::new(),
            next: after,
            dropped: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_are_bounded_and_pages_resume() {
        let logs = ModuleLogs::default();
        for i in 0..LINES_PER_DEPLOYMENT + 5 {
            logs.push("a", "t-0", "abc", "info", &format!("line {i}"));
        }
        logs.push("b", "t-0", "abc", "warn", "other");
        let page = logs.read("a", 0, usize::MAX).expect("a has lines");
        assert_eq!(page.lines.len(), LINES_PER_DEPLOYMENT.min(MAX_PAGE));
        assert_eq!(page.lines[0].message, "line 5", "the oldest 5 were dropped");
        assert_eq!(page.dropped, 5);
        let tail = logs.read("a", page.lines[9].seq, 3).expect("a");
        assert_eq!(tail.lines.len(), 3);
        assert_eq!(tail.lines[0].message, "line 15");
        assert_eq!(tail.dropped, 0);
        let end = logs.read("a", u64::MAX - 1, 10).expect("a");
        assert!(end.lines.is_empty());
        assert_eq!(end.next, u64::MAX - 1);
        assert_eq!(logs.read("b", 0, 10).expect("b").lines[0].level, "warn");
        logs.forget("a");
        assert!(logs.read("a", 0, 10).is_none());
    }

    #[test]
    fn the_stalest_deployment_is_forgotten_first() {
        let logs = ModuleLogs::default();
        for d in 0..MAX_DEPLOYMENTS {
            logs.push(&format!("d{d}"), "", "m", "info", "x");
        }
        logs.push("d0", "", "m", "info", "d0 logs again");
        logs.push("new", "", "m", "info", "y");
        assert!(logs.read("d1", 0, 1).is_none(), "d1 logged least recently");
        assert!(logs.read("d0", 0, 1).is_some());
        assert!(logs.read("new", 0, 1).is_some());
    }
}
