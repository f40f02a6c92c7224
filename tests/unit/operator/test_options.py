"""What an operator types: comma lists and times (RFC 3339, or a span ago)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailstream.operator.options import parse_ago, parse_offsets, parse_time, split_list, time_param

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def test_split_list_takes_repeats_and_commas_and_drops_blanks() -> None:
    assert split_list(["delivered,bounced", " deferred ", ","]) == ["delivered", "bounced", "deferred"]
    assert split_list(None) == []


@pytest.mark.parametrize(
    ("text", "span"),
    [("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)), ("1d12h", timedelta(hours=36)),
     ("1w", timedelta(days=7)), ("1.5h", timedelta(minutes=90)), ("2H", timedelta(hours=2))],
)  # fmt: skip
def test_parse_ago_reads_spans(text: str, span: timedelta) -> None:
    assert parse_ago(text) == span


@pytest.mark.parametrize("text", ["", "2", "h", "2x", "2h later", "2026-12-01"])
def test_parse_ago_is_none_for_anything_else(text: str) -> None:
    assert parse_ago(text) is None


def test_parse_time_reads_times_spans_and_now() -> None:
    assert parse_time("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_time("now", NOW) == NOW
    assert parse_time("2026-12-01T08:00:00Z", NOW) == datetime(2026, 12, 1, 8, tzinfo=UTC)
    assert parse_time("2026-12-01T08:00:00", NOW) == datetime(2026, 12, 1, 8, tzinfo=UTC)  # no zone: UTC
    assert parse_time("2026-12-01T09:00:00+01:00", NOW) == datetime(2026, 12, 1, 8, tzinfo=UTC)


def test_parse_time_names_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="'yesterday' is neither a time"):
        parse_time("yesterday", NOW)


def test_time_param_is_rfc3339_or_unset() -> None:
    assert time_param("1h", NOW) == "2026-12-02T07:00:00+00:00"
    assert time_param(None, NOW) is None


def test_offsets_for_every_partition_or_one() -> None:
    assert parse_offsets(["100"], range(3)) == {0: 100, 1: 100, 2: 100}
    assert parse_offsets(["1:7", "2:9"], range(3)) == {1: 7, 2: 9}
    assert parse_offsets(["5", "1:7"], range(2)) == {0: 5, 1: 7}  # the later value wins


@pytest.mark.parametrize(("value", "error"), [("x", "not OFFSET"), ("a:1", "not OFFSET"), ("1:-2", "not OFFSET"),
                                              ("9:1", "no partition 9")])  # fmt: skip
def test_offsets_name_what_is_wrong(value: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_offsets([value], range(3))
