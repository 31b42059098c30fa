"""The Kafka admin surface (issue 15, must-have 3), driven by real clients:
confluent-kafka's AdminClient, kafka-python's KafkaAdminClient (the client
that speaks DescribeLogDirs, DescribeProducers and OffsetDelete), kafkajs'
admin and kcat. Every answer is checked, and every change that should
survive a restart is checked again after one."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from helpers import (
    Deadline,
    ck_admin,
    ck_committed,
    ck_consumer,
    ck_create_topic,
    ck_producer,
    frame,
    parse_api_versions_v0,
    recv_frame,
    request_header,
    unique_name,
    wait_topic_ready,
)

TIMEOUT = 30

# Every API the broker serves, with its version range: ApiVersions must
# advertise exactly these (a served API missing from the list is never used
# by clients; a listed one without a handler breaks them).
SERVED = {
    0: (3, 11),   # Produce
    1: (4, 12),   # Fetch
    2: (1, 6),    # ListOffsets
    3: (0, 12),   # Metadata
    8: (2, 8),    # OffsetCommit
    9: (1, 8),    # OffsetFetch
    10: (0, 4),   # FindCoordinator
    11: (0, 9),   # JoinGroup
    12: (0, 4),   # Heartbeat
    13: (0, 5),   # LeaveGroup
    14: (0, 5),   # SyncGroup
    15: (0, 5),   # DescribeGroups
    16: (0, 4),   # ListGroups
    17: (1, 1),   # SaslHandshake
    18: (0, 4),   # ApiVersions
    19: (2, 7),   # CreateTopics
    20: (1, 6),   # DeleteTopics
    21: (0, 2),   # DeleteRecords
    22: (0, 4),   # InitProducerId
    23: (2, 4),   # OffsetForLeaderEpoch
    29: (1, 3),   # DescribeAcls
    30: (1, 3),   # CreateAcls
    31: (1, 3),   # DeleteAcls
    32: (1, 4),   # DescribeConfigs
    33: (0, 2),   # AlterConfigs
    35: (1, 4),   # DescribeLogDirs
    36: (0, 2),   # SaslAuthenticate
    37: (0, 3),   # CreatePartitions
    42: (0, 2),   # DeleteGroups
    43: (0, 2),   # ElectLeaders
    44: (0, 1),   # IncrementalAlterConfigs
    45: (0, 1),   # AlterPartitionReassignments
    46: (0, 0),   # ListPartitionReassignments
    47: (0, 0),   # OffsetDelete
    50: (0, 0),   # DescribeUserScramCredentials
    51: (0, 0),   # AlterUserScramCredentials
    60: (0, 1),   # DescribeCluster
    61: (0, 0),   # DescribeProducers
}


def kp_admin(broker):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000,
                            client_id="vigil-kafka-python-admin")


def topic_configs(admin, topic: str) -> dict[str, ConfigEntry]:
    res = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([res], request_timeout=TIMEOUT)[res].result(TIMEOUT)


def produce_n(bootstrap: str, topic: str, n: int, partition: int = 0, key=lambda i: b"k%d" % i) -> list[int]:
    p = ck_producer(bootstrap)
    offsets: list[int] = []
    errors = []

    def done(err, msg):
        if err is not None:
            errors.append(err)
        else:
            offsets.append(msg.offset())

    for i in range(n):
        p.produce(topic, key=key(i), value=b"v%d" % i, partition=partition, on_delivery=done)
    assert p.flush(TIMEOUT) == 0, "produce not acked in time"
    assert not errors, errors[:3]
    return sorted(offsets)


def low_high(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, int]:
    c = ck_consumer(bootstrap, unique_name("wm"))
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()


def test_api_versions_advertises_exactly_what_is_served(broker):
    with socket.create_connection((broker.host, broker.port), timeout=5) as s:
        s.sendall(frame(request_header(18, 0, 7)))
        corr, err, apis, _ = parse_api_versions_v0(recv_frame(s))
    assert (corr, err) == (7, 0)
    assert apis == SERVED


def test_create_topics_standard_configs_assignments_validate_only(broker):
    admin = ck_admin(broker.bootstrap)
    topic = unique_name("adm-create")
    configs = {
        "delete.retention.ms": "1000",
        "min.insync.replicas": "1",
        "segment.ms": "3600000",
        "message.timestamp.type": "CreateTime",
        "unclean.leader.election.enable": "false",
        "retention.ms": "86400000",
    }
    # Manual replica assignments: three partitions on "broker 1"; storage is
    # shared, so the broker accepts them and places the partitions itself.
    # (kafka-python here: confluent-kafka 2.16's binding refuses a
    # replica_assignment client-side; kafkajs sends one below too.)
    from kafka.admin import NewTopic as KNewTopic

    kp = kp_admin(broker)
    try:
        kp.create_topics([KNewTopic(topic, num_partitions=-1, replication_factor=-1,
                                    replica_assignments={0: [1], 1: [1], 2: [1]},
                                    topic_configs=configs)])
    finally:
        kp.close()
    wait_topic_ready(broker.bootstrap, topic, 3)
    described = topic_configs(admin, topic)
    for k, v in configs.items():
        assert described[k].value == v, (k, described[k])
    assert described["cleanup.policy"].value == "delete"

    # A truly unknown config name is refused with INVALID_CONFIG.
    bad = unique_name("adm-bad")
    futs = admin.create_topics([NewTopic(bad, 1, config={"retention.mss": "1"})], request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as e:
        futs[bad].result(TIMEOUT)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG, e.value
    # And so is an invalid value of a known one.
    futs = admin.create_topics([NewTopic(bad, 1, config={"retention.ms": "soon"})], request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as e:
        futs[bad].result(TIMEOUT)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG, e.value

    # validate_only checks and creates nothing.
    dry = unique_name("adm-dry")
    futs = admin.create_topics([NewTopic(dry, 2, config={"cleanup.policy": "compact"})],
                               validate_only=True, request_timeout=TIMEOUT)
    futs[dry].result(TIMEOUT)
    assert dry not in admin.list_topics(timeout=10).topics

    broker.restart()
    described = topic_configs(ck_admin(broker.bootstrap), topic)
    assert described["delete.retention.ms"].value == "1000", "configs lost in a restart"


def test_alter_configs_validated_persisted_effective(broker):
    admin = ck_admin(broker.bootstrap)
    topic = unique_name("adm-alter")
    ck_create_topic(broker.bootstrap, topic, 1, config={"retention.ms": "86400000"})
    res = ConfigResource(ResourceType.TOPIC, topic)

    # Incremental SET of max.message.bytes: a larger batch is then refused.
    res.add_incremental_config(ConfigEntry("max.message.bytes", "2000",
                                           incremental_operation=AlterConfigOpType.SET))
    admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res].result(TIMEOUT)
    errors = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 15000,
                  "message.max.bytes": 100000, "linger.ms": 0})
    p.produce(topic, value=b"x" * 5000, on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(20) == 0
    assert errors and errors[0] is not None and errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errors

    # validate_only changes nothing; an invalid value is refused; an unknown
    # name too.
    res2 = ConfigResource(ResourceType.TOPIC, topic)
    res2.add_incremental_config(ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET))
    admin.incremental_alter_configs([res2], validate_only=True, request_timeout=TIMEOUT)[res2].result(TIMEOUT)
    assert topic_configs(admin, topic)["retention.ms"].value == "86400000"
    for name, value in [("retention.ms", "never"), ("no.such.config", "1")]:
        r = ConfigResource(ResourceType.TOPIC, topic)
        r.add_incremental_config(ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET))
        with pytest.raises(KafkaException) as e:
            admin.incremental_alter_configs([r], request_timeout=TIMEOUT)[r].result(TIMEOUT)
        assert e.value.args[0].code() == KafkaError.INVALID_CONFIG, (name, e.value)

    # APPEND to a list config.
    r = ConfigResource(ResourceType.TOPIC, topic)
    r.add_incremental_config(ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND))
    admin.incremental_alter_configs([r], request_timeout=TIMEOUT)[r].result(TIMEOUT)
    assert topic_configs(admin, topic)["cleanup.policy"].value == "delete,compact"

    # Legacy AlterConfigs replaces the whole set: what is not named returns
    # to its default.
    full = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "7200000"})
    admin.alter_configs([full], request_timeout=TIMEOUT)[full].result(TIMEOUT)
    described = topic_configs(admin, topic)
    assert described["retention.ms"].value == "7200000"
    assert described["max.message.bytes"].is_default, described["max.message.bytes"]
    assert described["cleanup.policy"].value == "delete"

    # Broker configs are static: refused, not silently dropped.
    b = ConfigResource(ResourceType.BROKER, "0", set_config={"num.partitions": "3"})
    with pytest.raises(KafkaException):
        admin.alter_configs([b], request_timeout=TIMEOUT)[b].result(TIMEOUT)

    broker.restart()
    described = topic_configs(ck_admin(broker.bootstrap), topic)
    assert described["retention.ms"].value == "7200000", "altered config lost in a restart"


def test_delete_records_moves_log_start(broker, kcat):
    admin = ck_admin(broker.bootstrap)
    topic = unique_name("adm-delrec")
    ck_create_topic(broker.bootstrap, topic, 2)
    assert produce_n(broker.bootstrap, topic, 50) == list(range(50))
    produce_n(broker.bootstrap, topic, 5, partition=1)

    futs = admin.delete_records([TopicPartition(topic, 0, 20)], request_timeout=TIMEOUT)
    res = futs[TopicPartition(topic, 0, 20)].result(TIMEOUT)
    assert res.low_watermark == 20
    # Offset -1 means "up to the high watermark".
    res = admin.delete_records([TopicPartition(topic, 1, -1)], request_timeout=TIMEOUT)
    assert list(res.values())[0].result(TIMEOUT).low_watermark == 5
    # Beyond the high watermark: OFFSET_OUT_OF_RANGE.
    bad = admin.delete_records([TopicPartition(topic, 0, 500)], request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as e:
        list(bad.values())[0].result(TIMEOUT)
    assert e.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE, e.value

    earliest = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.earliest()}, request_timeout=TIMEOUT)
    assert list(earliest.values())[0].result(TIMEOUT).offset == 20
    assert low_high(broker.bootstrap, topic) == (20, 50)

    # kcat reading "from the beginning" starts at the new log start.
    out = kcat.run(["-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e",
                    "-f", "%o\\n"], timeout=60)
    assert out.returncode == 0, out.stderr
    assert [int(x) for x in out.stdout.split()] == list(range(20, 50))

    broker.restart()
    assert low_high(broker.bootstrap, topic) == (20, 50), "log start offset lost in a restart"
    assert low_high(broker.bootstrap, topic, 1) == (5, 5)


def test_delete_groups_and_offset_delete(broker):
    admin = ck_admin(broker.bootstrap)
    topic = unique_name("adm-groups")
    group, other = unique_name("g-del"), unique_name("g-offdel")
    ck_create_topic(broker.bootstrap, topic, 2)
    produce_n(broker.bootstrap, topic, 4, partition=0)
    produce_n(broker.bootstrap, topic, 4, partition=1)
    for g in (group, other):
        c = ck_consumer(broker.bootstrap, g)
        c.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        c.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 2)], asynchronous=False)
        c.close()

    # A group with a live member is not deleted.
    live = ck_consumer(broker.bootstrap, group)
    live.subscribe([topic])
    dl = Deadline(30, "live member assigned")
    while not live.assignment():
        live.poll(0.2)
        dl.check()
    fut = admin.delete_consumer_groups([group], request_timeout=TIMEOUT)[group]
    with pytest.raises(KafkaException) as e:
        fut.result(TIMEOUT)
    assert e.value.args[0].code() == KafkaError.NON_EMPTY_GROUP, e.value
    # ... and OffsetDelete refuses the topic its member is subscribed to.
    kp = kp_admin(broker)
    try:
        from kafka import TopicPartition as KTP
        from kafka.errors import GroupSubscribedToTopicError

        try:
            res = kp.delete_group_offsets(group, [KTP(topic, 0)])
        except GroupSubscribedToTopicError:
            res = {KTP(topic, 0): GroupSubscribedToTopicError}
        errs = [v for v in res.values()]
        assert len(errs) == 1 and "GroupSubscribedToTopic" in repr(errs[0]), res
        assert ck_committed(broker.bootstrap, group, topic, 2) == {0: 3, 1: 2}
        live.close()

        # OffsetDelete on an empty group deletes exactly the named partition.
        kp.delete_group_offsets(other, [KTP(topic, 0)])
        assert ck_committed(broker.bootstrap, other, topic, 2) == {0: -1001, 1: 2}
    finally:
        kp.close()

    dl = Deadline(30, "group empty after the member left")
    while True:
        fut = admin.delete_consumer_groups([group], request_timeout=TIMEOUT)[group]
        try:
            fut.result(TIMEOUT)
            break
        except KafkaException as ex:
            assert ex.args[0].code() == KafkaError.NON_EMPTY_GROUP, ex
            dl.check()
            time.sleep(0.2)
    listed = {g.group_id for g in admin.list_consumer_groups(request_timeout=TIMEOUT).result(TIMEOUT).valid}
    assert group not in listed and other in listed
    unknown = admin.delete_consumer_groups([unique_name("never")], request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as e:
        list(unknown.values())[0].result(TIMEOUT)
    assert e.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND, e.value

    broker.restart()
    assert ck_committed(broker.bootstrap, group, topic, 2) == {0: -1001, 1: -1001}, "deleted group came back"
    assert ck_committed(broker.bootstrap, other, topic, 2) == {0: -1001, 1: 2}


def test_describe_log_dirs_and_producers(broker):
    topic = unique_name("adm-describe")
    ck_create_topic(broker.bootstrap, topic, 2)
    produce_n(broker.bootstrap, topic, 30, partition=1)
    kp = kp_admin(broker)
    try:
        from kafka import TopicPartition as KTP

        dirs = kp.describe_log_dirs(topic_partitions={topic: [0, 1]})
        text = repr(dirs)
        assert topic in text, text
        sizes = {}
        for per_broker in dirs:
            for d in _items(per_broker, "results", "log_dirs"):
                for t in _items(d, "topics"):
                    if _field(t, "name", "topic") == topic:
                        for p in _items(t, "partitions"):
                            sizes[_field(p, "partition_index", "partition")] = _field(p, "partition_size", "size")
        assert sizes.get(0) == 0 and sizes.get(1, 0) > 30 * 4, sizes

        states = kp.describe_producers([KTP(topic, 1), KTP(topic, 0)])
        by_partition = {tp.partition: s for tp, s in states.items()}
        active = _items(by_partition[1], "active_producers")
        assert len(active) == 1, by_partition[1]
        assert _field(active[0], "last_sequence") == 29
        assert _field(active[0], "producer_id") >= 0
        assert _items(by_partition[0], "active_producers") == []
    finally:
        kp.close()


def _field(obj, *names):
    for n in names:
        if isinstance(obj, dict) and n in obj:
            return obj[n]
        if hasattr(obj, n):
            return getattr(obj, n)
    raise AssertionError(f"none of {names} in {obj!r}")


def _items(obj, *names):
    return list(_field(obj, *names))


def test_compacted_topic_refuses_keyless_records(broker, kcat):
    topic = unique_name("adm-compact")
    ck_create_topic(broker.bootstrap, topic, 1, config={"cleanup.policy": "compact"})
    results = []
    # Not idempotent: a refused batch would leave a sequence gap behind.
    p = ck_producer(broker.bootstrap, **{"enable.idempotence": False, "acks": "1"})
    p.produce(topic, key=b"a", value=b"1", on_delivery=lambda err, msg: results.append(("keyed", err)))
    assert p.flush(TIMEOUT) == 0
    p.produce(topic, key=None, value=b"2", on_delivery=lambda err, msg: results.append(("keyless", err)))
    assert p.flush(TIMEOUT) == 0
    assert results[0] == ("keyed", None), results
    assert results[1][0] == "keyless" and results[1][1] is not None, results
    assert results[1][1].code() == KafkaError.INVALID_RECORD, results[1][1]

    # kcat: a keyless produce fails, a keyed one lands.
    out = kcat.run(["-b", broker.bootstrap, "-P", "-t", topic, "-p", "0"], input=b"nokey\n", timeout=60)
    assert out.returncode != 0 or b"INVALID_RECORD" in out.stderr or b"Invalid record" in out.stderr, out
    out = kcat.run(["-b", broker.bootstrap, "-P", "-t", topic, "-p", "0", "-K:"], input=b"k:v\n", timeout=60)
    assert out.returncode == 0, out.stderr
    assert low_high(broker.bootstrap, topic) == (0, 2)


def test_static_member_restart_does_not_rebalance(broker):
    topic = unique_name("adm-static")
    group = unique_name("g-static")
    ck_create_topic(broker.bootstrap, topic, 4)
    revoked = {"a": 0, "b": 0}

    def member(name: str):
        c = ck_consumer(broker.bootstrap, group, **{"group.instance.id": f"static-{name}",
                                                     "session.timeout.ms": 30000})
        c.subscribe([topic], on_revoke=lambda c, parts, n=name: revoked.__setitem__(n, revoked[n] + 1))
        return c

    a, b = member("a"), member("b")
    dl = Deadline(60, "both static members assigned two partitions each")
    while not (len(a.assignment()) == 2 and len(b.assignment()) == 2):
        a.poll(0.1)
        b.poll(0.1)
        dl.check(f"a={a.assignment()} b={b.assignment()}")
    # Restart each in turn, so that the group's leader is among them: no
    # restart may rebalance the other member.
    members = {"a": a, "b": b}
    for name, other in (("a", "b"), ("b", "a")):
        before = sorted(tp.partition for tp in members[name].assignment())
        revoked_other = revoked[other]
        # A static member's close() does not leave the group (KIP-345): its
        # partitions wait for it for a session timeout.
        members[name].close()
        members[name] = member(name)
        dl = Deadline(30, f"restarted static member {name} gets its partitions back")
        while sorted(tp.partition for tp in members[name].assignment()) != before:
            members[name].poll(0.1)
            members[other].poll(0.1)
            dl.check(f"{name}={members[name].assignment()}")
        # Give a rebalance the time it would take to reach the other member
        # (several heartbeat intervals), polling all along: none may come.
        settle = Deadline(3, "")
        while not settle.expired():
            members[name].poll(0.1)
            members[other].poll(0.1)
        assert revoked[other] == revoked_other, f"restarting {name} rebalanced {other}"
        assert len(members[other].assignment()) == 2
    for c in members.values():
        c.close()


def test_kafkajs_admin(broker, node_driver, tmp_path):
    from conftest import NodeDriver

    driver = NodeDriver(node_driver.node, Path(node_driver.script).parent / "kafkajs_admin.js")
    topic = unique_name("adm-js")
    group = unique_name("g-js")
    out = driver.run({"action": "admin-scenario", "brokers": [broker.bootstrap], "topic": topic,
                      "group": group, "nodeId": 0}, tmp_path, timeout=120)
    assert out["create"] == {"ok": True}, out["create"]
    assert out["partitions"] == [0, 1]
    assert out["createUnknownConfig"].get("error") == "INVALID_CONFIG", out["createUnknownConfig"]
    assert "ok" in out["createValidateOnly"], out["createValidateOnly"]
    assert topic + "-dry" not in out["topicsAfter"] and topic in out["topicsAfter"]
    assert "ok" in out["alter"], out["alter"]
    assert out["alterInvalid"].get("error") == "INVALID_CONFIG", out["alterInvalid"]
    # AlterConfigs replaced the set: delete.retention.ms is back to its default.
    assert out["described"] == {"retention.ms": "3600000", "delete.retention.ms": "86400000"}
    assert "error" not in out["deleteRecords"], out["deleteRecords"]  # resolves to undefined
    low = {o["partition"]: (int(o["low"]), int(o["high"])) for o in out["offsets"]}
    assert low[0] == (4, 10), out["offsets"]
    before = {p["partition"]: p["offset"] for t in out["committedBefore"] for p in t["partitions"]}
    assert before[0] == "7", out["committedBefore"]
    assert "ok" in out["deleteGroups"], out["deleteGroups"]
    assert out["deleteUnknownGroup"].get("error"), out["deleteUnknownGroup"]
    after = {p["partition"]: p["offset"] for t in out["committedAfter"] for p in t["partitions"]}
    assert after[0] == "-1", out["committedAfter"]
    assert "error" not in out["reassignSelf"], out["reassignSelf"]  # resolves to undefined
    assert out["reassignUnknown"].get("error") == "INVALID_REPLICA_ASSIGNMENT", out["reassignUnknown"]
    assert out["reassignments"].get("ok", {}).get("topics") == [], out["reassignments"]


def test_elect_leaders_is_never_needed(broker):
    """ElectLeaders: each partition's only replica is its leader."""
    from confluent_kafka import ElectionType, KafkaException, TopicPartition

    topic = unique_name("elect")
    ck_create_topic(broker.bootstrap, topic, partitions=2)
    admin = ck_admin(broker.bootstrap)
    fut = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, 0), TopicPartition(topic, 1)])
    try:
        result = fut.result(timeout=30)
    except KafkaException as e:
        raise AssertionError(f"elect_leaders failed as a whole: {e}")
    codes = {tp.partition: (err.code() if err else 0) for tp, err in result.items()}
    # 84 = ELECTION_NOT_NEEDED
    assert codes == {0: 84, 1: 84}, result

