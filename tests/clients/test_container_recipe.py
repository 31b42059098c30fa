"""The container recipe (Dockerfile + compose.yaml, issue 15 must-have 4)
checked without a container runtime (none here, nor in CI): a test that
fails when the recipe drifts from the repository or the binary.

Statically: the compose file parses; its services, build context, mounted
files, credentials, bucket and ports agree with each other, the Dockerfile
and ops/seaweedfs/s3.json; the Dockerfile's base image matches the
workspace's rust-version, its COPY sources and build stage exist, the
package it builds exists, `.dockerignore` keeps target/ out of the context.

Dynamically: the release binary is run the way the image runs it (ENTRYPOINT
+ CMD, with the image's ENV merged with the compose service's environment,
on real SeaweedFS; only addresses, the data dir and the S3 endpoint and
credentials are swapped for the test's), and the HEALTHCHECK's own request
gets "ok", Kafka clients produce through it, and every log line is JSON as
VIGIL_LOG_FORMAT asks."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import tomllib

import pytest

from conftest import REPO_ROOT, free_port, vigil_bin
from helpers import Deadline, ck_create_topic, ck_producer

yaml = pytest.importorskip("yaml", reason="PyYAML (tests/clients/requirements.txt) parses compose.yaml")

DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE = REPO_ROOT / "compose.yaml"


def instructions(path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    out, cur = [], ""
    for line in path.read_text().splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        word, _, rest = cur.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    assert not cur, f"{path}: dangling continuation: {cur!r}"
    return out


def image_env(ins) -> dict[str, str]:
    env = {}
    for word, rest in ins:
        if word == "ENV":
            for k, v in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)', rest):
                env[k] = v.strip('"')
    return env


def exec_form(rest: str) -> list[str]:
    got = json.loads(rest)
    assert isinstance(got, list) and all(isinstance(x, str) for x in got), rest
    return got


def env_vars_of(*args: str) -> set[str]:
    """The `VIGIL_*` variables `vigil ARGS --help` says it reads."""
    p = subprocess.run([str(vigil_bin()), *args, "--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return set(re.findall(r"\[env: (VIGIL_[A-Z0-9_]+)=", p.stdout))


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def test_dockerfile_and_compose_match_the_repo_and_the_binary():
    ins = instructions(DOCKERFILE)
    words = [w for w, _ in ins]
    assert words[0] == "FROM" and words.count("FROM") == 2, words

    # Build stage: the toolchain the workspace asks for, the package exists.
    build_from = next(r for w, r in ins if w == "FROM")
    m = re.fullmatch(r"rust:(\d+\.\d+)(?:\.\d+)?-\S+ AS (\S+)", build_from)
    assert m, build_from
    ws = tomllib.loads((REPO_ROOT / "Cargo.toml").read_text())
    assert m.group(1) == ws["workspace"]["package"]["rust-version"], (build_from, ws["workspace"]["package"])
    stage = m.group(2)
    run = " ".join(r for w, r in ins if w == "RUN")
    pkg = re.search(r"cargo build --release --locked -p (\S+)", run)
    assert pkg, run
    names = {tomllib.loads(p.read_text()).get("package", {}).get("name")
             for p in REPO_ROOT.glob("runtime/*/Cargo.toml")}
    assert pkg.group(1) in names, (pkg.group(1), names)
    assert (REPO_ROOT / "Cargo.lock").is_file(), "--locked needs Cargo.lock"
    built = re.search(r"cp target/release/(\S+) (\S+)", run)
    assert built and built.group(1) == "vigil", run

    # COPY: sources in the context exist; --from names the build stage and
    # the file it put there.
    for w, r in ins:
        if w != "COPY":
            continue
        parts = r.split()
        if parts[0].startswith("--from="):
            assert parts[0] == f"--from={stage}", r
            assert parts[1] == built.group(2), (r, built.group(2))
        else:
            for src in parts[:-1]:
                assert (REPO_ROOT / src).exists(), f"COPY source {src} missing"
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert "target" in ignored and ".git" in ignored, ignored

    # What the image runs exists: `vigil serve`, reading the image's ENV.
    entry = exec_form(next(r for w, r in ins if w == "ENTRYPOINT"))
    cmd = exec_form(next(r for w, r in ins if w == "CMD"))
    assert entry[-1] == "vigil" and cmd == ["serve"], (entry, cmd)
    env = image_env(ins)
    known = env_vars_of("serve") | env_vars_of()
    assert set(env) <= known, f"unknown to vigil: {set(env) - known}"
    exposed = {int(x) for w, r in ins if w == "EXPOSE" for x in r.split()}
    assert exposed == {port_of(env["VIGIL_LISTEN"]), port_of(env["VIGIL_ADMIN_LISTEN"])}, (exposed, env)
    health = next(r for w, r in ins if w == "HEALTHCHECK")
    assert f"/dev/tcp/127.0.0.1/{port_of(env['VIGIL_ADMIN_LISTEN'])}" in health, health
    assert "GET /healthz" in health, health

    # compose.yaml
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"seaweedfs", "bucket", "vigil"} <= set(services), services
    for name, svc in services.items():
        deps = svc.get("depends_on", [])
        assert set(deps) <= set(services), (name, deps)
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (REPO_ROOT / src).exists(), f"{name}: mounted file {src} missing"
            else:
                assert src in compose.get("volumes", {}), f"{name}: volume {src} not declared"
    vigil = services["vigil"]
    assert vigil["build"] == ".", vigil["build"]
    venv = {k: str(v) for k, v in vigil["environment"].items()}
    assert set(k for k in venv if k.startswith("VIGIL_")) <= known, venv
    published = {int(p.split(":")[1]) for p in vigil["ports"]}
    assert published == exposed, (published, exposed)
    # The bucket the one-shot creates is the one vigil uses, with the
    # credentials SeaweedFS is configured with.
    bucket = re.match(r"s3://([^/]+)/", venv["VIGIL_OBJECT_STORE"]).group(1)
    assert f"s3://{bucket}" in " ".join(services["bucket"]["command"]), services["bucket"]["command"]
    s3conf = json.loads((REPO_ROOT / "ops" / "seaweedfs" / "s3.json").read_text())
    keys = [(c["accessKey"], c["secretKey"]) for i in s3conf["identities"] for c in i["credentials"]]
    assert (venv["AWS_ACCESS_KEY_ID"], venv["AWS_SECRET_ACCESS_KEY"]) in keys, keys
    s3port = re.search(r"-s3\.port=(\d+)", " ".join(services["seaweedfs"]["command"]))
    assert f":{s3port.group(1) if s3port else 8333}" in venv["AWS_ENDPOINT_URL"], venv


def healthcheck(port: int) -> bytes:
    """The Dockerfile HEALTHCHECK's request, byte for byte."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        out = b""
        while chunk := s.recv(4096):
            out += chunk
    return out


def test_binary_runs_as_the_image_and_compose_run_it(seaweed, tmp_path):
    ins = instructions(DOCKERFILE)
    compose = yaml.safe_load(COMPOSE.read_text())
    env = {**image_env(ins), **{k: str(v) for k, v in compose["services"]["vigil"]["environment"].items()}}
    # Swapped for the test: addresses, the data dir, and the S3 endpoint and
    # credentials of the test's SeaweedFS (same variable names).
    kafka, admin = free_port(), free_port()
    s3 = seaweed.env()
    assert set(s3) <= set(env), f"the compose file lacks {set(s3) - set(env)}"
    prefix = env["VIGIL_OBJECT_STORE"].split("/", 3)[3]
    env.update(s3)
    env.update({
        "VIGIL_DATA_DIR": str(tmp_path / "data"),
        "VIGIL_LISTEN": f"127.0.0.1:{kafka}",
        "VIGIL_ADMIN_LISTEN": f"127.0.0.1:{admin}",
        "VIGIL_ADVERTISED_LISTENER": f"127.0.0.1:{kafka}",
        "VIGIL_OBJECT_STORE": seaweed.url(f"{prefix}-{tmp_path.name}"),
    })
    (tmp_path / "data").mkdir()
    cmd = exec_form(next(r for w, r in ins if w == "CMD"))
    log = open(tmp_path / "vigil.log", "wb")
    proc = subprocess.Popen([str(vigil_bin()), *cmd], env={"PATH": "/usr/bin:/bin", **env},
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        dl = Deadline(30, "the image's HEALTHCHECK passing")
        while True:
            assert proc.poll() is None, (tmp_path / "vigil.log").read_text()[-3000:]
            try:
                answer = healthcheck(admin)
                if b" 200 " in answer.split(b"\r\n")[0] and b"ok" in answer:
                    break
            except OSError:
                pass
            dl.check()
            time.sleep(0.1)  # paces the poll; the deadline bounds it
        topic = f"recipe-{tmp_path.name}"[:60]
        ck_create_topic(f"127.0.0.1:{kafka}", topic, 1)
        p = ck_producer(f"127.0.0.1:{kafka}")
        errors = []
        for i in range(20):
            p.produce(topic, value=f"v{i}".encode(), on_delivery=lambda e, m: errors.append(e) if e else None)
        assert p.flush(30) == 0 and not errors, errors
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
    lines = [x for x in (tmp_path / "vigil.log").read_text().splitlines() if x.strip()]
    assert lines, "no log lines"
    for line in lines:
        obj = json.loads(line)  # VIGIL_LOG_FORMAT=json from the image's ENV
        assert {"timestamp", "level"} <= set(obj), obj
