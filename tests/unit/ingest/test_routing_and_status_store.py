"""Metadata that steers a message, and the SQLite status read model."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailstream.events import fixtures
from mailstream.ingest.status_view import StatusStore
from mailstream.intake.routing import RoutingError, resolve_routing


def test_tenant_key_fixes_the_tenant() -> None:
    route = resolve_routing({"campaign": "spring"}, "example.com", bound_tenant="acme")
    assert route.queue == "spring:acme@example.com"
    assert route.tenant == "acme"


def test_admin_names_any_tenant_and_reserved_keys_do_not_ride_along() -> None:
    meta = {
        "tenant": "globex",
        "routing_domain": "Relay.Example",
        "priority": 9,
        "send_at": "2026-12-01T08:00:00+01:00",
        "job": 42,
        "note": "x",
        "tags": ["a"],
    }
    route = resolve_routing(meta, "example.com", bound_tenant=None)
    assert route.queue == "globex@example.com!relay.example"
    assert route.priority == 9
    assert route.send_at == datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    assert route.extra == {"job": "42", "note": "x", "tags": '["a"]'}


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"tenant": "globex"}, "not the tenant of this API key"),
        ({"priority": 11}, "priority"),
        ({"priority": True}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"campaign": 5}, "metadata.campaign must be a string"),
        ({"send_at": "tomorrow"}, "metadata.send_at"),
        ({"expires_at": "2026-12-01T08:00:00"}, "UTC offset"),
        ({"campaign": "a:b"}, "cannot be part of a queue name"),
    ],
)
def test_bad_metadata_names_the_key(meta: dict[str, object], message: str) -> None:
    with pytest.raises(RoutingError, match=message):
        resolve_routing(meta, "example.com", bound_tenant="acme")


def test_status_store_keeps_the_newest_version_and_its_offsets(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "s.sqlite3")
    v2 = fixtures.status()
    v1 = v2.model_copy(update={"version": 1, "status": "ready"})
    v3 = v2.model_copy(update={"version": 3, "status": "delivered"})
    assert store.apply([(0, 10, v2)]) == {"tx-1"}
    assert store.apply([(0, 11, v1)]) == set()  # older version arriving late changes nothing
    got = store.get("tx-1")
    assert got is not None
    assert got.version == 2
    store.apply([(1, 5, v3)])
    assert store.offsets() == {0: 12, 1: 6}
    store.close()
    reopened = StatusStore(tmp_path / "s.sqlite3")
    again = reopened.get("tx-1")
    assert again is not None
    assert again.version == 3
    assert reopened.get("nope") is None
    reopened.close()
