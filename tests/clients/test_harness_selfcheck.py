"""The exactly-once checker itself must catch each kind of failure (no broker)."""

from __future__ import annotations

import copy
import random

import pytest

from helpers import Rec, assert_exactly_once, java_partition, make_records


def _produced() -> list[Rec]:
    recs = make_records(random.Random(7), 30, "self", null_keys=True, null_values=True, null_header_values=True)
    offsets = {0: 0, 1: 0, 2: 0}
    for i, r in enumerate(recs):
        r.partition = i % 3
        r.offset = offsets[r.partition]
        offsets[r.partition] += 1
        r.timestamp = 1000 + i
    return recs


def test_identical_passes():
    recs = _produced()
    assert_exactly_once(recs, copy.deepcopy(recs), check_timestamps=True)


def _mutations():
    def dup(c):
        c.append(copy.deepcopy(c[4]))

    def drop(c):
        del c[5]

    def swap_within_partition(c):
        c[0], c[3] = c[3], c[0]

    def flip_value_byte(c):
        r = next(r for r in c if r.value)
        r.value = bytes([r.value[0] ^ 1]) + r.value[1:]

    def change_key(c):
        r = next(r for r in c if r.key)
        r.key = r.key + b"\x00"

    def drop_header(c):
        c[2].headers = c[2].headers[:-1]

    def reorder_headers(c):
        c[2].headers = list(reversed(c[2].headers))

    def wrong_partition(c):
        c[1].partition = (c[1].partition + 1) % 3

    def wrong_offset(c):
        c[7].offset += 1

    def wrong_timestamp(c):
        c[8].timestamp += 1

    return [dup, drop, swap_within_partition, flip_value_byte, change_key, drop_header, reorder_headers,
            wrong_partition, wrong_offset, wrong_timestamp]


@pytest.mark.parametrize("mutate", _mutations(), ids=lambda f: f.__name__)
def test_checker_catches(mutate):
    recs = _produced()
    consumed = copy.deepcopy(recs)
    mutate(consumed)
    with pytest.raises(AssertionError):
        assert_exactly_once(recs, consumed, check_timestamps=True)


def test_java_partition_matches_java_murmur2():
    # Signed murmur2 values from Apache Kafka's UtilsTest (the Java client's partitioner hash,
    # which kafkajs' DefaultPartitioner and librdkafka's `murmur2` partitioner reproduce).
    for key, signed in [(b"21", -973932308), (b"foobar", -790332482),
                        (b"a-little-bit-long-string", -985981536), (b"abc", 479470107)]:
        assert java_partition(key, 1_000_003) == (signed & 0x7FFFFFFF) % 1_000_003
