//! Deleting large files without stalling the WAL's fsyncs.
//!
//! On ext4 mounted with `discard` (common on cloud VMs, and this project's
//! test machine), the blocks a file frees are discarded while the journal
//! commits, and every fsync that needs that commit waits for it. Unlinking
//! a 50 MB WAL segment after an upload therefore held the next group
//! commits for 10–20 ms: the broker bench's slow produce windows at 50 000
//! records/s sat at each upload until segment deletion was skipped
//! (design 0020, "Deleting WAL segments gently"). Shrinking the file a step
//! at a time, with an fdatasync after each step, makes each commit free at
//! most one step; the unlink at the end frees nothing.

use std::fs::OpenOptions;
use std::io::{self, ErrorKind};
use std::path::Path;

/// Bytes freed per journal commit.
const STEP_BYTES: u64 = 4 << 20;

/// Removes `path`, shrinking it in steps first; a file already gone is not
/// an error (a crash may have removed it before).
pub(crate) fn remove_file(path: &Path) -> io::Result<()> {
    match shrink(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn shrink(path: &Path) -> io::Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    let mut len = f.metadata()?.len();
    while len > STEP_BYTES {
        len -= STEP_BYTES;
        f.set_len(len)?;
        // Commits this step's freed blocks (and their discard) on its own.
        f.sync_data()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_large_small_and_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![7u8; (STEP_BYTES * 2 + 5) as usize]).expect("write");
        let small = dir.path().join("small");
        std::fs::write(&small, b"x").expect("write");
        remove_file(&big).expect("big");
        remove_file(&small).expect("small");
        remove_file(&dir.path().join("never")).expect("missing is fine");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
    }

    #[test]
    fn a_directory_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(remove_file(dir.path()).is_err());
        assert!(dir.path().is_dir());
    }
}
