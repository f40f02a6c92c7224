"""Kafka's default partitioner (murmur2), checked against the Java client's own test vectors."""

from __future__ import annotations

import ctypes

import pytest

from mailstream.core.partitioner import murmur2, partition_of

# org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed 32-bit results)
JAVA_VECTORS = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), JAVA_VECTORS.items())
def test_murmur2_matches_the_java_client(key: str, expected: int) -> None:
    assert ctypes.c_int32(murmur2(key.encode())).value == expected


def test_partition_is_the_positive_hash_modulo_the_count() -> None:
    assert partition_of(b"abc", 8) == 479470107 % 8
    assert partition_of(b"21", 8) == (-973932308 & 0x7FFFFFFF) % 8
    assert {partition_of(f"k{i}".encode(), 8) for i in range(200)} == set(range(8))
    with pytest.raises(ValueError, match="at least 1"):
        partition_of(b"x", 0)
