//! The open-file limit: every client connection, WAL segment and cached
//! object costs a descriptor, and Debian's default soft limit (1024) is below
//! the broker's default connection cap (4096). Like the JVM does for Kafka,
//! `vigil serve` raises the soft limit to the hard one at startup, and warns
//! when even that leaves too little room for the connection cap, since an
//! exhausted table makes the WAL and the object store fail too.

/// Descriptors kept for everything that is not a client connection (WAL,
/// object store sockets, admin connections, module cache files).
const RESERVE: u64 = 512;

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns (before, after),
/// or `None` if the limits cannot be read.
pub fn raise_nofile_limit() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the rlimit struct we pass, which lives
    // on this stack frame; RLIMIT_NOFILE is a valid resource.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct; raising the soft limit up
        // to the hard one needs no privilege and cannot fail for a valid one.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some((before, raised.rlim_cur));
        }
    }
    Some((before, before))
}

/// Raises the limit and logs what happened; warns if `max_connections`
/// cannot fit.
pub fn prepare(max_connections: usize) {
    match raise_nofile_limit() {
        Some((before, after)) => {
            if after > before {
                tracing::info!(before, after, "raised the open-file limit");
            }
            let needed = max_connections as u64 + RESERVE;
            if after < needed {
                tracing::warn!(limit = after, max_connections, needed, "the open-file limit is below max-connections plus a reserve: a connection flood can exhaust descriptors before the cap refuses it; raise `ulimit -n` (hard) or lower max-connections");
            }
        }
        None => tracing::warn!("cannot read the open-file limit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in raise_nofile_limit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        if lim.rlim_max > 256 {
            let lowered = libc::rlimit {
                rlim_cur: 256,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: lowering the soft limit of this test process is allowed.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        }
        let (before, after) = raise_nofile_limit().expect("limits readable");
        assert_eq!(after, lim.rlim_max);
        assert!(before <= after);
    }
}
