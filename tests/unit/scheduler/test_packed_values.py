"""PackedValues: a dict of bytes kept deflated, read back exactly."""

from __future__ import annotations

import os
import uuid

from hypothesis import given
from hypothesis import strategies as st

from mailstream.events import fixtures
from mailstream.events.serde import encode
from mailstream.scheduler.packed import PackedValues


def records(n: int) -> list[bytes]:
    base = fixtures.accepted()
    return [
        encode(base.model_copy(update={"id": str(uuid.uuid4()), "recipient": f"r{i}@example.com"})) for i in range(n)
    ]


def test_values_read_back_exactly_and_take_a_fraction_of_the_space() -> None:
    values = records(200)
    packed = PackedValues()
    for i, value in enumerate(values):
        packed[f"k{i}"] = value
    assert [packed[f"k{i}"] for i in range(200)] == values
    assert packed.packed_size() < sum(map(len, values)) / 3


def test_behaves_as_a_mutable_mapping() -> None:
    packed = PackedValues()
    assert packed.get("x") is None
    assert "x" not in packed
    assert len(packed) == 0
    packed["a"], packed["b"] = b"alpha", b""
    packed["a"] = b"alpha two"  # replaced, not added
    assert (len(packed), sorted(packed), packed["a"], packed["b"]) == (2, ["a", "b"], b"alpha two", b"")
    assert packed.pop("a") == b"alpha two"
    assert packed.pop("a", None) is None
    del packed["b"]
    assert dict(packed.items()) == {}


def test_incompressible_and_large_values_survive() -> None:
    packed = PackedValues()
    first, noise, big = os.urandom(50), os.urandom(4000), b"x" * 100_000
    packed["first"], packed["noise"], packed["big"] = first, noise, big
    assert (packed["first"], packed["noise"], packed["big"]) == (first, noise, big)


@given(st.lists(st.binary(max_size=600), min_size=1, max_size=30))
def test_any_bytes_round_trip(values: list[bytes]) -> None:
    packed = PackedValues()
    for i, value in enumerate(values):
        packed[str(i)] = value
    assert [packed[str(i)] for i in range(len(values))] == values
