"""Shared pieces of the cluster suites (test_cluster.py, test_cluster_faults.py):
a real single-member etcd on loopback, cluster nodes, and waits on the
leaders that metadata reports."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Broker, free_port
from helpers import Deadline, ck_admin

TTL_MS = 3000
PARTITIONS = 12


class Etcd:
    """A single-member etcd on loopback (Debian etcd-server). Keeps its ports
    and data dir across `kill()` / `start()`, so a restart is the same member."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self) -> None:
        etcd = shutil.which("etcd")
        if etcd is None:
            pytest.fail("etcd not found: run scripts/install-test-deps.sh (Debian etcd-server)",
                        pytrace=False)
        client = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        if self.log is None:
            self.log = open(self.dir / "etcd.log", "ab")
        self.proc = subprocess.Popen(
            [etcd, "--name", "n1", "--data-dir", str(self.dir / "etcd-data"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"n1={peer}"],
            stdout=subprocess.DEVNULL, stderr=self.log)
        dl = Deadline(20, "etcd answering")
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.client_port), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"etcd exited with {self.proc.returncode}; see {self.dir / 'etcd.log'}")
                dl.check()
                time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL, as a crash: the data dir stays for a restart."""
        assert self.proc is not None and self.proc.poll() is None, "etcd not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.log is not None:
            self.log.close()
            self.log = None


@pytest.fixture
def etcd(tmp_path):
    e = Etcd(tmp_path)
    e.start()
    yield e
    e.stop()


def node(tmp_path: Path, coordinator: str, store: tuple[str, dict], node_id: int,
         extra: list[str] | None = None) -> Broker:
    """A cluster node (object WAL, short session TTL), not started."""
    work = tmp_path / f"node{node_id}"
    work.mkdir()
    url, env = store
    return Broker(work, name=f"vigil-{node_id}", object_store=url, env=env, extra_args=[
        "--coordinator", coordinator,
        "--node-id", str(node_id),
        "--wal", "object",
        "--session-ttl-ms", str(TTL_MS),
        "--upload-interval-ms", "60000",
        *(extra or []),
    ])


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    md = ck_admin(bootstrap).list_topics(topic, timeout=5)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return {}
    return {p: m.leader for p, m in t.partitions.items()}


def wait_leaders(bootstrap: str, topic: str, on: set[int], per_node: int, timeout: float = 30,
                 partitions: int = PARTITIONS) -> dict:
    """Until every partition has a leader in `on`, each leading `per_node`."""
    dl = Deadline(timeout, f"leaders of {topic} spread over {sorted(on)}")
    last = {}
    while True:
        try:
            last = leaders(bootstrap, topic)
        except Exception as e:  # metadata from a broker that is going away
            last = {"error": str(e)}
        if len(last) == partitions and all(n in on for n in last.values()):
            counts = {n: list(last.values()).count(n) for n in on}
            if all(c == per_node for c in counts.values()):
                return last
        dl.check(f"(last: {last})")
        time.sleep(0.2)
