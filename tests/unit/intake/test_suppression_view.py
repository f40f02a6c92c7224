"""The suppression view both doors read: it answers only once it has read what the topic held at start, applies
additions and removals in the topic's order, and lets an entry lapse at its expiry by the clock it is asked with."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from mailstream.events.memory import MemoryBus
from mailstream.events.records import Suppression, SuppressionRemoved
from mailstream.events.serde import decode, encode
from mailstream.events.topics import PARTITIONS, SUPPRESSIONS
from mailstream.intake import suppression_view
from mailstream.intake.suppression_view import SuppressionsLoading, SuppressionView
from tests.infra.ingest_app import tail_the_bus

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def entry(address: str, tenant: str | None = "acme", expires_at: datetime | None = None) -> Suppression:
    return Suppression(
        address=address,
        tenant=tenant,
        reason="hard bounce: 550 5.1.1 user unknown",
        source="bounce",
        created_at=T0,
        expires_at=expires_at,
        created_by="scheduler",
    )


def publish(bus: MemoryBus, record: Suppression | SuppressionRemoved) -> None:
    bus.send(SUPPRESSIONS.name, f"{record.tenant or ''}!{record.address}".encode(), encode(record))


async def test_the_view_answers_once_it_has_read_the_list_and_follows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = MemoryBus(PARTITIONS)
    for i in range(50):
        publish(bus, entry(f"r{i}@example.com"))
    publish(bus, entry("gone@example.com"))
    publish(bus, SuppressionRemoved(address="gone@example.com", tenant="acme", removed_at=T0, removed_by="admin"))
    publish(bus, entry("soon@example.com", expires_at=T0 + timedelta(hours=1)))
    publish(bus, entry("nobody@example.com", tenant=None))
    tail_the_bus(monkeypatch, bus)
    view = SuppressionView()
    with pytest.raises(SuppressionsLoading):
        view.refusal("acme", "r0@example.com", T0)
    task = asyncio.create_task(view.run("unused:9092"))
    try:
        await asyncio.wait_for(view.caught_up.wait(), 5)
        assert all(view.refusal("acme", f"R{i}@Example.com", T0) for i in range(50))  # every one read at once
        assert view.refusal("acme", "r0@example.com", T0) == (
            "<r0@example.com> is on the suppression list: hard bounce: 550 5.1.1 user unknown"
        )
        assert view.refusal("globex", "r0@example.com", T0) is None  # another tenant's list
        assert view.refusal("acme", "gone@example.com", T0) is None
        assert view.refusal(None, "nobody@example.com", T0) is not None
        assert view.refusal("acme", "soon@example.com", T0 + timedelta(minutes=59)) is not None
        assert view.refusal("acme", "soon@example.com", T0 + timedelta(hours=1)) is None  # lapsed by the clock
        assert view.refusal("acme", "not an address", T0) is None
        publish(bus, SuppressionRemoved(address="r0@example.com", tenant="acme", removed_at=T0, removed_by="admin"))
        for _ in range(100):
            if view.refusal("acme", "r0@example.com", T0) is None:
                break
            await asyncio.sleep(0.01)
        assert view.refusal("acme", "r0@example.com", T0) is None
        listed = [(e.tenant, e.address) for e in view.entries(None, T0, every_tenant=True)]
        assert listed[:3] == [(None, "nobody@example.com"), ("acme", "r10@example.com"), ("acme", "r11@example.com")]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_a_page_after_a_cursor_decodes_only_what_follows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # A listing's later pages must not cost every entry before them: decoding each was seconds on the event
    # loop for a list of a few hundred thousand, for every page of every caller.
    view = SuppressionView()
    for i in range(1000):
        view.apply(entry(f"r{i:04d}@example.com"))
        view.apply(entry(f"r{i:04d}@example.com", tenant="globex"))
    decoded = 0
    real = decode

    def counting(data: bytes, kind: type[Suppression]) -> Suppression:
        nonlocal decoded
        decoded += 1
        return real(data, kind)

    monkeypatch.setattr(suppression_view, "decode", counting)
    after = [e.address for e in view.entries("acme", T0, after=("acme", "r0989@example.com"))]
    assert after == [f"r{i:04d}@example.com" for i in range(990, 1000)]
    assert decoded == 10
    every = [
        (e.tenant, e.address) for e in view.entries(None, T0, every_tenant=True, after=("acme", "r0998@example.com"))
    ]
    assert every[:3] == [
        ("acme", "r0999@example.com"),
        ("globex", "r0000@example.com"),
        ("globex", "r0001@example.com"),
    ]
    assert len(every) == 1001


def test_a_list_is_sorted_once_between_its_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Sorting a list of a million addresses takes half a second on the event loop: once per change, not per page.
    view = SuppressionView()
    for i in range(100):
        view.apply(entry(f"r{i:04d}@example.com"))
    sorts = 0

    def counting(items: Iterable[str]) -> list[str]:
        nonlocal sorts
        sorts += 1
        return sorted(items)

    monkeypatch.setattr(suppression_view, "sorted", counting, raising=False)
    for _ in range(3):
        assert len(list(view.entries("acme", T0))) == 100
    assert sorts == 1
    view.apply(entry("a-first@example.com"))
    view.apply(SuppressionRemoved(address="r0000@example.com", tenant="acme", removed_at=T0, removed_by="admin"))
    listed = [e.address for e in view.entries("acme", T0)]
    assert listed[:2] == ["a-first@example.com", "r0001@example.com"]
    assert len(listed) == 100
    assert sorts == 2
