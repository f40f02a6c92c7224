"""Stage 2 in memory with MX sites (the lookup injected; tests/integration/test_mx_sites.py drives real DNS):
two domains on one MX share one path and its rate, and after a restart the held one keeps waiting on that
path's restored rate and leaves on it once the rate allows: what was decided is read back, not decided anew."""

from __future__ import annotations

from datetime import timedelta

from mailstream.config.model import Config, parse_config
from mailstream.core.mx_site import MxAnswer
from mailstream.core.partitioner import partition_of
from mailstream.events import fixtures
from mailstream.events.memory import MemoryBus, MemoryProcessor
from mailstream.events.records import DeliveryTask
from mailstream.events.serde import decode, encode
from mailstream.events.topics import DELIVERY, EGRESS_STATE, PARTITIONS, READY
from mailstream.scheduler.egress_stage import EgressStage
from mailstream.scheduler.mx_sites import MxSites
from mailstream.scheduler.policy import Policies

T0 = fixtures.T0
PROVIDER = MxAnswer("ok", ((10, "mx1.provider.test."), (20, "mx2.provider.test.")), ttl=3600)
SHARED = "ip->(mx1|mx2).provider.test"


def config(**egress: object) -> Config:
    return parse_config(
        {
            "egress": {
                "sources": [{"name": "ip"}, {"name": "relayed", "relay": {"host": "relay.test", "port": 2525}}],
                "pools": [{"name": "p", "entries": [{"name": "ip"}]}, {"name": "r", "entries": [{"name": "relayed"}]}],
                "paths": [{"site_pattern": "*.provider.test", "max_message_rate": "1/h"}],
                **egress,
            },
            "queues": {"egress_pool": "p"},
        },
        env={},
    )


class Lookups:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def __call__(self, domain: str) -> MxAnswer:
        self.asked.append(domain)
        return PROVIDER if domain in ("a.test", "b.test") else MxAnswer("nxdomain")


def stage(
    lookups: Lookups, bus: MemoryBus, resume: dict[int, dict[bytes, bytes]] | None = None
) -> tuple[MemoryProcessor, MxSites]:
    cfg = config()
    sites = MxSites(cfg.scheduler.mx_sites, [], lookup=lookups)
    stage = EgressStage(Policies(cfg), sites=sites)
    return MemoryProcessor(bus, [READY.name], stage, changelog=EGRESS_STATE, resume_from=resume), sites


def offer(bus: MemoryBus, domain: str, pool: str = "p") -> None:
    ready = fixtures.ready().model_copy(
        update={
            "id": f"tx-{domain}-{pool}",
            "queue": domain,
            "domain": domain,
            "egress_pool": pool,
            "expires_at": T0 + timedelta(7),
        }
    )
    bus.send(READY.name, pool.encode(), encode(ready), partition_of(pool.encode(), PARTITIONS))


def tasks(bus: MemoryBus) -> list[DeliveryTask]:
    return [decode(r.value, DeliveryTask) for r in bus.read(DELIVERY.name)]


def settle(proc: MemoryProcessor) -> None:
    for _ in range(3):  # the partitions announce their grouping to each other on mail.ready
        proc.tick(T0)
        proc.step(T0)


def test_two_domains_on_one_mx_share_a_path_and_its_rate_across_a_restart() -> None:
    bus, lookups = MemoryBus(PARTITIONS), Lookups()
    proc, sites = stage(lookups, bus)
    settle(proc)
    for domain in ("a.test", "b.test", "gone.test"):
        offer(bus, domain)
    offer(bus, "relayed.test", pool="r")  # through a relay: named by it, not looked up
    proc.step(T0)
    assert sorted(lookups.asked) == ["a.test", "b.test", "gone.test"]  # each distinct domain once
    assert {t.id: t.egress_path for t in tasks(bus)} == {
        "tx-a.test-p": SHARED,  # b.test-p waits for the shared path's 1/h
        "tx-gone.test-p": "ip->gone.test",  # NXDOMAIN: its own name; the delivery worker bounces it
        "tx-relayed.test-r": "relayed->relay.test:2525",
    }

    # A restart: the held mail and the path's rate come back from the changelog; the new worker has no cache.
    lookups_after = Lookups()
    sites.close()
    restarted, sites = stage(lookups_after, bus, resume=proc.out.changelog)
    restarted.tick(T0 + timedelta(minutes=30))
    assert sorted(lookups_after.asked) == ["b.test"]  # the held mail's domain, asked before the tick
    assert sum(t.egress_path == SHARED for t in tasks(bus)) == 1  # still within the restored rate
    restarted.tick(T0 + timedelta(hours=1))
    shared = [t for t in tasks(bus) if t.egress_path == SHARED]
    assert [t.issued_at for t in shared] == [T0, T0 + timedelta(hours=1)]
    assert {t.domain for t in shared} == {"a.test", "b.test"}
    sites.close()
