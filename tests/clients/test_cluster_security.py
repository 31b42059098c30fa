"""ACLs and SCRAM users shared by the brokers of a cluster (issue 13,
must-have 3: "ACLs live in the shared store and apply on every broker").

Two brokers on one object store and a real etcd, each with a
SASL_PLAINTEXT listener, --authorizer on and the same bootstrap super
user. A user created through broker A's AdminClient logs in on broker B;
an ACL granted through A lets the user produce and consume through B; the
ACL revoked through B denies the user on A. Each change must show on the
other broker within a bounded wait (a watch on the coordinator's metadata,
not a poll of the brokers' own state). The bootstrap super user is created
once for the cluster: a broker restarted with the same bootstrap password
does not overwrite a password changed since.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

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
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from conftest import Broker
from helpers import Deadline
from test_cluster import etcd  # noqa: F401  (a fixture)

MECH = "SCRAM-SHA-512"
ADMIN_PASSWORD = "cluster-bootstrap-secret"
ALICE_PASSWORD = "alice:cluster pa55"
TIMEOUT = 20
# A change made through one broker must apply on the other within this
# (the watch delivers it in milliseconds; the margin is for a loaded CI).
PROPAGATION_S = 10


def secure_node(tmp_path: Path, coordinator: str, objects: str, node_id: int, pw_file: Path) -> Broker:
    work = tmp_path / f"node{node_id}"
    work.mkdir(exist_ok=True)
    return Broker(work, name=f"vigil-{node_id}", object_store=objects, extra_args=[
        "--coordinator", coordinator,
        "--node-id", str(node_id),
        "--wal", "object",
        "--session-ttl-ms", "3000",
        "--upload-interval-ms", "60000",
        "--security-protocol", "SASL_PLAINTEXT",
        "--sasl-mechanisms", f"PLAIN,{MECH}",
        "--superuser", "admin",
        "--bootstrap-password-file", str(pw_file),
        "--authorizer", "on",
        "--max-failed-logins", "1000",
    ])


def conf(b: Broker, user: str, password: str, **extra) -> dict:
    return {"bootstrap.servers": b.bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": MECH, "sasl.username": user, "sasl.password": password,
            "socket.timeout.ms": 5000, **extra}


def logs_in(b: Broker, user: str, password: str) -> bool:
    """Whether `user` authenticates on `b` (a metadata request needs a
    finished SASL exchange)."""
    try:
        AdminClient(conf(b, user, password)).list_topics(timeout=4)
        return True
    except KafkaException:
        return False


def sees_topic(b: Broker, user: str, password: str, topic: str) -> bool:
    """Whether `topic` is in `user`'s metadata from `b` (hidden unless the
    user may describe it)."""
    md = AdminClient(conf(b, user, password)).list_topics(timeout=5)
    t = md.topics.get(topic)
    return t is not None and t.error is None


def wait_until(what: str, probe, seconds: float = PROPAGATION_S) -> float:
    """Calls probe() until it returns True; returns the seconds it took."""
    t0 = time.monotonic()
    dl = Deadline(seconds, what)
    while not probe():
        dl.check()
        time.sleep(0.05)
    return time.monotonic() - t0


def produce_error(b: Broker, user: str, password: str, topic: str) -> KafkaError | None:
    result: list = []
    p = Producer(conf(b, user, password, **{"message.timeout.ms": 15000}))
    p.produce(topic, value=b"x", on_delivery=lambda err, msg: result.append(err))
    p.flush(30)
    assert result, "no delivery report"
    return result[0]


def consume_one(b: Broker, user: str, password: str, topic: str, group: str) -> bytes:
    c = Consumer(conf(b, user, password, **{"group.id": group, "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    dl = Deadline(30, f"consuming {topic} through {b.name}")
    try:
        while True:
            dl.check()
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            return m.value()
    finally:
        c.close()


def grants(topic: str, group: str) -> list[AclBinding]:
    return [AclBinding(rtype, name, ResourcePatternType.LITERAL, "User:alice", "*", op,
                       AclPermissionType.ALLOW)
            for rtype, name, op in [(ResourceType.TOPIC, topic, AclOperation.WRITE),
                                    (ResourceType.TOPIC, topic, AclOperation.READ),
                                    (ResourceType.GROUP, group, AclOperation.READ)]]


def set_password(admin: AdminClient, user: str, password: str) -> None:
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
    for f in admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(user, info, password.encode())],
            request_timeout=TIMEOUT).values():
        assert f.result(TIMEOUT) is None


def test_users_and_acls_apply_across_brokers(tmp_path, etcd):  # noqa: F811
    coordinator = f"etcd://{etcd.endpoint}/vigil-{uuid.uuid4().hex[:8]}"
    (tmp_path / "objects").mkdir()
    objects = f"file://{tmp_path / 'objects'}"
    pw_file = tmp_path / "bootstrap-password"
    pw_file.write_text(ADMIN_PASSWORD + "\n")
    a = secure_node(tmp_path, coordinator, objects, 1, pw_file).start()
    b = secure_node(tmp_path, coordinator, objects, 2, pw_file).start()
    try:
        assert logs_in(a, "admin", ADMIN_PASSWORD) and logs_in(b, "admin", ADMIN_PASSWORD)
        admin_a = AdminClient(conf(a, "admin", ADMIN_PASSWORD))
        admin_b = AdminClient(conf(b, "admin", ADMIN_PASSWORD))
        topic, group = f"orders-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
        for f in admin_a.create_topics([NewTopic(topic, 2, 1)], request_timeout=TIMEOUT).values():
            f.result(TIMEOUT)

        # A user created through A logs in on B.
        assert not logs_in(b, "alice", ALICE_PASSWORD), "alice logs in before she exists"
        set_password(admin_a, "alice", ALICE_PASSWORD)
        took = wait_until("alice, created through A, logging in on B",
                          lambda: logs_in(b, "alice", ALICE_PASSWORD))
        print(f"user created on A -> login on B: {took:.2f} s")
        assert not logs_in(b, "alice", "wrong password")

        # An ACL granted through A lets alice produce and consume through B.
        err = produce_error(b, "alice", ALICE_PASSWORD, topic)
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
        for f in admin_a.create_acls(grants(topic, group), request_timeout=TIMEOUT).values():
            assert f.result(TIMEOUT) is None
        took = wait_until("the grant made through A applying on B",
                          lambda: sees_topic(b, "alice", ALICE_PASSWORD, topic))
        print(f"ACL granted on A -> visible on B: {took:.2f} s")
        assert produce_error(b, "alice", ALICE_PASSWORD, topic) is None
        assert consume_one(b, "alice", ALICE_PASSWORD, topic, group) == b"x"
        described = admin_b.describe_acls(
            AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:alice", None,
                             AclOperation.ANY, AclPermissionType.ANY),
            request_timeout=TIMEOUT).result(TIMEOUT)
        assert sorted(x.operation.name for x in described) == ["READ", "READ", "WRITE"], described

        # Revoked through B: denied on A.
        revoke = AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL,
                                  "User:alice", None, AclOperation.ANY, AclPermissionType.ANY)
        deleted = [x for f in admin_b.delete_acls([revoke], request_timeout=TIMEOUT).values()
                   for x in f.result(TIMEOUT)]
        assert len(deleted) == 2, deleted
        took = wait_until("the revoke made through B applying on A",
                          lambda: not sees_topic(a, "alice", ALICE_PASSWORD, topic))
        print(f"ACL revoked on B -> hidden on A: {took:.2f} s")
        err = produce_error(a, "alice", ALICE_PASSWORD, topic)
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err

        # The bootstrap super user is created once: after a password change
        # through A, B restarted with the same bootstrap password keeps it.
        new_password = "changed-admin-secret"
        set_password(admin_a, "admin", new_password)
        wait_until("the new admin password applying on B", lambda: logs_in(b, "admin", new_password))
        b.stop()
        b.start()
        assert logs_in(b, "admin", new_password)
        assert not logs_in(b, "admin", ADMIN_PASSWORD), "the restart restored the bootstrap password"
    finally:
        for x in (a, b):
            if x.alive():
                x.stop()
