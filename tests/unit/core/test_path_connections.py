"""Connection shaping of one egress path: limit, rate of new connections, deliveries per connection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailstream.core.path_connections import ConnectionShape, PathConnections
from mailstream.core.throttle import ThrottleSpec

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def test_unshaped_path_opens_whenever_asked() -> None:
    path = PathConnections(ConnectionShape())
    assert all(path.try_open(T0) for _ in range(1000))
    assert path.open == 1000
    assert not ConnectionShape().retired(10**9)


def test_limit_refuses_until_a_connection_closes() -> None:
    path = PathConnections(ConnectionShape(limit=2))
    assert path.try_open(T0)
    assert path.try_open(T0)
    assert path.next_open_at(T0) is None
    assert not path.try_open(T0)
    assert path.open == 2
    path.closed()
    assert path.next_open_at(T0) == T0
    assert path.try_open(T0)


def test_rate_spaces_new_connections_and_a_refusal_changes_nothing() -> None:
    path = PathConnections(ConnectionShape(rate=ThrottleSpec.parse("6/m,max_burst=1")))
    assert path.try_open(T0)
    later = T0 + timedelta(seconds=4)
    assert path.next_open_at(later) == T0 + timedelta(seconds=10)
    before = path.gcra
    assert not path.try_open(later)
    assert (path.gcra, path.open) == (before, 1)
    assert path.try_open(T0 + timedelta(seconds=10))
    assert path.next_open_at(T0 + timedelta(seconds=10)) == T0 + timedelta(seconds=20)


def test_closing_frees_the_limit_but_not_the_rate() -> None:
    path = PathConnections(ConnectionShape(limit=1, rate=ThrottleSpec.parse("1/s")))
    assert path.try_open(T0)
    path.closed()
    assert path.next_open_at(T0) == T0 + timedelta(seconds=1)


def test_limit_is_checked_before_the_rate() -> None:
    path = PathConnections(ConnectionShape(limit=1, rate=ThrottleSpec.parse("100/s")))
    assert path.try_open(T0)
    assert path.next_open_at(T0 + timedelta(hours=1)) is None


@pytest.mark.parametrize(("per_connection", "deliveries", "retired"), [(3, 2, False), (3, 3, True), (1, 1, True)])
def test_connection_retires_after_its_deliveries(per_connection: int, deliveries: int, retired: bool) -> None:
    assert ConnectionShape(per_connection=per_connection).retired(deliveries) is retired


def test_bad_shapes_and_unbalanced_closes_are_refused() -> None:
    with pytest.raises(ValueError, match="connection limit"):
        ConnectionShape(limit=0)
    with pytest.raises(ValueError, match="deliveries per connection"):
        ConnectionShape(per_connection=0)
    with pytest.raises(ValueError, match="no open connection"):
        PathConnections(ConnectionShape()).closed()
