//! A local SeaweedFS S3 server for the S3 rows.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use crate::common::workspace_root;

// ---------------------------------------------------------------- seaweedfs

/// `weed mini` on loopback, started and stopped by the test suite's own
/// harness (`tests/clients/s3.py`, free ports, S3 identity, bucket) in a
/// Python child that keeps it running until its stdin closes.
pub(crate) struct Seaweed {
    pub(crate) child: Child,
    pub(crate) endpoint: String,
    pub(crate) bucket: String,
}

pub(crate) const SEAWEED_HELPER: &str = r#"
import sys, pathlib
sys.path.insert(0, sys.argv[1])
from s3 import SeaweedFS
d = pathlib.Path(sys.argv[3])
s = SeaweedFS(pathlib.Path(sys.argv[2]), d, d / "weed.log", bucket="vigil-bench").start()
try:
    for k, v in s.env().items():
        print(f"{k}={v}", flush=True)
    print(f"BUCKET={s.bucket}", flush=True)
    print("READY", flush=True)
    sys.stdin.read()
finally:
    s.stop()
"#;

impl Seaweed {
    pub(crate) fn start(weed: &Path, dir: &Path) -> Result<Self> {
        let root = workspace_root();
        let python = weed.with_file_name("python");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut child = Command::new(&python)
            .arg("-c")
            .arg(SEAWEED_HELPER)
            .arg(root.join("tests/clients"))
            .arg(weed)
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot run {}", python.display()))?;
        let stdout = child
            .stdout
            .take()
            .context("no stdout pipe to the SeaweedFS helper")?;
        let mut endpoint = None;
        let mut bucket = None;
        let mut ready = false;
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading the SeaweedFS helper's output")?;
            if line == "READY" {
                ready = true;
                break;
            }
            if let Some((k, v)) = line.split_once('=') {
                match k {
                    "BUCKET" => bucket = Some(v.to_string()),
                    _ => {
                        if k == "AWS_ENDPOINT_URL" {
                            endpoint = Some(v.to_string());
                        }
                        // Still single-threaded: no other thread reads the
                        // environment concurrently.
                        std::env::set_var(k, v);
                    }
                }
            }
        }
        let (true, Some(endpoint), Some(bucket)) = (ready, endpoint, bucket) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "SeaweedFS did not start (see its log in {}/weed.log)",
                dir.display()
            );
        };
        Ok(Seaweed {
            child,
            endpoint,
            bucket,
        })
    }

    pub(crate) fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// Closes the helper's stdin, which stops weed, and waits for it.
    pub(crate) fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
            }
        }
    }
}
