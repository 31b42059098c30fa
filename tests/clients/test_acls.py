"""Kafka ACLs (issue 13, must-have 3) with real clients: confluent-kafka's
AdminClient create_acls / describe_acls / delete_acls over SASL_SSL with
SCRAM, and their effect on produce, consume, groups and metadata for a
non-super user: granted then revoked, prefixed patterns, deny beats
allow; kcat for one denied case. The broker runs with --authorizer on and
the same listeners and certificates as test_security.py."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from helpers import Deadline, unique_name
from test_security import (  # noqa: F401  (certs is a fixture)
    ADMIN_PASSWORD,
    ALICE_PASSWORD,
    certs,
    create_alice,
    start_secure,
)

TIMEOUT = 20
MECH = "SCRAM-SHA-512"


def secure_with_acls(broker_factory, certs):
    s = start_secure(broker_factory, certs, extra=["--authorizer", "on", "--max-failed-logins", "1000"])
    create_alice(s)
    return s


def admin_as(s, user: str, password: str) -> AdminClient:
    return AdminClient(s.conf("SASL_SSL", MECH, user, password))


def alice_conf(s, **extra) -> dict:
    return dict(s.conf("SASL_SSL", MECH, "alice", ALICE_PASSWORD), **extra)


def create_acls(admin: AdminClient, bindings: list[AclBinding]) -> None:
    for b, f in admin.create_acls(bindings, request_timeout=TIMEOUT).items():
        assert f.result(TIMEOUT) is None, b


def delete_acls(admin: AdminClient, filters: list[AclBindingFilter]) -> list[AclBinding]:
    out = []
    for _, f in admin.delete_acls(filters, request_timeout=TIMEOUT).items():
        out.extend(f.result(TIMEOUT))
    return out


def allow(rtype, name, op, pattern=ResourcePatternType.LITERAL, principal="User:alice",
          perm=AclPermissionType.ALLOW) -> AclBinding:
    return AclBinding(rtype, name, pattern, principal, "*", op, perm)


def produce_error(s, topic: str) -> KafkaError | None:
    """The delivery error of one record produced by alice (None: delivered)."""
    result: list = []
    p = Producer(alice_conf(s, **{"message.timeout.ms": 15000}))
    p.produce(topic, value=b"x", on_delivery=lambda err, msg: result.append(err))
    p.flush(30)
    assert result, "no delivery report"
    return result[0]


def consume_error_or_values(s, topic: str, group: str, want: int, seconds: float = 25):
    """(first error, values) of alice consuming `topic` in `group`: stops at
    the first error, or when `want` values arrived."""
    c = Consumer(alice_conf(s, **{"group.id": group, "auto.offset.reset": "earliest",
                                  "session.timeout.ms": 6000}))
    c.subscribe([topic])
    values: list[bytes] = []
    dl = Deadline(seconds, f"consuming {topic} as alice in {group}")
    try:
        while len(values) < want:
            dl.check(f"{len(values)} values, no error")
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                return m.error(), values
            values.append(m.value())
    finally:
        c.close()
    return None, values


def wait_for(what: str, probe, seconds: float = 20):
    """probe() until it returns truthy (ACL changes apply at once on one
    broker; clients may still hold cached metadata for a moment)."""
    dl = Deadline(seconds, what)
    while True:
        got = probe()
        if got:
            return got
        dl.check(what)


def test_grant_revoke_prefixed_and_deny(broker_factory, certs):
    s = secure_with_acls(broker_factory, certs)
    admin = admin_as(s, "admin", ADMIN_PASSWORD)
    topic = unique_name("acl-orders")
    for f in admin.create_topics([NewTopic(topic, 1, 1)], request_timeout=TIMEOUT).values():
        f.result(TIMEOUT)

    # Without ACLs alice sees nothing, may not write or manage ACLs.
    alice_admin = admin_as(s, "alice", ALICE_PASSWORD)
    assert topic not in alice_admin.list_topics(timeout=TIMEOUT).topics
    err = produce_error(s, topic)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    for f in alice_admin.create_acls([allow(ResourceType.TOPIC, topic, AclOperation.ALL)],
                                     request_timeout=TIMEOUT).values():
        with pytest.raises(KafkaException) as e:
            f.result(TIMEOUT)
        assert e.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED, e.value

    # Grant WRITE: produce works, and WRITE implies DESCRIBE (metadata shows it).
    write = allow(ResourceType.TOPIC, topic, AclOperation.WRITE)
    create_acls(admin, [write])
    assert wait_for("alice's produce after the grant", lambda: produce_error(s, topic) is None)
    assert topic in alice_admin.list_topics(timeout=TIMEOUT).topics

    # Consuming needs READ on the topic and on the group: a prefixed group ACL.
    group = unique_name("alice-g")
    err, _ = consume_error_or_values(s, topic, group, 1)
    assert err is not None and err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, err
    create_acls(admin, [allow(ResourceType.GROUP, "alice-g", AclOperation.READ, ResourcePatternType.PREFIXED)])
    err, _ = consume_error_or_values(s, topic, group, 1)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    read = allow(ResourceType.TOPIC, topic, AclOperation.READ)
    create_acls(admin, [read])
    err, values = consume_error_or_values(s, topic, unique_name("alice-g"), 1)
    assert err is None and values == [b"x"], (err, values)

    # describe_acls shows what was granted (MATCH: literal and prefixed).
    found = admin.describe_acls(AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:alice",
                                                 None, AclOperation.ANY, AclPermissionType.ANY)).result(TIMEOUT)
    assert {(b.restype, b.name, b.resource_pattern_type, b.operation) for b in found} == {
        (ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, AclOperation.WRITE),
        (ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, AclOperation.READ),
        (ResourceType.GROUP, "alice-g", ResourcePatternType.PREFIXED, AclOperation.READ),
    }, found
    matched = admin.describe_acls(AclBindingFilter(ResourceType.GROUP, group, ResourcePatternType.MATCH, None,
                                                   None, AclOperation.ANY, AclPermissionType.ANY)).result(TIMEOUT)
    assert [(b.name, b.resource_pattern_type) for b in matched] == [("alice-g", ResourcePatternType.PREFIXED)]

    # alice may not see them: CLUSTER_AUTHORIZATION_FAILED (librdkafka 2.16
    # reports DescribeAcls' top-level error as an empty result).
    try:
        seen = alice_admin.describe_acls(AclBindingFilter(
            ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
            AclPermissionType.ANY)).result(TIMEOUT)
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED, e
        seen = []
    assert seen == [], seen

    # Revoke WRITE: produce is refused again.
    gone = delete_acls(admin, [AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL,
                                                "User:alice", "*", AclOperation.WRITE, AclPermissionType.ALLOW)])
    assert len(gone) == 1 and gone[0].operation == AclOperation.WRITE, gone
    err = produce_error(s, topic)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err

    # Deny beats allow: a DENY READ on a prefix of the topic.
    create_acls(admin, [allow(ResourceType.TOPIC, "acl-", AclOperation.READ, ResourcePatternType.PREFIXED,
                              perm=AclPermissionType.DENY)])
    err, _ = consume_error_or_values(s, topic, unique_name("alice-g"), 1)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err

    # Prefixed topic ACLs: ALL on "alice." lets alice create topics there only.
    create_acls(admin, [allow(ResourceType.TOPIC, "alice.", AclOperation.ALL, ResourcePatternType.PREFIXED)])
    mine, other = unique_name("alice.t"), unique_name("bob.t")
    fs = alice_admin.create_topics([NewTopic(mine, 1, 1), NewTopic(other, 1, 1)], request_timeout=TIMEOUT)
    fs[mine].result(TIMEOUT)
    with pytest.raises(KafkaException) as e:
        fs[other].result(TIMEOUT)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, e.value
    listed = alice_admin.list_topics(timeout=TIMEOUT).topics
    # The READ allow still implies DESCRIBE: a deny of READ does not deny it.
    assert mine in listed and other not in listed and topic in listed

    # Deleting needs DELETE: granted on "alice." (ALL), not on the orders topic.
    fs = alice_admin.delete_topics([mine, topic], request_timeout=TIMEOUT)
    fs[mine].result(TIMEOUT)
    with pytest.raises(KafkaException) as e:
        fs[topic].result(TIMEOUT)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, e.value
    assert topic in admin.list_topics(timeout=TIMEOUT).topics

    # Denials are counted for Prometheus.
    metrics = urllib.request.urlopen(f"{s.broker.admin_url}/metrics", timeout=10).read().decode()
    denied = [line for line in metrics.splitlines()
              if line.startswith("vigil_authorization_denied_total{") and 'resource_type="TOPIC"' in line]
    assert denied and any(float(line.rsplit(" ", 1)[1]) > 0 for line in denied), denied
    assert "authorization denied" in s.broker.log_text()


def test_plaintext_anonymous_and_kcat_denied(broker_factory, certs, kcat):
    s = secure_with_acls(broker_factory, certs)
    topic = unique_name("acl-kcat")
    admin = admin_as(s, "admin", ADMIN_PASSWORD)
    for f in admin.create_topics([NewTopic(topic, 1, 1)], request_timeout=TIMEOUT).values():
        f.result(TIMEOUT)
    kargs = ["-b", s.addr("SASL_SSL"), "-X", "security.protocol=SASL_SSL",
             "-X", f"ssl.ca.location={certs['ca.pem']}", "-X", f"sasl.mechanisms={MECH}",
             "-X", "sasl.username=alice", "-X", f"sasl.password={ALICE_PASSWORD}"]
    res = kcat.run(["-P", "-t", topic, *kargs], input=b"denied\n")
    out = res.stderr.decode()
    assert res.returncode != 0 and "authorization failed" in out.lower(), out[-3000:]

    # The plaintext listener's clients are User:ANONYMOUS: nothing without a grant.
    p = Producer({"bootstrap.servers": s.broker.bootstrap, "message.timeout.ms": 10000})
    errs: list = []
    p.produce(topic, value=b"anon", on_delivery=lambda err, msg: errs.append(err))
    p.flush(20)
    assert errs and errs[0] is not None and errs[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errs
    create_acls(admin, [allow(ResourceType.TOPIC, "*", AclOperation.WRITE, principal="User:ANONYMOUS")])
    # A new producer: the old one remembers the topic as unauthorized.
    p = Producer({"bootstrap.servers": s.broker.bootstrap, "message.timeout.ms": 10000})
    errs.clear()
    p.produce(topic, value=b"anon", on_delivery=lambda err, msg: errs.append(err))
    p.flush(20)
    assert errs == [None], errs
    # kcat as alice (no grant) is still refused: the wildcard was for ANONYMOUS.
    res = kcat.run(["-P", "-t", topic, *kargs], input=b"denied\n")
    assert res.returncode != 0, res.stderr.decode()[-2000:]


def test_acl_apis_without_authorizer_are_security_disabled(broker_factory):
    b = broker_factory([])
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    fs = admin.create_acls([allow(ResourceType.TOPIC, "t", AclOperation.READ)], request_timeout=TIMEOUT)
    for f in fs.values():
        with pytest.raises(KafkaException) as e:
            f.result(TIMEOUT)
        assert e.value.args[0].code() == KafkaError.SECURITY_DISABLED, e.value


def test_detectors_run_as_the_deploying_user(broker_factory, certs):
    from detectors import wasm_bytes
    from test_security import http

    s = start_secure(broker_factory, certs, extra=["--authorizer", "on", "--admin-auth", "true",
                                                   "--max-failed-logins", "1000"])
    create_alice(s)
    base = s.broker.admin_url
    admin = admin_as(s, "admin", ADMIN_PASSWORD)
    tin, tout, other = unique_name("det-in"), unique_name("det-out"), unique_name("det-other")
    for f in admin.create_topics([NewTopic(t, 1, 1) for t in (tin, tout, other)],
                                 request_timeout=TIMEOUT).values():
        f.result(TIMEOUT)

    import base64
    import json
    import urllib.request

    req = urllib.request.Request(base + "/v1/modules", method="POST",
                                 data=wasm_bytes("vigil_plugin_threshold_rules"),
                                 headers={"content-type": "application/wasm", "authorization": "Basic "
                                          + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()})
    with urllib.request.urlopen(req, timeout=60) as r:
        module = json.loads(r.read())["hash"]
    spec = {"name": unique_name("alice-det"), "module": module, "inputs": [tin], "output": tout,
            "config": {"rules": [{"name": "big", "field": "amount", "op": ">", "value": 50, "severity": "high"}]},
            "value_schema": {"amount": "float64"}, "start": "earliest",
            "principal": "User:admin"}  # ignored: the broker sets it
    body = json.dumps(spec).encode()
    alice = ("alice", ALICE_PASSWORD)

    # Without READ on the input: refused, naming the topic and the operation.
    status, _, err = http(base + "/v1/deployments", "POST", alice, body)
    assert status == 403 and b"READ" in err and tin.encode() in err, (status, err)
    # READ but no WRITE on the alert topic: refused too.
    create_acls(admin, [allow(ResourceType.TOPIC, tin, AclOperation.READ)])
    status, _, err = http(base + "/v1/deployments", "POST", alice, body)
    assert status == 403 and b"WRITE" in err and tout.encode() in err, (status, err)
    # Replays likewise: no READ on `other`.
    replay = json.dumps({"module": module, "topic": other, "output": tout,
                         "config": spec["config"], "value_schema": spec["value_schema"]}).encode()
    status, _, err = http(base + "/v1/replays", "POST", alice, replay)
    assert status == 403 and other.encode() in err, (status, err)

    create_acls(admin, [allow(ResourceType.TOPIC, tout, AclOperation.WRITE)])
    status, _, out = http(base + "/v1/deployments", "POST", alice, body)
    assert status == 201, (status, out)
    status, _, out = http(base + f"/v1/deployments/{spec['name']}", auth=alice)
    assert status == 200, (status, out)

    p = Producer(s.conf("SASL_SSL", MECH, "admin", ADMIN_PASSWORD))
    for amount in (10, 100, 20, 200):
        p.produce(tin, value=json.dumps({"amount": amount}).encode())
    assert p.flush(30) == 0
    c = Consumer(dict(s.conf("SASL_SSL", MECH, "admin", ADMIN_PASSWORD),
                      **{"group.id": unique_name("g"), "auto.offset.reset": "earliest"}))
    c.subscribe([tout])
    alerts = []
    dl = Deadline(60, "two alerts from alice's deployment")
    try:
        while len(alerts) < 2:
            dl.check(f"{len(alerts)} alerts")
            m = c.poll(0.5)
            if m is None or m.error() is not None:
                continue
            alerts.append(dict((k, v.decode()) for k, v in (m.headers() or [])))
    finally:
        c.close()
    assert all(h.get("vigil.principal") == "User:alice" for h in alerts), alerts

    # Revoking READ on the input stops the running deployment, with a status
    # error naming principal, operation and topic (must-have 4).
    name = spec["name"]
    delete_acls(admin, [AclBindingFilter(ResourceType.TOPIC, tin, ResourcePatternType.LITERAL, "User:alice",
                                         "*", AclOperation.READ, AclPermissionType.ALLOW)])
    dl = Deadline(30, "the deployment fails after READ is revoked")
    while True:
        status, _, out = http(base + f"/v1/deployments/{name}", auth=alice)
        got = json.loads(out)
        if got["state"] == "failed":
            break
        dl.check(str(got["state"]))
        time.sleep(0.2)
    assert "User:alice may no longer READ" in got["error"] and tin in got["error"], got
    # Granted again, a super user's resume restarts it.
    create_acls(admin, [allow(ResourceType.TOPIC, tin, AclOperation.READ)])
    admin_auth = ("admin", ADMIN_PASSWORD)
    status, _, out = http(base + f"/v1/deployments/{name}/resume", "POST", admin_auth, b"")
    assert status == 200 and json.loads(out)["state"] == "running", (status, out)
