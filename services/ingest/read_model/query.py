"""A QueueFilter, a sort and a cursor turned into one SQL query with bound parameters. Pure: no I/O.

Pages are keyset pages: ordered by the sort column then `seq` (the row's stable integer key), and a
cursor holds the last row's (value, seq), so rows inserted meanwhile never shift a page. Every sort column
is NOT NULL, so comparing row values is total. Column names come only from the tables below, never from
the request; every value the request carries is a bound parameter.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

SortField = Literal["created_at", "scheduled_at", "priority", "num_attempts", "size_bytes", "recipient", "domain"]
SortOrder = Literal["asc", "desc"]
SORT_FIELDS: tuple[str, ...] = get_args(SortField)
_TEXT_SORTS = frozenset({"recipient", "domain"})
MAX_SEARCH_TERMS = 10
_WORD = re.compile(r"\w+")


class QueryError(ValueError):
    """A filter, sort or cursor that cannot be answered; `field` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def ms(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """The email-queue model's QueueFilter; lists match any of their values, tags all of theirs."""

    status: tuple[str, ...] = ()
    queue_state: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()  # `domain` and `domains` together
    sender: str | None = None
    recipient: str | None = None
    routing_domain: str | None = None
    campaign_id: str | None = None
    tenant_id: str | None = None
    pool_name: str | None = None
    queue_name: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    scheduled_after: datetime | None = None
    scheduled_before: datetime | None = None
    search_query: str | None = None
    tags: tuple[str, ...] = ()
    min_attempts: int | None = None
    max_attempts: int | None = None
    bounce_type: str | None = None
    min_size_bytes: int | None = None
    max_size_bytes: int | None = None
    priority: int | None = None

    def check(self) -> None:
        """QueryError for a range whose lower end is above its upper end, or a search with no word in it."""
        for low, high, name in (
            (self.created_after, self.created_before, "created_after"),
            (self.scheduled_after, self.scheduled_before, "scheduled_after"),
        ):
            if low is not None and high is not None and ms(low) > ms(high):  # type: ignore[operator]
                raise QueryError(name, f"is after {name.replace('after', 'before')}")
        for lo, hi, name in (
            (self.min_attempts, self.max_attempts, "min_attempts"),
            (self.min_size_bytes, self.max_size_bytes, "min_size_bytes"),
        ):
            if lo is not None and hi is not None and lo > hi:
                raise QueryError(name, f"is above {name.replace('min', 'max')}")
        if self.search_query is not None:
            fts_match(self.search_query)


def fts_match(query: str) -> str:
    """FTS5 syntax for a user's search: each whitespace-separated term a phrase of its words, matched as a
    prefix ("ann@exa" finds ann@example.com), every term required. Quotes and operators in the input are
    never FTS syntax: only \\w runs are kept."""
    phrases = []
    for term in query.split():
        words = _WORD.findall(term)
        if words:
            phrases.append('"' + " ".join(words) + '"*')
    if not phrases:
        raise QueryError("search_query", "has no word to search for")
    if len(phrases) > MAX_SEARCH_TERMS:
        raise QueryError("search_query", f"has more than {MAX_SEARCH_TERMS} terms")
    return " ".join(phrases)


def where(f: QueueFilter, probe: bool = False) -> tuple[list[str], list[object]]:
    """SQL conditions (ANDed) over table `m` and their parameters. With `probe`, tag and search conditions are
    membership tests (`+m.seq` keeps SQLite from driving the query from their matches): right when they match
    many rows, so that walking the sort's index and testing each row finds a page sooner than sorting them all."""
    member = "+m.seq" if probe else "m.seq"
    conds: list[str] = []
    params: list[object] = []

    def any_of(column: str, values: tuple[str, ...]) -> None:
        if values:
            conds.append(f"m.{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)

    def equal(column: str, value: object) -> None:
        if value is not None:
            conds.append(f"m.{column} = ?")
            params.append(value)

    def bound(column: str, op: str, value: object) -> None:
        if value is not None:
            conds.append(f"m.{column} {op} ?")
            params.append(value)

    any_of("status", f.status)
    any_of("queue_state", f.queue_state)
    any_of("domain", tuple(d.lower() for d in f.domains))
    for column in ("sender", "recipient", "routing_domain", "campaign_id", "tenant_id", "pool_name", "queue_name"):
        equal(column, getattr(f, column))
    equal("bounce_type", f.bounce_type)
    equal("priority", f.priority)
    bound("created_at", ">=", ms(f.created_after))
    bound("created_at", "<=", ms(f.created_before))
    bound("scheduled_at", ">=", ms(f.scheduled_after))
    bound("scheduled_at", "<=", ms(f.scheduled_before))
    bound("num_attempts", ">=", f.min_attempts)
    bound("num_attempts", "<=", f.max_attempts)
    bound("size_bytes", ">=", f.min_size_bytes)
    bound("size_bytes", "<=", f.max_size_bytes)
    for tag in f.tags:  # probed: one primary-key lookup per row walked, not the list of every tagged row first
        if probe:
            conds.append("EXISTS (SELECT 1 FROM tags t WHERE t.tag = ? AND t.seq = m.seq)")
        else:
            conds.append(f"{member} IN (SELECT seq FROM tags WHERE tag = ?)")
        params.append(tag)
    if f.search_query is not None:
        conds.append(f"{member} IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?)")
        params.append(fts_match(f.search_query))
    return conds, params


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the last row's sort value and seq, under the sort it was made for."""

    sort_by: str
    order: str
    value: int | str
    seq: int

    def encode(self) -> str:
        raw = json.dumps([1, self.sort_by, self.order, self.value, self.seq], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str, sort_by: str, order: str) -> Cursor:
    """The cursor a page answered; QueryError("cursor", ...) for anything else, or one of another sort."""
    if len(text) > 1024:
        raise QueryError("cursor", "is not one this API gave")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        version, cursor_sort, cursor_order, value, seq = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise QueryError("cursor", "is not one this API gave") from None
    text_sort = sort_by in _TEXT_SORTS
    if (
        version != 1
        or not isinstance(seq, int)
        or isinstance(seq, bool)
        or not (isinstance(value, str) if text_sort else isinstance(value, int) and not isinstance(value, bool))
    ):
        raise QueryError("cursor", "is not one this API gave")
    if (cursor_sort, cursor_order) != (sort_by, order):
        raise QueryError("cursor", f"was made for sort_by={cursor_sort}&sort_order={cursor_order}")
    return Cursor(sort_by, order, value, seq)


@dataclass(frozen=True, slots=True)
class Page:
    sql: str
    params: list[object]


def page_query(
    f: QueueFilter,
    sort_by: str = "created_at",
    order: str = "desc",
    limit: int = 50,
    cursor: Cursor | None = None,
    offset: int = 0,
    probe: bool = False,
) -> Page:
    """One page's keys (seq, then the sort value): `limit` + 1 rows are asked for, so the caller knows whether
    another page follows. Only keys: a sort then moves narrow rows, and the page's rows are read by seq after."""
    if sort_by not in SORT_FIELDS:
        raise QueryError("sort_by", f"is one of {', '.join(SORT_FIELDS)}")
    if order not in ("asc", "desc"):
        raise QueryError("sort_order", "is asc or desc")
    conds, params = where(f, probe)
    if cursor is not None:
        conds.append(f"(m.{sort_by}, m.seq) {'>' if order == 'asc' else '<'} (?, ?)")
        params.extend((cursor.value, cursor.seq))
    sql = f"SELECT m.seq, m.{sort_by} FROM messages m"
    if conds:
        sql += " WHERE " + " AND ".join(conds)
    direction = order.upper()
    sql += f" ORDER BY m.{sort_by} {direction}, m.seq {direction} LIMIT ? OFFSET ?"
    params.extend((limit + 1, offset))
    return Page(sql, params)
