"""A multi-day campaign on a simulated clock: both scheduler stages, run by the in-memory processor twin.

3 sources × 1,000/day (weights 2:1:1), 5,000 messages, window 08:00–20:00 Europe/Berlin. The
stages are the same code the Kafka processors run; only the transport and the clock are twins.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from mailstream.config.model import parse_config
from mailstream.core.clock import ManualClock
from mailstream.events import fixtures
from mailstream.events.memory import MemoryBus, MemoryProcessor
from mailstream.events.records import AcceptedMessage, DeliveryResponse, DeliveryTask, TransactionStatus
from mailstream.events.serde import decode, encode
from mailstream.events.topics import (
    ACCEPTED,
    DELIVERY,
    EGRESS_STATE,
    PARTITIONS,
    QUEUE_STATE,
    READY,
    RESPONSES,
    STATUS,
    route_key,
)
from mailstream.scheduler.egress_stage import EgressStage
from mailstream.scheduler.policy import Policies
from mailstream.scheduler.queue_stage import INPUTS, QueueStage

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2026, 11, 23, 6, 0, tzinfo=BERLIN).astimezone(UTC)  # a Monday, before the window opens
WINDOW = {"start": "08:00", "end": "20:00", "timezone": "Europe/Berlin"}
CONFIG = {
    "delivery": {"smarthost": "127.0.0.1:2525"},
    "egress": {
        "daily_reset_timezone": "Europe/Berlin",
        "sources": [{"name": f"ip-{i}", "daily_limit": 1000, "send_window": WINDOW} for i in (1, 2, 3)],
        "pools": [{"name": "warm", "entries": [{"name": "ip-1", "weight": 2}, {"name": "ip-2"}, {"name": "ip-3"}]}],
    },
    "queues": {"egress_pool": "warm"},
}


class Campaign:
    def __init__(self, config: dict[str, object]) -> None:
        self.policies = Policies(parse_config(config, env={}))
        self.bus = MemoryBus(PARTITIONS)
        self.queues = MemoryProcessor(self.bus, INPUTS, QueueStage(self.policies), changelog=QUEUE_STATE)
        self.egress = MemoryProcessor(self.bus, [READY.name], EgressStage(self.policies), changelog=EGRESS_STATE)
        self.sent: list[tuple[datetime, DeliveryTask]] = []
        self._tasks_read = 0

    def submit(self, n: int, at: datetime, **changes: object) -> list[str]:
        ids = []
        for i in range(n):
            msg: AcceptedMessage = fixtures.accepted().model_copy(
                update={
                    "id": f"tx-{len(self.bus.read(ACCEPTED.name))}",
                    "send_at": None,
                    "received_at": at,
                    "recipient": f"r{i}@example.com",
                    **changes,
                }
            )
            self.bus.send(ACCEPTED.name, route_key(msg.tenant, msg.queue).encode(), encode(msg))
            ids.append(msg.id)
        return ids

    def run(self, clock: ManualClock, until: datetime, step: timedelta = timedelta(minutes=1)) -> None:
        while clock() < until:
            now = clock()
            for proc in (self.queues, self.egress):
                proc.step(now)
                proc.tick(now)
            self._deliver(now)
            self.queues.step(now)
            clock.advance(step)

    def _deliver(self, now: datetime) -> None:
        """A sink that accepts everything at once."""
        fresh = self.bus.read(DELIVERY.name, self._tasks_read)
        self._tasks_read += len(fresh)
        for record in fresh:
            task = decode(record.value, DeliveryTask)
            self.sent.append((now, task))
            answer = DeliveryResponse(
                id=task.id,
                attempt=task.attempt,
                attempt_id=task.attempt_id,
                queue=task.queue,
                outcome="DELIVERED",
                response=fixtures.OK_250,
                egress_source=task.egress_source,
                egress_path=task.egress_path,
                started_at=now,
                completed_at=now,
            )
            self.bus.send(RESPONSES.name, route_key(task.tenant, task.queue).encode(), encode(answer))

    def final_statuses(self) -> dict[str, str]:
        latest: dict[str, TransactionStatus] = {}
        for record in self.bus.read(STATUS.name):
            status = decode(record.value, TransactionStatus)
            if status.id not in latest or status.version > latest[status.id].version:
                latest[status.id] = status
        return {tx_id: s.status for tx_id, s in latest.items()}


def test_three_day_campaign_respects_caps_windows_and_weights() -> None:
    clock = ManualClock(START)
    campaign = Campaign(CONFIG)
    ids = campaign.submit(5000, START)
    campaign.run(clock, START + timedelta(days=3))

    per_day = Counter((t.astimezone(BERLIN).date(), task.egress_source) for t, task in campaign.sent)
    assert max(per_day.values()) <= 1000, per_day
    hours = {t.astimezone(BERLIN).hour for t, _ in campaign.sent}
    assert min(hours) >= 8
    assert max(hours) < 20
    monday, tuesday = START.astimezone(BERLIN).date(), START.astimezone(BERLIN).date() + timedelta(days=1)
    assert {d for d, _ in per_day} == {monday, tuesday}  # everything went by day 2
    assert [per_day[(monday, s)] for s in ("ip-1", "ip-2", "ip-3")] == [1000, 1000, 1000]
    # Day 2 has capacity to spare, so the weights decide: 2:1:1 over the remaining 2,000.
    assert [per_day[(tuesday, s)] for s in ("ip-1", "ip-2", "ip-3")] == [1000, 500, 500]
    assert len({task.attempt_id for _, task in campaign.sent}) == 5000
    statuses = campaign.final_statuses()
    assert Counter(statuses[i] for i in ids) == {"delivered": 5000}


def test_small_urgent_queue_is_not_starved_by_bulk_backlog() -> None:
    clock = ManualClock(START)
    campaign = Campaign(CONFIG)
    campaign.submit(3000, START, campaign="bulk", queue="bulk:acme@example.com", priority=5)
    campaign.run(clock, START + timedelta(minutes=30))  # the window is closed: the bulk backlog waits
    urgent = campaign.submit(10, clock(), campaign="reset", queue="reset:acme@example.com", priority=9)
    campaign.run(clock, START + timedelta(hours=2, minutes=5))  # 08:05, the window opened at 08:00
    order = [task.id for _, task in campaign.sent]
    assert len(order) == 3000
    assert set(order[:10]) == set(urgent)  # the higher priority goes first, whatever the backlog


def test_configured_priority_applies_to_messages_that_name_none() -> None:
    config = {
        **CONFIG,
        "queues": {"egress_pool": "warm", "priority": 2, "rules": [{"campaign": "reset", "priority": 9}]},
    }
    clock = ManualClock(START)
    campaign = Campaign(config)
    bulk = campaign.submit(100, START, campaign="bulk", queue="bulk:acme@example.com", priority=None)
    reset = campaign.submit(10, START, campaign="reset", queue="reset:acme@example.com", priority=None)
    named = campaign.submit(10, START, campaign="reset", queue="reset:acme@example.com", priority=10)
    low = campaign.submit(10, START, campaign="reset", queue="reset:acme@example.com", priority=0)
    campaign.run(clock, START + timedelta(hours=2, minutes=5))  # all wait for the window (08:00), then go by priority
    order = [task.id for _, task in campaign.sent]
    assert len(order) == 130
    # A named priority wins over the queue's; the rule's 9 beats the queues' default of 2.
    assert [set(order[:10]), set(order[10:20]), set(order[20:120]), set(order[120:])] == [
        set(named),
        set(reset),
        set(bulk),
        set(low),
    ]


def test_same_priority_queues_take_turns() -> None:
    config = {
        **CONFIG,
        "egress": {
            **CONFIG["egress"],  # type: ignore[dict-item]
            "sources": [{"name": f"ip-{i}", "daily_limit": 10, "send_window": WINDOW} for i in (1, 2, 3)],
        },
    }
    clock = ManualClock(START)
    campaign = Campaign(config)
    campaign.submit(1000, START, campaign="bulk", queue="bulk:acme@example.com")
    small = campaign.submit(5, START, campaign="small", queue="small:acme@example.com")
    campaign.run(clock, START + timedelta(hours=2, minutes=5))  # both wait for 08:00, then share 30 sends
    assert len(campaign.sent) == 30  # the daily caps: 3 × 10
    assert {task.id for _, task in campaign.sent} >= set(small)  # round robin: the small queue got its turns


def test_message_waiting_for_capacity_expires_at_its_deadline() -> None:
    config = {
        **CONFIG,
        "egress": {
            **CONFIG["egress"],  # type: ignore[dict-item]
            "sources": [{"name": f"ip-{i}", "daily_limit": 1} for i in (1, 2, 3)],
        },
        "queues": {"egress_pool": "warm", "max_age": "6h"},
    }
    clock = ManualClock(START)
    campaign = Campaign(config)
    ids = campaign.submit(5, START)
    campaign.run(clock, START + timedelta(hours=7))
    statuses = Counter(campaign.final_statuses()[i] for i in ids)
    assert statuses == {"delivered": 3, "expired": 2}
