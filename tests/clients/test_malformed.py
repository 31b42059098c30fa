"""Malformed input on raw sockets. After each case the broker process is still
alive and a real client can produce and consume on a fresh connection."""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest
from confluent_kafka import Producer, TopicPartition

from helpers import (
    Deadline,
    ck_consumer,
    ck_create_topic,
    closed_or_response,
    compact_string,
    frame,
    parse_api_versions_v0,
    recv_frame,
    request_header,
    unique_name,
    wait_closed,
)

API_VERSIONS = 18
UNSUPPORTED_VERSION = 35


def connect(broker) -> socket.socket:
    s = socket.create_connection((broker.host, broker.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def assert_serves(broker, topic: str) -> None:
    """Process alive; produce one record and read it back on fresh connections."""
    assert broker.alive(), f"broker died\n{broker.log_tail()}"
    value = os.urandom(16) + b"\xff\xfe"
    got = {}

    def on_delivery(err, msg):
        got["err"], got["offset"] = err, msg.offset()

    p = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 15000, "socket.timeout.ms": 10000})
    p.produce(topic, value=value, partition=0, on_delivery=on_delivery)
    assert p.flush(20) == 0, "produce not acked within 20s"
    assert got.get("err") is None, f"produce failed: {got}"
    c = ck_consumer(broker.bootstrap, unique_name("g"))
    try:
        c.assign([TopicPartition(topic, 0, got["offset"])])
        dl = Deadline(20, "consuming the record just produced")
        while True:
            m = c.poll(0.5)
            if m is not None:
                assert m.error() is None, m.error()
                assert (m.offset(), m.value()) == (got["offset"], value)
                break
            dl.check()
    finally:
        c.close()
    assert broker.alive(), f"broker died\n{broker.log_tail()}"


def api_versions_v0_request(corr: int) -> bytes:
    return frame(request_header(API_VERSIONS, 0, corr))


# ---------------------------------------------------------------- cases ----

def case_huge_length(broker):
    s = connect(broker)
    s.sendall(struct.pack(">i", 0x7FFFFFFF) + request_header(API_VERSIONS, 0, 1) + b"\x00" * 64)
    wait_closed(s, 5)  # must reject the frame, not wait for 2 GiB
    s.close()


def case_negative_length(broker):
    s = connect(broker)
    s.sendall(struct.pack(">i", -42) + b"\x00" * 16)
    wait_closed(s, 5)
    s.close()


def case_truncated_then_close(broker):
    s = connect(broker)
    s.sendall(struct.pack(">i", 100) + request_header(API_VERSIONS, 0, 7)[:6])
    s.close()


def case_truncated_kept_open(broker):
    """A half-sent frame on one connection must not block other connections."""
    s = connect(broker)
    s.sendall(struct.pack(">i", 100) + request_header(API_VERSIONS, 0, 7)[:6])
    return s  # assert_serves runs while this stays open


def case_unknown_api_key(broker):
    s = connect(broker)
    s.sendall(frame(request_header(9999, 0, 4242) + b"\x00\x00\x00\x00"))
    closed_or_response(s, 5)  # Kafka closes the connection; an error response is fine too
    s.close()


def case_garbage_frame(broker):
    s = connect(broker)
    s.sendall(frame(b"\x13\x37" + os.urandom(30)))
    closed_or_response(s, 5)
    s.close()


def case_garbage_unframed(broker):
    s = connect(broker)
    s.sendall(b"\xde\xad\xbe\xef" + os.urandom(60))  # length 0xdeadbeef < 0
    wait_closed(s, 5)
    s.close()


def case_http_request(broker):
    s = connect(broker)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # "GET " = length 1195725856
    wait_closed(s, 5)
    s.close()


def case_zero_length(broker):
    s = connect(broker)
    s.sendall(struct.pack(">i", 0))
    closed_or_response(s, 5)
    s.close()


def case_bad_body_metadata(broker):
    s = connect(broker)
    # Metadata v12 (flexible header v2) with a body that is not a valid Metadata request
    s.sendall(frame(request_header(3, 12, 99, flexible=True) + b"\xff\xff\xff\xff\x05"))
    closed_or_response(s, 5)
    s.close()


def case_api_versions_v99(broker):
    """KIP-511: an ApiVersions request with a version the broker doesn't know
    gets an ApiVersions *v0-format* response with UNSUPPORTED_VERSION (35) that
    lists the supported ApiVersions range, so the client can retry."""
    s = connect(broker)
    body = compact_string("vigil-raw") + compact_string("1.0") + b"\x00"
    s.sendall(frame(request_header(API_VERSIONS, 99, 777, flexible=True) + body))
    s.settimeout(5)
    resp = recv_frame(s)
    corr, err, apis, trailing = parse_api_versions_v0(resp)
    assert corr == 777
    assert err == UNSUPPORTED_VERSION, f"error_code {err}, expected 35 UNSUPPORTED_VERSION"
    assert API_VERSIONS in apis, f"ApiVersions not listed: {apis}"
    lo, hi = apis[API_VERSIONS]
    assert lo == 0 and hi >= 3, f"ApiVersions range {lo}..{hi}"
    assert trailing == b"", f"{len(trailing)} trailing bytes: not a v0-format response"
    # The connection is still usable: a v0 request now works.
    s.sendall(api_versions_v0_request(778))
    corr, err, apis, trailing = parse_api_versions_v0(recv_frame(s))
    assert (corr, err) == (778, 0)
    s.close()


CASES = {
    "huge_length": case_huge_length,
    "negative_length": case_negative_length,
    "truncated_then_close": case_truncated_then_close,
    "truncated_kept_open": case_truncated_kept_open,
    "unknown_api_key": case_unknown_api_key,
    "garbage_frame": case_garbage_frame,
    "garbage_unframed": case_garbage_unframed,
    "http_request": case_http_request,
    "zero_length": case_zero_length,
    "bad_body_metadata": case_bad_body_metadata,
    "api_versions_v99": case_api_versions_v99,
}


@pytest.fixture(scope="module")
def shared_broker(request, tmp_path_factory, vigil_installed):
    """One broker for all cases (they also pile up on it), with its log
    attached to any failing case."""
    from conftest import Broker

    b = Broker(tmp_path_factory.mktemp("malformed"), name="vigil-malformed").start()
    topic = unique_name("malformed")
    ck_create_topic(b.bootstrap, topic, 1)
    b.topic = topic
    yield b
    b.terminate_quietly()


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_input_then_still_serves(shared_broker, case, request):
    request.node._vigil_brokers = [shared_broker]
    if not shared_broker.alive():
        pytest.fail(f"broker already dead before case {case}\n{shared_broker.log_tail()}")
    leftover = CASES[case](shared_broker)
    try:
        assert_serves(shared_broker, shared_broker.topic)
    finally:
        if isinstance(leftover, socket.socket):
            leftover.close()
    time.sleep(0.05)
    assert shared_broker.alive(), f"broker died after {case}\n{shared_broker.log_tail()}"


def test_api_versions_v0_lists_core_apis(shared_broker, request):
    request.node._vigil_brokers = [shared_broker]
    s = connect(shared_broker)
    s.settimeout(5)
    s.sendall(api_versions_v0_request(1))
    corr, err, apis, trailing = parse_api_versions_v0(recv_frame(s))
    s.close()
    assert (corr, err) == (1, 0)
    # Produce, Fetch, ListOffsets, Metadata, OffsetCommit, OffsetFetch, FindCoordinator,
    # JoinGroup, Heartbeat, LeaveGroup, SyncGroup, ApiVersions, CreateTopics, InitProducerId
    for key in (0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18, 19, 22):
        assert key in apis, f"api key {key} missing from ApiVersions: {sorted(apis)}"
        lo, hi = apis[key]
        assert 0 <= lo <= hi, (key, lo, hi)
    assert trailing == b""
