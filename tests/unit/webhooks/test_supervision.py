"""The service's moving parts without Kafka: the endpoint list folded from mail.webhooks, the supervisor that
runs one task per endpoint, and an endpoint's lanes over a consumer twin (order, pause, revocation)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from mailstream.events import fixtures
from mailstream.events.kafka import Consumed
from mailstream.events.records import WebhookEndpoint
from mailstream.events.topics import WEBHOOKS
from mailstream.webhooks import worker
from mailstream.webhooks.endpoints import Endpoints
from mailstream.webhooks.supervisor import Supervisor
from mailstream.webhooks.worker import EndpointWorker
from tests.infra.until import until

API = fixtures.webhook_endpoint()
CONFIGURED = API.model_copy(update={"id": "config-ops", "created_by": "config"})


def test_the_endpoint_list_follows_mail_webhooks() -> None:
    endpoints = Endpoints([CONFIGURED])
    endpoints.apply(b"wh-1", WEBHOOKS.encode(API))
    endpoints.apply(b"wh-2", b"garbage")  # logged, passed over
    assert set(endpoints.current()) == {"config-ops", "wh-1"}
    endpoints.apply(b"wh-1", WEBHOOKS.encode(fixtures.webhook_deleted()))
    assert set(endpoints.current()) == {"config-ops"}


async def test_the_supervisor_starts_restarts_on_change_and_stops() -> None:
    runs: list[tuple[str, str]] = []
    stopped: list[str] = []

    async def run(endpoint: WebhookEndpoint) -> None:
        runs.append((endpoint.id, endpoint.url))
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append(endpoint.id)

    supervisor = Supervisor(run)
    await supervisor.reconcile({"wh-1": API, "config-ops": CONFIGURED})
    await asyncio.sleep(0)
    assert sorted(runs) == [("config-ops", API.url), ("wh-1", API.url)]
    moved = CONFIGURED.model_copy(update={"created_at": fixtures.T0 + timedelta(hours=1)})  # a restart of the file
    changed = API.model_copy(update={"url": "https://elsewhere.test/"})
    await supervisor.reconcile({"wh-1": changed, "config-ops": moved})
    await asyncio.sleep(0)
    assert stopped == ["wh-1"]
    assert runs[-1] == ("wh-1", "https://elsewhere.test/")
    await supervisor.reconcile({})
    assert sorted(stopped) == ["config-ops", "wh-1", "wh-1"]


class Twin:
    """What EndpointWorker needs of a LaneConsumer, fed by the test."""

    def __init__(self) -> None:
        self.batches: asyncio.Queue[list[Consumed]] = asyncio.Queue()
        self.gone: list[int] = []
        self.stored: list[tuple[int, int]] = []
        self.paused: dict[int, bool] = {}
        self.owned: set[int] = {0, 1}
        self.closed = False

    async def poll_batch(self) -> list[Consumed]:
        try:
            return await asyncio.wait_for(self.batches.get(), 0.01)
        except TimeoutError:
            return []

    def revoked(self) -> list[int]:
        gone, self.gone = self.gone, []
        return gone

    def done(self, record: Consumed) -> bool:
        if record.partition not in self.owned:
            return False
        self.stored.append((record.partition, record.offset))
        return True

    def pause(self, partition: int, paused: bool) -> None:
        self.paused[partition] = paused

    def high_watermark(self, partition: int) -> int | None:
        return None

    async def close(self) -> None:
        self.closed = True


def records(partition: int, offsets: range) -> list[Consumed]:
    return [Consumed("mail.events", partition, o, b"k", b"") for o in offsets]


async def test_lanes_keep_order_pause_a_backlog_and_drop_a_revoked_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "PAUSE_AT", 5)
    monkeypatch.setattr(worker, "RESUME_AT", 1)
    twin, gate = Twin(), asyncio.Event()
    handled: list[tuple[int, int]] = []
    started: list[tuple[int, int]] = []

    async def handle(record: Consumed) -> None:
        started.append((record.partition, record.offset))
        if record.partition == 1:
            await gate.wait()  # partition 1's endpoint side hangs
        handled.append((record.partition, record.offset))

    task = asyncio.create_task(EndpointWorker("wh-1", twin, handle).run())
    twin.batches.put_nowait(records(0, range(0, 3)) + records(1, range(0, 8)))
    await until(lambda: twin.stored[-1:] == [(0, 2)], "partition 0 finished while 1 hangs")
    assert [o for p, o in twin.stored if p == 0] == [0, 1, 2]  # in order, each marked done after it
    assert twin.paused == {1: True}  # 7 waiting behind the hung one: stop fetching it
    gate.set()
    await until(lambda: (1, 7) in twin.stored, "partition 1 once it answers")
    await until(lambda: twin.paused == {1: False}, "fetching resumed")
    assert [o for p, o in twin.stored if p == 1] == list(range(8))
    gate.clear()
    twin.batches.put_nowait(records(1, range(8, 10)))
    await until(lambda: (1, 8) in started, "offset 8 sent, hanging")
    twin.owned.discard(1)
    twin.gone.append(1)  # revoked while hanging: its lane is stopped, nothing of it marked done
    twin.batches.put_nowait(records(0, range(3, 4)))
    await until(lambda: (0, 3) in twin.stored, "partition 0 goes on")
    gate.set()  # too late: the revoked lane was stopped
    await asyncio.sleep(0.05)
    assert (1, 8) not in twin.stored
    assert (1, 8) not in handled
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert twin.closed
