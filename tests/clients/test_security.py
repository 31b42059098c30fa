"""Security (issue 13) with real clients: TLS listeners, SASL PLAIN and
SCRAM-SHA-256/512, mTLS, KIP-368 session lifetime, failed-login limiting,
and users managed with `vigil user` (AlterUserScramCredentials).

Certificates are made at run time with the openssl CLI (a CA, a broker
certificate for 127.0.0.1, a client certificate); no key is committed.
One broker per test, with a SASL_SSL, an SSL (mTLS) and a SASL_PLAINTEXT
listener beside the usual PLAINTEXT one."""

from __future__ import annotations

import json
import os
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from conftest import free_port, vigil_bin
from helpers import (
    Deadline,
    closed_or_response,
    frame,
    kstring,
    recv_frame,
    request_header,
    unique_name,
)

ADMIN_PASSWORD = "admin-bootstrap-secret"
ALICE_PASSWORD = "alice-pa55,word=with:odd chars"
CLIENT_SUBJECT = "CN=client-1,O=vigil-test"


# --------------------------------------------------------------- certificates

def _openssl(*args: str, cwd: Path) -> None:
    res = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=60)
    assert res.returncode == 0, f"openssl {' '.join(args)} failed: {res.stderr.decode()[-2000:]}"


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("certs")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=vigil-test-ca",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=d)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "server.ext", "-out", "server.pem", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/O=vigil-test/CN=client-1",
             "-keyout", "client.key", "-out", "client.csr", cwd=d)
    # Extensions make it an X.509 v3 certificate (webpki refuses v1).
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    _openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "client.ext", "-out", "client.pem", cwd=d)
    return {name: d / f"{name}" for name in
            ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


class Secure:
    """A broker with every listener kind, and the addresses of each."""

    def __init__(self, broker, ports: dict[str, int], certs: dict[str, Path]):
        self.broker = broker
        self.ports = ports
        self.certs = certs

    def addr(self, protocol: str) -> str:
        return f"127.0.0.1:{self.ports[protocol]}"

    def conf(self, protocol: str, mechanism: str | None = None, user: str | None = None,
             password: str | None = None, client_cert: bool = False) -> dict:
        c = {"bootstrap.servers": self.addr(protocol), "security.protocol": protocol}
        if "SSL" in protocol:
            c["ssl.ca.location"] = str(self.certs["ca.pem"])
        if client_cert:
            c["ssl.certificate.location"] = str(self.certs["client.pem"])
            c["ssl.key.location"] = str(self.certs["client.key"])
        if mechanism:
            c.update({"sasl.mechanisms": mechanism, "sasl.username": user, "sasl.password": password})
        return c

    def vigil_user(self, args: list[str], protocol: str = "SASL_SSL", user: str = "admin",
                   password: str = ADMIN_PASSWORD, new_password: str | None = None,
                   client_cert: bool = False, mechanism: str = "SCRAM-SHA-512") -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        env.update({"VIGIL_SASL_PASSWORD": password})
        if new_password is not None:
            env["VIGIL_USER_PASSWORD"] = new_password
        flags = ["--bootstrap", self.addr(protocol), "--security-protocol", protocol,
                 "--tls-ca", str(self.certs["ca.pem"])]
        if "SASL" in protocol:
            flags += ["--sasl-mechanism", mechanism, "--sasl-username", user]
        if client_cert:
            flags += ["--tls-cert", str(self.certs["client.pem"]), "--tls-key", str(self.certs["client.key"])]
        return subprocess.run([str(vigil_bin()), "user", *args, *flags], env=env, capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=30)


def start_secure(broker_factory, certs, extra: list[str] | None = None) -> Secure:
    ports = {}
    for p in ("SASL_SSL", "SSL", "SASL_PLAINTEXT"):
        port = free_port()
        while port in ports.values():
            port = free_port()
        ports[p] = port
    pw_dir = certs["ca.pem"].parent
    pw_file = pw_dir / f"bootstrap-{unique_name('pw')}"
    pw_file.write_text(ADMIN_PASSWORD + "\n")
    args = [
        "--listener", f"SASL_SSL://127.0.0.1:{ports['SASL_SSL']}",
        "--listener", f"SSL://127.0.0.1:{ports['SSL']}",
        "--listener", f"SASL_PLAINTEXT://127.0.0.1:{ports['SASL_PLAINTEXT']}",
        "--tls-cert", str(certs["server.pem"]), "--tls-key", str(certs["server.key"]),
        "--tls-client-ca", str(certs["ca.pem"]),
        "--sasl-mechanisms", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        "--superuser", "admin", "--superuser", CLIENT_SUBJECT,
        "--bootstrap-password-file", str(pw_file),
        *(extra or ["--max-failed-logins", "1000"]),
    ]
    b = broker_factory(args)
    return Secure(b, ports, certs)


def create_alice(s: Secure) -> None:
    res = s.vigil_user(["create", "alice"], new_password=ALICE_PASSWORD)
    assert res.returncode == 0, f"vigil user create failed: {res.stderr.decode()}"
    assert ALICE_PASSWORD.encode() not in res.stdout + res.stderr, "the password was echoed"


# ---------------------------------------------------------------- raw client

def sasl_handshake(sock: socket.socket, mechanism: str, corr: int = 1) -> tuple[int, list[str]]:
    sock.sendall(frame(request_header(17, 1, corr) + kstring(mechanism)))
    body = recv_frame(sock)
    got, err, n = struct.unpack_from(">ihi", body, 0)
    assert got == corr
    pos, mechs = 10, []
    for _ in range(n):
        (ln,) = struct.unpack_from(">h", body, pos)
        mechs.append(body[pos + 2:pos + 2 + ln].decode())
        pos += 2 + ln
    return err, mechs


def sasl_authenticate(sock: socket.socket, token: bytes, corr: int = 2) -> tuple[int, str | None, bytes, int]:
    """SaslAuthenticate v1: (error code, message, auth bytes, session lifetime ms)."""
    sock.sendall(frame(request_header(36, 1, corr) + struct.pack(">i", len(token)) + token))
    body = recv_frame(sock)
    got, err, mlen = struct.unpack_from(">ihh", body, 0)
    assert got == corr
    pos = 8
    msg = None
    if mlen >= 0:
        msg = body[pos:pos + mlen].decode()
        pos += mlen
    (blen,) = struct.unpack_from(">i", body, pos)
    auth = body[pos + 4:pos + 4 + max(blen, 0)]
    pos += 4 + max(blen, 0)
    (lifetime,) = struct.unpack_from(">q", body, pos)
    return err, msg, auth, lifetime


def metadata_v1(corr: int) -> bytes:
    return frame(request_header(3, 1, corr) + struct.pack(">i", -1))


def plain_login(addr: str, user: str, password: str) -> tuple[socket.socket, tuple]:
    host, port = addr.split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    err, mechs = sasl_handshake(sock, "PLAIN")
    assert err == 0, f"handshake error {err}, offered {mechs}"
    return sock, sasl_authenticate(sock, f"\0{user}\0{password}".encode())


# --------------------------------------------------------------------- tests

def consume_values(consumer, want: int, seconds: float = 30) -> list[bytes]:
    got: list[bytes] = []
    dl = Deadline(seconds, f"consuming {want} records")
    try:
        while len(got) < want:
            dl.check(f"{len(got)} so far")
            m = consumer.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            got.append(m.value())
    finally:
        consumer.close()
    return got


def auth_errors(conf: dict, seconds: float = 20) -> list[KafkaError]:
    """Errors a client reports while trying to list topics with `conf`."""
    errors: list[KafkaError] = []
    conf = dict(conf, error_cb=errors.append, **{"reconnect.backoff.ms": 200})
    admin = AdminClient(conf)
    dl = Deadline(seconds, "an error from the client")
    while not dl.expired() and not errors:
        try:
            admin.list_topics(timeout=1)
        except KafkaException as e:
            errors.append(e.args[0])
        admin.poll(0.1)
    return errors


def test_scram_and_plain_over_sasl_ssl_with_confluent_kafka(broker_factory, certs):
    s = start_secure(broker_factory, certs)
    create_alice(s)
    listed = s.vigil_user(["list", "-o", "json"])
    assert listed.returncode == 0, listed.stderr.decode()
    users = {u["user"]: {m["mechanism"] for m in u["mechanisms"]} for u in json.loads(listed.stdout)}
    assert users["alice"] == {"SCRAM-SHA-256", "SCRAM-SHA-512"}, users
    assert users["admin"] == {"SCRAM-SHA-256", "SCRAM-SHA-512"}, users

    topic = unique_name("sec")
    # Metadata over a listener advertises that listener.
    admin = AdminClient(s.conf("SASL_SSL", "SCRAM-SHA-512", "alice", ALICE_PASSWORD))
    md = admin.list_topics(timeout=20)
    assert [(b.host, b.port) for b in md.brokers.values()] == [("127.0.0.1", s.ports["SASL_SSL"])]

    p = Producer(s.conf("SASL_SSL", "SCRAM-SHA-512", "alice", ALICE_PASSWORD))
    for i in range(20):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i)
    assert p.flush(30) == 0

    # Read back with SCRAM-SHA-256 and with PLAIN (checked against the salted credential).
    from confluent_kafka import Consumer
    for mech in ("SCRAM-SHA-256", "PLAIN"):
        c = Consumer(dict(s.conf("SASL_SSL", mech, "alice", ALICE_PASSWORD),
                          **{"group.id": unique_name("g"), "auto.offset.reset": "earliest"}))
        c.subscribe([topic])
        got = consume_values(c, 20)
        assert sorted(got) == sorted(b"v%d" % i for i in range(20)), mech

    # Wrong password: an authentication error, for each mechanism.
    for mech in ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"):
        errs = auth_errors(s.conf("SASL_SSL", mech, "alice", "wrong-password"))
        assert any(e.code() == KafkaError._AUTHENTICATION for e in errs), (mech, errs)
    # Unknown user too.
    errs = auth_errors(s.conf("SASL_SSL", "SCRAM-SHA-512", "mallory", "x"))
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errs), errs
    assert "failed login" in s.broker.log_text()

    # The password is nowhere in the broker's data (credentials are salted).
    for path in s.broker.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert ALICE_PASSWORD.encode() not in data and ADMIN_PASSWORD.encode() not in data, path

    # Deleting the user locks it out.
    res = s.vigil_user(["delete", "alice"])
    assert res.returncode == 0, res.stderr.decode()
    errs = auth_errors(s.conf("SASL_SSL", "SCRAM-SHA-512", "alice", ALICE_PASSWORD))
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errs), errs


def test_no_access_without_credentials(broker_factory, certs):
    s = start_secure(broker_factory, certs)
    # TLS without SASL on a SASL_SSL listener: the broker closes on the first
    # non-SASL request, so the client never gets metadata.
    admin = AdminClient(dict(s.conf("SSL"), **{"bootstrap.servers": s.addr("SASL_SSL")}))
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    # Raw: ApiVersions is answered before authentication, Metadata closes.
    host, port = s.addr("SASL_PLAINTEXT").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(frame(request_header(18, 0, 1)))
        assert struct.unpack_from(">ih", recv_frame(sock), 0) == (1, 0)
        sock.sendall(metadata_v1(2))
        assert closed_or_response(sock) == "closed"
    # An unsupported mechanism is refused with the list of offered ones.
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        err, mechs = sasl_handshake(sock, "GSSAPI")
        assert err == 33 and set(mechs) == {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}, (err, mechs)
    # A non-super user may not manage users.
    create_alice(s)
    res = s.vigil_user(["list"], user="alice", password=ALICE_PASSWORD)
    assert res.returncode != 0 and b"error 31" in res.stderr, res.stderr.decode()
    # The plaintext listener still works as before (anonymous).
    md = AdminClient({"bootstrap.servers": s.broker.bootstrap}).list_topics(timeout=20)
    assert [(b.host, b.port) for b in md.brokers.values()] == [("127.0.0.1", s.broker.port)]


def test_mtls_principal_is_the_certificate_subject(broker_factory, certs):
    s = start_secure(broker_factory, certs)
    topic = unique_name("mtls")
    p = Producer(s.conf("SSL", client_cert=True))
    p.produce(topic, value=b"over-mtls")
    assert p.flush(30) == 0
    # The certificate's subject is a super user: it may list SCRAM users.
    res = s.vigil_user(["list", "-o", "json"], protocol="SSL", client_cert=True)
    assert res.returncode == 0, res.stderr.decode()
    assert "admin" in {u["user"] for u in json.loads(res.stdout)}
    # Without a client certificate the SSL listener refuses the handshake.
    errs = auth_errors(s.conf("SSL"), seconds=10)
    assert errs, "a client without a certificate got in"
    ctx = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    host, port = s.addr("SSL").split(":")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(frame(request_header(18, 0, 1)))
                recv_frame(tls)


def test_kcat_over_sasl_ssl(broker_factory, certs, kcat):
    s = start_secure(broker_factory, certs)
    create_alice(s)
    topic = unique_name("kcat-sec")

    def kargs(mech: str, password: str) -> list[str]:
        return ["-b", s.addr("SASL_SSL"), "-X", "security.protocol=SASL_SSL",
                "-X", f"ssl.ca.location={certs['ca.pem']}", "-X", f"sasl.mechanisms={mech}",
                "-X", "sasl.username=alice", "-X", f"sasl.password={password}"]

    for mech in ("SCRAM-SHA-512", "PLAIN"):
        res = kcat.run(["-P", "-t", topic, *kargs(mech, ALICE_PASSWORD)], input=f"{mech}-1\n{mech}-2\n".encode())
        assert res.returncode == 0, res.stderr.decode()[-3000:]
    res = kcat.run(["-C", "-t", topic, "-o", "beginning", "-e", "-c", "4", *kargs("SCRAM-SHA-512", ALICE_PASSWORD)],
                   timeout=60)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    assert sorted(res.stdout.decode().split()) == sorted(
        ["SCRAM-SHA-512-1", "SCRAM-SHA-512-2", "PLAIN-1", "PLAIN-2"])
    for mech in ("SCRAM-SHA-512", "PLAIN"):
        res = kcat.run(["-L", "-m", "5", *kargs(mech, "wrong")], timeout=30)
        assert res.returncode != 0, f"kcat -L with a wrong {mech} password succeeded"
        assert "uthentication" in res.stderr.decode(), res.stderr.decode()[-3000:]


def test_kafkajs_over_sasl_ssl(broker_factory, certs, node_driver, tmp_path):
    s = start_secure(broker_factory, certs)
    create_alice(s)
    topic = unique_name("js-sec")
    base = {"brokers": [s.addr("SASL_SSL")], "ssl": {"ca": str(certs["ca.pem"])}}
    alice = {"mechanism": "scram-sha-256", "username": "alice", "password": ALICE_PASSWORD}
    res = node_driver.run(dict(base, action="create-topic", topic=topic, partitions=1, sasl=alice), tmp_path)
    assert res["partitions"] == [0], res
    for mech in ("scram-sha-512", "plain"):
        res = node_driver.run(dict(base, action="produce", topic=topic, compression="none", idempotent=False,
                                   sasl={"mechanism": mech, "username": "alice", "password": ALICE_PASSWORD},
                                   records=[{"key": None, "value": "aGk=", "headers": []}]), tmp_path)
        assert len(res["results"]) == 1
    with pytest.raises(AssertionError) as e:
        node_driver.run(dict(base, action="produce", topic=topic, compression="none", idempotent=False,
                             sasl={"mechanism": "scram-sha-512", "username": "alice", "password": "wrong"},
                             records=[{"key": None, "value": "aGk=", "headers": []}]), tmp_path, timeout=60)
    assert "SASL" in str(e.value) and "uthentication" in str(e.value), str(e.value)[-3000:]


def test_session_lifetime_and_reauthentication(broker_factory, certs):
    s = start_secure(broker_factory, certs, ["--connections-max-reauth-ms", "1500",
                                             "--max-failed-logins", "1000"])
    create_alice(s)
    sock, (err, msg, _, lifetime) = plain_login(s.addr("SASL_PLAINTEXT"), "alice", ALICE_PASSWORD)
    with sock:
        assert (err, lifetime) == (0, 1500), (err, msg, lifetime)
        sock.sendall(metadata_v1(3))
        assert struct.unpack_from(">i", recv_frame(sock), 0) == (3,)
        # Past the lifetime, a request other than re-authentication closes
        # the connection (the wait is the behaviour under test).
        time.sleep(1.7)
        sock.sendall(metadata_v1(4))
        assert closed_or_response(sock) == "closed"
    # librdkafka re-authenticates by itself (KIP-368) and keeps producing.
    log_before = len(s.broker.log_text())
    topic = unique_name("reauth")
    p = Producer(s.conf("SASL_SSL", "SCRAM-SHA-512", "alice", ALICE_PASSWORD))
    # Five produces a second apart span more than three session lifetimes.
    for i in range(5):
        p.produce(topic, value=b"m%d" % i)
        assert p.flush(10) == 0, f"produce {i} failed across re-authentication"
        time.sleep(1.0)
    assert "SASL session expired" not in s.broker.log_text()[log_before:], "librdkafka did not re-authenticate"


def test_failed_logins_are_rate_limited_per_address(broker_factory, certs):
    s = start_secure(broker_factory, certs, ["--max-failed-logins", "3", "--failed-login-window-ms", "60000"])
    create_alice(s)
    for _ in range(3):
        sock, (err, _, _, _) = plain_login(s.addr("SASL_PLAINTEXT"), "alice", "wrong")
        sock.close()
        assert err == 58
    # Even the right password is refused now, from this address.
    sock, (err, msg, _, _) = plain_login(s.addr("SASL_PLAINTEXT"), "alice", ALICE_PASSWORD)
    sock.close()
    assert err == 58 and "too many failed logins" in (msg or ""), (err, msg)
    # Logged once for the burst, not once per attempt.
    assert s.broker.log_text().count("failed login") == 1, s.broker.log_text()[-4000:]


def http(url: str, method: str = "GET", auth: tuple[str, str] | None = None, body: bytes | None = None):
    import base64
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, method=method, data=body)
    if body is not None:
        req.add_header("content-type", "application/json")
    if auth:
        req.add_header("authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_admin_api_needs_credentials_and_metrics_has_its_own_listener(broker_factory, certs):
    metrics_port = free_port()
    s = start_secure(broker_factory, certs, ["--admin-auth", "true", "--metrics-listen",
                                             f"127.0.0.1:{metrics_port}", "--max-failed-logins", "1000"])
    create_alice(s)
    base = s.broker.admin_url
    # Probes stay open; everything else needs credentials.
    assert http(base + "/healthz")[0] == 200
    # The web console and the views it draws (the record browser shows
    # topic data) are behind the same login as the admin API.
    for path in ("/v1/deployments", "/metrics", "/openapi.json", "/console", "/console/app.js",
                 "/v1/overview", "/v1/topics", "/v1/topics/any/records"):
        status, headers, _ = http(base + path)
        assert status == 401, (path, status)
        assert "Basic" in headers.get("WWW-Authenticate", headers.get("www-authenticate", "")), headers
    assert http(base + "/v1/deployments", auth=("alice", "wrong"))[0] == 401
    assert http(base + "/v1/deployments", auth=("nobody", "x"))[0] == 401
    # Any user may read; only a super user may change things.
    assert http(base + "/v1/deployments", auth=("alice", ALICE_PASSWORD))[0] == 200
    for path in ("/console", "/v1/overview"):
        assert http(base + path, auth=("alice", ALICE_PASSWORD))[0] == 200, path
    status, _, body = http(base + "/v1/replays", "POST", ("alice", ALICE_PASSWORD), b"{}")
    assert status == 403, (status, body)
    status, _, body = http(base + "/v1/replays", "POST", ("admin", ADMIN_PASSWORD), b"{}")
    assert status == 400, (status, body)  # authorized; the empty spec is invalid
    # /metrics without credentials on its own listener, and nothing else there.
    status, _, page = http(f"http://127.0.0.1:{metrics_port}/metrics")
    assert status == 200 and b"vigil_" in page
    assert http(f"http://127.0.0.1:{metrics_port}/v1/deployments")[0] == 404
    assert "HTTP Basic (admin API)" in s.broker.log_text()
