"""Filters become SQL with bound parameters only; cursors round-trip and refuse what the API did not give."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from mailstream.ingest.read_model.query import (
    SORT_FIELDS,
    Cursor,
    QueryError,
    QueueFilter,
    decode_cursor,
    fts_match,
    page_query,
    where,
)

T = datetime(2026, 12, 1, tzinfo=UTC)


def test_every_value_is_a_bound_parameter_never_sql() -> None:
    hostile = "x'; DROP TABLE messages; --"
    f = QueueFilter(
        status=("deferred", "bounced"),
        queue_state=("active",),
        domains=("Example.COM", "b.test"),
        sender=hostile,
        recipient=hostile,
        routing_domain=hostile,
        campaign_id=hostile,
        tenant_id=hostile,
        pool_name=hostile,
        queue_name=hostile,
        created_after=T,
        created_before=T,
        scheduled_after=T,
        scheduled_before=T,
        search_query='ann@example.com "OR 1',
        tags=(hostile, "vip"),
        min_attempts=1,
        max_attempts=3,
        bounce_type="hard",
        min_size_bytes=10,
        max_size_bytes=20,
        priority=7,
    )
    conds, params = where(f)
    sql = " AND ".join(conds)
    assert hostile not in sql
    assert "ann" not in sql
    assert "example" not in sql.lower()
    assert sql.count("?") == len(params) == 2 + 1 + 2 + 7 + 1 + 1 + 4 + 2 + 2 + 2 + 1
    assert "example.com" in params  # domains are compared in lower case
    assert '"ann example com"* "OR"* "1"*' in params


def test_an_empty_filter_has_no_conditions() -> None:
    assert where(QueueFilter()) == ([], [])


@pytest.mark.parametrize(
    ("f", "field"),
    [
        (QueueFilter(created_after=T.replace(day=2), created_before=T), "created_after"),
        (QueueFilter(scheduled_after=T.replace(day=2), scheduled_before=T), "scheduled_after"),
        (QueueFilter(min_attempts=3, max_attempts=2), "min_attempts"),
        (QueueFilter(min_size_bytes=3, max_size_bytes=2), "min_size_bytes"),
        (QueueFilter(search_query="@@ !! --"), "search_query"),
        (QueueFilter(search_query=" ".join(f"w{i}" for i in range(11))), "search_query"),
    ],
)
def test_inverted_ranges_and_empty_searches_are_refused(f: QueueFilter, field: str) -> None:
    with pytest.raises(QueryError) as caught:
        f.check()
    assert caught.value.field == field


def test_equal_range_ends_are_allowed() -> None:
    QueueFilter(created_after=T, created_before=T, min_attempts=2, max_attempts=2).check()


def test_search_terms_are_prefix_phrases_of_their_words() -> None:
    assert fts_match("ann@exa  invoice") == '"ann exa"* "invoice"*'
    assert fts_match('NEAR(" a b") OR *') == '"NEAR"* "a"* "b"* "OR"*'  # quoted: words, never operators


@pytest.mark.parametrize("sort_by", SORT_FIELDS)
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_cursors_round_trip_for_every_sort(sort_by: str, order: str) -> None:
    value: int | str = "ann@example.com" if sort_by in ("recipient", "domain") else 1_700_000_000_000
    cursor = Cursor(sort_by, order, value, 42)
    assert decode_cursor(cursor.encode(), sort_by, order) == cursor
    page = page_query(QueueFilter(), sort_by, order, 10, cursor)
    assert f"(m.{sort_by}, m.seq) {'>' if order == 'asc' else '<'} (?, ?)" in page.sql
    assert page.sql.endswith(f"ORDER BY m.{sort_by} {order.upper()}, m.seq {order.upper()} LIMIT ? OFFSET ?")
    assert page.params[-4:] == [value, 42, 11, 0]


def _forged(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.parametrize(
    "text",
    [
        "not base64 at all!",
        _forged({"a": 1}),
        _forged([2, "created_at", "desc", 1, 1]),
        _forged([1, "created_at", "desc", "text", 1]),  # an integer sort with a text value
        _forged([1, "created_at", "desc", 1, True]),
        _forged([1, "created_at", "desc", 1]),
        "x" * 2000,
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_a_cursor_the_api_did_not_give_is_refused(text: str) -> None:
    with pytest.raises(QueryError) as caught:
        decode_cursor(text, "created_at", "desc")
    assert caught.value.field == "cursor"


def test_a_cursor_of_another_sort_is_refused() -> None:
    text = Cursor("size_bytes", "asc", 5, 1).encode()
    with pytest.raises(QueryError, match="sort_by=size_bytes"):
        decode_cursor(text, "size_bytes", "desc")


def test_an_unknown_sort_is_refused() -> None:
    with pytest.raises(QueryError):
        page_query(QueueFilter(), "seq; DROP TABLE messages", "asc")
    with pytest.raises(QueryError):
        page_query(QueueFilter(), "created_at", "sideways")
