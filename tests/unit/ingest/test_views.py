"""The read models' tail loops: the status view resumes from its stored offsets, the capacity view reads its
compacted topics from the beginning; both skip an unreadable record and say when they have caught up. They tail
the in-memory bus here (tests/infra/ingest_app.py's BusTailer in TopicTailer's place)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

import pytest

from mailstream.events import fixtures
from mailstream.events.topics import QUEUE_STATS, SHAPING, SOURCE_USAGE, STATUS
from tests.infra.ingest_app import IngestApp, tail_the_bus


async def until_caught_up(run: Coroutine[Any, Any, None], caught_up: asyncio.Event) -> None:
    """Run a view's tail until it has caught up, then stop it as the service's shutdown does."""
    task = asyncio.create_task(run)
    try:
        await asyncio.wait_for(caught_up.wait(), 10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_status_view_resumes_from_its_offsets_and_wakes_waiters(
    ingest: IngestApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    tailers = tail_the_bus(monkeypatch, ingest.producer.bus)
    seen = fixtures.status()  # tx-1, version 2
    where = await ingest.producer.send(STATUS, seen.id, seen)
    await ingest.project_statuses()  # read before a restart: its offset is stored with it
    await ingest.producer.send_raw(STATUS.name, b"tx-9", b"not an Avro record")
    await ingest.producer.send(STATUS, "tx-1", seen.model_copy(update={"version": 3, "status": "bounced"}))
    await ingest.producer.send(STATUS, "tx-2", seen.model_copy(update={"id": "tx-2"}))
    waiter = asyncio.create_task(ingest.statuses.wait_newer("tx-1", 2, 10))

    await until_caught_up(ingest.statuses.run("bus"), ingest.statuses.caught_up)

    [tailer] = tailers
    assert (tailer.topic, tailer.start) == (STATUS.name, {where.partition: 1})
    assert tailer.closed
    newest = await asyncio.wait_for(waiter, 1)
    assert newest is not None
    assert (newest.version, newest.status) == (3, "bounced")
    assert ingest.statuses.get("tx-2") is not None
    assert ingest.statuses.get("tx-9") is None  # the unreadable record was skipped, not fatal


async def test_the_capacity_view_reads_its_topics_from_the_beginning(
    ingest: IngestApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    tailers = tail_the_bus(monkeypatch, ingest.producer.bus)
    await ingest.producer.send(QUEUE_STATS, "3/acme", fixtures.queue_stats())
    await ingest.producer.send_raw(QUEUE_STATS.name, b"4/globex", b"garbage")
    await ingest.producer.send(SOURCE_USAGE, "ip-1", fixtures.source_usage())
    await ingest.producer.send(SHAPING, fixtures.shaping_control().id, fixtures.shaping_control())

    await until_caught_up(ingest.capacity.run("bus"), ingest.capacity.caught_up)

    assert [(t.topic, t.start, t.closed) for t in tailers] == [
        (QUEUE_STATS.name, {}, True),
        (SOURCE_USAGE.name, {}, True),
        (SHAPING.name, {}, True),
    ]
    assert list(ingest.capacity.shaping) == [fixtures.shaping_control().id]
    assert set(ingest.capacity.stats) == {"3/acme"}
    assert ingest.capacity.usage["ip-1"].used == 17


def test_the_capacity_view_forgets_tombstones_and_ignores_keyless_records(ingest: IngestApp) -> None:
    ingest.publish_usage(fixtures.source_usage())
    ingest.capacity.apply(SOURCE_USAGE.name, b"ip-1", None)
    ingest.capacity.apply(QUEUE_STATS.name, None, b"whatever")
    ingest.capacity.apply("mail.elsewhere", b"k", b"v")
    assert ingest.capacity.usage == {}
    assert ingest.capacity.stats == {}
