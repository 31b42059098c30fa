//! Progress output of `vigil eval` on stderr.

use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};

/// One status line on stderr, rewritten in place on a terminal and
/// throttled to one line every few seconds otherwise (logs stay readable).
pub struct Progress {
    tty: bool,
    last: std::cell::Cell<Option<Instant>>,
}

impl Progress {
    /// A progress line for stderr.
    pub fn new() -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
            last: std::cell::Cell::new(None),
        }
    }

    /// Shows `line` (throttled).
    pub fn show(&self, line: &str) {
        let every = if self.tty { 100 } else { 5_000 };
        if self
            .last
            .get()
            .is_some_and(|t| t.elapsed() < Duration::from_millis(every))
        {
            return;
        }
        self.last.set(Some(Instant::now()));
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// Ends the progress line, printing `line` if not empty.
    pub fn done(&self, line: &str) {
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K");
        }
        if !line.is_empty() {
            let _ = writeln!(err, "{line}");
        }
    }
}
