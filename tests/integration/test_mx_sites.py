"""MX sites against a real broker and a real DNS server on loopback: stage 2 names the egress path of mail
delivered by MX after the routing domain's MX host set, so two domains on one MX share one path and its
`max_message_rate`; a domain of another MX gets a path of its own; a domain that does not exist, or whose
lookup does not answer, keeps its own name as site and is still sent (the delivery worker bounces or defers it).
The delivery worker then shares the path's connections (and `connection_limit`) across both domains.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Producer

from mailstream.config.model import Config, parse_config
from mailstream.core.clock import system_clock
from mailstream.core.partitioner import partition_of
from mailstream.delivery.worker import DeliveryWorker
from mailstream.events.kafka import ensure_topics
from mailstream.events.processor import TransactionalProcessor
from mailstream.events.records import BodyRef, DeliveryTask, ReadyMessage
from mailstream.events.serde import decode, encode
from mailstream.events.topics import ALL_TOPICS, DELIVERY, EGRESS_STATE, PARTITIONS, READY
from mailstream.scheduler import egress_keys
from mailstream.scheduler.egress_keys import PathRate
from mailstream.scheduler.egress_stage import EgressStage
from mailstream.scheduler.mx_sites import MxSites
from mailstream.scheduler.policy import Policies
from tests.infra.dns_server import LoopbackDns
from tests.infra.smtp_recorder import RecordingSink
from tests.infra.topics import end_offsets, latest_by_key, read_all

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


def zone(tag: str) -> dict[tuple[str, str], list[str]]:
    shared = f"shared-{tag}.test"
    return {
        # The same two exchangers, answered in another order: one site.
        (f"a-{tag}.test", "MX"): [f"10 mx1.{shared}.", f"20 mx2.{shared}."],
        (f"b-{tag}.test", "MX"): [f"20 MX2.{shared}.", f"10 mx1.{shared}."],
        (f"c-{tag}.test", "MX"): [f"10 mx.other-{tag}.test."],
        (f"mx1.{shared}", "A"): ["127.0.0.1"],
        (f"mx2.{shared}", "A"): ["127.0.0.1"],
        (f"silent-{tag}.test", "TXT"): ["x"],  # exists; its MX query is never answered
    }


def config(tag: str, dns: LoopbackDns, **paths: Any) -> Config:
    source, pool = f"s-{tag}", f"p-{tag}"
    return parse_config(
        {
            "ingest": {"message_id_domain": "m.test"},
            "scheduler": {"app_id": f"mxsites-{tag}", "mx_sites": {"lookup_timeout": "1s"}},
            "delivery": {"nameservers": [dns.address], "ehlo_domain": "m.test"},
            "egress": {
                # Records of other tests on a shared broker fall to this pool too: a source of this test's own.
                "sources": [{"name": source}],
                "pools": [{"name": pool, "entries": [{"name": source}]}],
                "paths": [{"site_pattern": f"*.shared-{tag}.test", **paths}],
            },
            "queues": {"egress_pool": pool},
        },
        env={},
    )


def ready(tag: str, name: str, domain: str) -> ReadyMessage:
    return ReadyMessage(
        id=f"{tag}-{name}",
        attempt=1,
        queue=domain,
        sender="news@m.test",
        recipient=f"r@{domain}",
        domain=domain,
        egress_pool=f"p-{tag}",
        body=BodyRef(topic="mail.bodies", partition=0, offset=0, sha256="0" * 64, size=10),
        created_at=T0,
        ready_at=T0,
        expires_at=T0 + timedelta(days=7),
    )


@pytest.fixture
def stage2(kafka_bootstrap: str) -> Iterator[tuple[str, Clock]]:
    tag = uuid.uuid4().hex[:8]
    ensure_topics(kafka_bootstrap, list(ALL_TOPICS))
    with LoopbackDns(zone(tag), silent={(f"silent-{tag}.test", "MX")}, ttl=300) as dns:
        cfg = config(tag, dns, max_message_rate="1/h")
        clock = Clock()
        sites = MxSites(cfg.scheduler.mx_sites, cfg.delivery.nameservers)
        processor = TransactionalProcessor(
            bootstrap=kafka_bootstrap,
            group_id=f"{cfg.scheduler.app_id}-egress",
            inputs=[READY.name],
            changelog=EGRESS_STATE.name,
            partitions=PARTITIONS,
            handler=EgressStage(Policies(cfg), sites=sites),
            clock=clock,
            tick_interval=0.2,
            name="egress",
        )
        stop = threading.Event()
        thread = threading.Thread(target=processor.run, args=(stop,), daemon=True)
        thread.start()
        try:
            yield tag, clock
        finally:
            stop.set()
            thread.join(30)
            sites.close()


def tasks_for(bootstrap: str, tag: str, start: list[int]) -> dict[str, DeliveryTask]:
    found = {}
    for _, _, _, value in read_all(bootstrap, DELIVERY.name, PARTITIONS, start=start):
        if value is not None:
            task = decode(value, DeliveryTask)
            if task.id.startswith(tag):
                found[task.id.removeprefix(f"{tag}-")] = task
    return found


def wait_for(bootstrap: str, tag: str, start: list[int], names: set[str]) -> dict[str, DeliveryTask]:
    deadline = time.monotonic() + 90
    while True:
        found = tasks_for(bootstrap, tag, start)
        if names <= found.keys() or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_domains_sharing_an_mx_share_one_path_and_its_message_rate(
    kafka_bootstrap: str, stage2: tuple[str, Clock]
) -> None:
    tag, clock = stage2
    start = end_offsets(kafka_bootstrap, DELIVERY.name, PARTITIONS)
    domains = {"a": f"a-{tag}.test", "b": f"b-{tag}.test", "c": f"c-{tag}.test"}
    domains |= {"gone": f"gone-{tag}.test", "silent": f"silent-{tag}.test"}
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    pool = f"p-{tag}"
    for name, domain in domains.items():  # keyed by egress group, as stage 1 writes them
        message = ready(tag, name, domain)
        producer.produce(READY.name, encode(message), pool.encode(), partition=partition_of(pool.encode(), PARTITIONS))
    assert producer.flush(30) == 0

    # One of a and b goes at once; the other waits for the shared path's 1/h. c, gone and silent are not held up.
    first = wait_for(kafka_bootstrap, tag, start, {"c", "gone", "silent"})
    assert len({"a", "b"} & first.keys()) == 1, sorted(first)
    shared = f"s-{tag}->(mx1|mx2).shared-{tag}.test"
    source = f"s-{tag}"
    assert {n: t.egress_path for n, t in first.items() if n not in ("a", "b")} == {
        "c": f"{source}->mx.other-{tag}.test",
        "gone": f"{source}->gone-{tag}.test",  # NXDOMAIN: named by itself; the worker bounces it (550 5.1.2)
        "silent": f"{source}->silent-{tag}.test",  # no answer within lookup_timeout: likewise, deferred there
    }
    time.sleep(1.0)  # ticks on the unchanged clock: the other of a and b is still held
    assert {"a", "b"} & tasks_for(kafka_bootstrap, tag, start).keys() == {"a", "b"} & first.keys()

    clock.now = T0 + timedelta(hours=1)
    both = wait_for(kafka_bootstrap, tag, start, {"a", "b"})
    assert both["a"].egress_path == both["b"].egress_path == shared
    issued = sorted([both["a"].issued_at, both["b"].issued_at])
    assert issued == [T0, T0 + timedelta(hours=1)]
    assert all(t.issued_at == T0 for n, t in both.items() if n not in ("a", "b"))

    # The path's rate is one state entry, keyed by the shared path, in stage 2's changelog.
    state = latest_by_key(read_all(kafka_bootstrap, EGRESS_STATE.name, PARTITIONS))
    keys = {egress_keys.parse(k) for k in state if k.startswith(b"l:p:") and tag.encode() in k}
    assert keys == {PathRate(shared)}, keys


async def test_the_delivery_worker_shares_connections_and_connection_limit_across_a_sites_domains() -> None:
    tag = uuid.uuid4().hex[:8]
    with RecordingSink() as sink, LoopbackDns(zone(tag)) as dns:
        cfg = parse_config(
            {
                "ingest": {"message_id_domain": "m.test"},
                "delivery": {
                    "nameservers": [dns.address],
                    "ehlo_domain": "m.test",
                    "smtp_port": sink.address[1],
                    "outbound": {"allow": ["127.0.0.0/8"]},
                },
                "egress": {"paths": [{"site_pattern": f"*.shared-{tag}.test", "connection_limit": 1}]},
            },
            env={},
        )
        worker = DeliveryWorker(cfg, system_clock)
        source = cfg.egress.source("unspecified")
        path = f"unspecified->(mx1|mx2).shared-{tag}.test"  # as stage 2 names it in the task
        routes = [worker.route(source, f"{d}-{tag}.test", path) for d in ("a", "b") * 4]
        dispatchers = {id(worker.dispatcher(source, r)) for r in routes}
        assert len(dispatchers) == 1
        sends = [
            worker.dispatcher(source, r).deliver("news@m.test", f"r{i}@{r.domain}", b"Subject: s\r\n\r\nx\r\n", 30.0)
            for i, r in enumerate(routes)
        ]
        attempts = await asyncio.gather(*sends)
        await worker.dispatcher(source, routes[0]).close()
        assert [a.response.code if a else None for a in attempts] == [250] * 8
        assert sink.max_concurrent() == 1
        assert {rcpt.rpartition("@")[2] for m in sink.messages for rcpt in m.rcpt_tos} == {
            f"a-{tag}.test",
            f"b-{tag}.test",
        }
