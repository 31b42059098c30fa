//! Failed logins per source address: after `max_failures` failures within
//! `window`, that address is refused until the window ends, so guessing
//! passwords costs an attacker time; and the warning about failures is
//! logged at most once per window per address, so a flood of bad logins
//! cannot flood the log.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Addresses remembered at most; past this, expired entries are dropped
/// first, then the oldest, so memory stays bounded under a spray of sources.
const MAX_SOURCES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    since: Instant,
    logged: bool,
    suppressed: u64,
}

/// Whether to log a failure, and how many were not logged before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogDecision {
    /// Log this failure.
    pub log: bool,
    /// Failures from this address not logged since the last logged one.
    pub suppressed: u64,
    /// Failures from this address in the current window.
    pub failures: u32,
}

/// Failed-login accounting.
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    entries: HashMap<IpAddr, Entry>,
}

impl LoginLimiter {
    /// At most `max_failures` failures per `window` per address.
    pub fn new(max_failures: u32, window: Duration) -> LoginLimiter {
        LoginLimiter {
            max_failures: max_failures.max(1),
            window,
            entries: HashMap::new(),
        }
    }

    /// `Err(retry_after)` if `ip` has used up its failures in this window.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        match self.entries.get(&ip) {
            Some(e) if now.duration_since(e.since) < self.window => {
                if e.failures >= self.max_failures {
                    Err(self.window - now.duration_since(e.since))
                } else {
                    Ok(())
                }
            }
            Some(_) => {
                self.entries.remove(&ip);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Records a failed login from `ip`.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) -> LogDecision {
        if !self.entries.contains_key(&ip) && self.entries.len() >= MAX_SOURCES {
            self.prune(now);
        }
        let window = self.window;
        let e = self.entries.entry(ip).or_insert(Entry {
            failures: 0,
            since: now,
            logged: false,
            suppressed: 0,
        });
        if now.duration_since(e.since) >= window {
            *e = Entry {
                failures: 0,
                since: now,
                logged: false,
                suppressed: e.suppressed,
            };
        }
        e.failures = e.failures.saturating_add(1);
        if e.logged {
            e.suppressed += 1;
            LogDecision {
                log: false,
                suppressed: e.suppressed,
                failures: e.failures,
            }
        } else {
            e.logged = true;
            let suppressed = std::mem::take(&mut e.suppressed);
            LogDecision {
                log: true,
                suppressed,
                failures: e.failures,
            }
        }
    }

    /// A successful login from `ip` clears its failures.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.entries.remove(&ip);
    }

    fn prune(&mut self, now: Instant) {
        let window = self.window;
        self.entries
            .retain(|_, e| now.duration_since(e.since) < window);
        while self.entries.len() >= MAX_SOURCES {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.since)
                .map(|(ip, _)| *ip);
            match oldest {
                Some(ip) => self.entries.remove(&ip),
                None => break,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_the_limit_until_the_window_ends() {
        let mut l = LoginLimiter::new(3, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let other: IpAddr = "10.0.0.2".parse().expect("ip");
        let t0 = Instant::now();
        let first = l.failed(ip, t0);
        assert!(first.log && first.failures == 1);
        assert!(!l.failed(ip, t0).log);
        assert!(l.check(ip, t0).is_ok());
        let third = l.failed(ip, t0);
        assert_eq!((third.log, third.suppressed, third.failures), (false, 2, 3));
        let wait = l
            .check(ip, t0 + Duration::from_secs(10))
            .expect_err("refused");
        assert_eq!(wait, Duration::from_secs(50));
        assert!(
            l.check(other, t0).is_ok(),
            "other addresses are not affected"
        );
        let later = t0 + Duration::from_secs(61);
        assert!(l.check(ip, later).is_ok());
        // The next window logs again, with the count of what was not logged.
        let next = l.failed(ip, later);
        assert!(next.log);
    }

    #[test]
    fn success_clears_and_memory_stays_bounded() {
        let mut l = LoginLimiter::new(1, Duration::from_secs(60));
        let ip: IpAddr = "::1".parse().expect("ip");
        let t0 = Instant::now();
        l.failed(ip, t0);
        assert!(l.check(ip, t0).is_err());
        l.succeeded(ip);
        assert!(l.check(ip, t0).is_ok());
        for i in 0..(MAX_SOURCES as u32 + 10) {
            l.failed(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(l.entries.len() <= MAX_SOURCES);
    }
}
