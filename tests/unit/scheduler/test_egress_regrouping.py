"""Stage 2 when a configuration change regroups the egress pools during a rolling restart.

Two workers share the two partitions of mail.ready; one already runs the new configuration while
the other still runs the old one. The stage code is the one the Kafka processors run; the bus and
the shared changelog stand in for the topics.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailstream.config.model import parse_config
from mailstream.core.partitioner import partition_of
from mailstream.events import fixtures
from mailstream.events.memory import MemoryBus, MemoryProcessor
from mailstream.events.records import DeliveryTask
from mailstream.events.serde import decode, encode
from mailstream.events.topics import DELIVERY, EGRESS_STATE, READY
from mailstream.scheduler import egress_keys
from mailstream.scheduler.egress_keys import Held
from mailstream.scheduler.egress_stage import EgressStage
from mailstream.scheduler.policy import Policies

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
PARTITIONS = 2
Changelog = dict[int, dict[bytes, bytes]]


def config(shared: bool) -> Policies:
    """pool-a's group is on partition 0, pool-b's on 1; sharing b1 merges pool-b into pool-a's group."""
    entries_a = [{"name": "a1"}, {"name": "b1"}] if shared else [{"name": "a1"}]
    return Policies(
        parse_config(
            {
                "egress": {
                    "sources": [{"name": "a1"}, {"name": "b1", "daily_limit": 50}],
                    "pools": [
                        {"name": "pool-a", "entries": entries_a},
                        {"name": "pool-b", "entries": [{"name": "b1"}]},
                    ],
                },
                "queues": {"egress_pool": "pool-b"},
            },
            env={},
        )
    )


def worker(shared: bool, owned: set[int], bus: MemoryBus, changelog: Changelog) -> MemoryProcessor:
    """A stage 2 worker owning `owned` of the shared bus, resuming from the (shared) changelog."""
    stage = EgressStage(config(shared), partitions=PARTITIONS)
    return MemoryProcessor(bus, [READY.name], stage, owned=owned, resume_from=changelog, changelog=EGRESS_STATE)


def offer(bus: MemoryBus, n: int, key: str, tag: str) -> None:
    for i in range(n):
        ready = fixtures.ready().model_copy(
            update={
                "id": f"{tag}-{i}",
                "egress_pool": "pool-b",
                "ready_at": START,
                "expires_at": START + timedelta(days=3),
            }
        )
        bus.send(READY.name, key.encode(), encode(ready))


def sent_by(bus: MemoryBus, source: str) -> list[DeliveryTask]:
    tasks = [decode(r.value, DeliveryTask) for r in bus.read(DELIVERY.name)]
    return [t for t in tasks if t.egress_source == source]


def run(workers: list[MemoryProcessor], start: datetime, minutes: int) -> datetime:
    now = start
    for _ in range(minutes * 6):  # a step every 10 s
        for w in workers:
            w.step(now)
            w.tick(now)
        now += timedelta(seconds=10)
    return now


def test_a_regrouped_source_sends_nothing_until_every_partition_has_handed_over() -> None:
    assert (partition_of(b"pool-a", PARTITIONS), partition_of(b"pool-b", PARTITIONS)) == (0, 1)
    bus, changelog = MemoryBus(PARTITIONS), Changelog()
    old = worker(False, {0, 1}, bus, changelog)
    offer(bus, 30, "pool-b", "day1")
    now = run([old], START, 1)
    assert len(sent_by(bus, "b1")) == 30  # counted in partition 1, pool-b's group

    # Rolling restart: the worker owning partition 0 runs the new grouping, partition 1's does not yet.
    new0, old1 = worker(True, {0}, bus, changelog), worker(False, {1}, bus, changelog)
    offer(bus, 40, "pool-a", "new")  # a stage 1 on the new grouping routes pool-b to pool-a's group
    now = run([new0, old1], now, 5)
    assert len(sent_by(bus, "b1")) == 30, "nothing sent while a partition may still hold b1's count"

    # The second worker restarts on the new grouping: it hands b1's count over, then everyone settles.
    new1 = worker(True, {1}, bus, changelog)
    run([new0, new1], now, 2)
    b1 = sent_by(bus, "b1")
    assert len(b1) == 50, "b1's cap of the day holds across the regrouping"
    assert len({t.id for t in b1}) == 50


def test_mail_routed_by_a_stage_1_on_the_old_grouping_is_forwarded_to_its_owner() -> None:
    bus, changelog = MemoryBus(PARTITIONS), Changelog()
    new = worker(True, {0, 1}, bus, changelog)
    offer(bus, 5, "pool-b", "late")  # keyed by the old group: lands on partition 1
    run([new], START, 1)
    tasks = sent_by(bus, "b1")
    assert len(tasks) == 5
    held = [k for k in map(egress_keys.parse, changelog.get(1, {})) if isinstance(k, Held)]
    assert not held, "partition 1 holds nothing it does not own"
