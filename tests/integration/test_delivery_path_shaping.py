"""Egress path shaping as the delivery worker enforces it, against real SMTP servers on loopback:
connection_limit, max_deliveries_per_connection, max_connection_rate, connection reuse, path_wait.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailstream.config.model import parse_config
from mailstream.core.clock import ManualClock, system_clock
from mailstream.core.path_connections import ConnectionShape
from mailstream.core.throttle import ThrottleSpec
from mailstream.delivery.dispatch import Gate, PathDispatcher
from mailstream.delivery.routes import route_for
from mailstream.delivery.smtp_client import Destination, SessionSettings, SmtpAttempt, SmtpSession
from mailstream.delivery.worker import DeliveryWorker
from tests.infra.smtp_recorder import RecordingSink

pytestmark = pytest.mark.integration
BODY = b"Subject: shaped\r\n\r\nhello\r\n"
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
QUARTER = timedelta(milliseconds=250)


def dispatcher(sink: RecordingSink, shaping: dict[str, Any], **delivery: Any) -> PathDispatcher:
    """The worker's dispatcher for source s1 -> the sink (the smarthost), shaped by a site rule."""
    config = parse_config(
        {
            "ingest": {"message_id_domain": "worker.test"},  # not the default, socket.getfqdn(): DNS may be slow
            "delivery": {
                "smarthost": sink.hostport,
                "outbound": {"allow": [sink.hostport]},  # loopback, which the default denies
                "ehlo_domain": "worker.test",
                "connect_timeout": "5s",
                "command_timeout": "10s",
                **delivery,
            },
            "egress": {
                "sources": [{"name": "s1"}],
                "pools": [{"name": "p", "entries": [{"name": "s1"}]}],
                "paths": [{"site": sink.hostport, **shaping}],
            },
            "queues": {"egress_pool": "p"},
        },
        env={},
    )
    worker = DeliveryWorker(config, system_clock)
    source = config.egress.source("s1")
    return worker.dispatcher(source, route_for(source, config.delivery, "example.com"))


async def send(path: PathDispatcher, count: int, wait: float = 30.0) -> list[int]:
    attempts = await asyncio.gather(
        *(path.deliver("from@worker.test", f"r{i}@example.com", BODY, wait) for i in range(count))
    )
    return [a.response.code if a is not None else 0 for a in attempts]


@pytest.mark.parametrize(("limit", "most"), [(1, 1), (None, 10)])
async def test_connection_limit_bounds_concurrent_connections(limit: int | None, most: int) -> None:
    with RecordingSink(delay=0.05) as sink:
        path = dispatcher(sink, {"connection_limit": limit} if limit else {})
        assert await send(path, 10) == [250] * 10
        await path.close()
    assert sink.max_concurrent() == most
    assert len(sink.messages) == 10


async def test_connections_are_reused_and_retired_after_max_deliveries() -> None:
    with RecordingSink() as sink:
        path = dispatcher(sink, {"max_deliveries_per_connection": 3})
        for i in range(7):  # one after another: each finds the connection the last one left idle
            assert await send(path, 1) == [250], i
        assert not path.dormant(system_clock())  # its idle connection waits for the next message
        await path.close()
        assert path.dormant(system_clock())
    assert [len(c.messages) for c in sink.connections] == [3, 3, 1]
    assert sink.max_concurrent() == 1  # a retired connection QUITs before the next one opens
    assert all(c.closed is not None for c in sink.connections)


async def test_concurrent_messages_share_few_connections() -> None:
    """Without limits, 200 messages at once travel on at most `concurrency` connections, not 200."""
    with RecordingSink() as sink:
        path = dispatcher(sink, {"max_message_rate": "1000/s"}, concurrency=8)
        assert await send(path, 200) == [250] * 200
        await path.close()
    assert len(sink.connections) <= 8
    assert sum(len(c.messages) for c in sink.connections) == 200


class VirtualTime:
    """The dispatcher's clock and sleep: a sleep moves the clock to its end at once, then yields. The clock
    moves only there, so what the test reads is what the dispatcher decided, however loaded the machine is
    (on the wall clock a slow SMTP exchange let the rate recover before the test looked at it)."""

    def __init__(self, start: datetime) -> None:
        self.clock = ManualClock(start)
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(max(timedelta(0), timedelta(seconds=seconds)))
        await asyncio.sleep(0)


@pytest.mark.parametrize("rate", ["4/s,max_burst=1", None])
async def test_max_connection_rate_spaces_new_connections(rate: str | None) -> None:
    """Measured where the worker connects, in the dispatcher's own (virtual) time."""
    virtual = VirtualTime(T0)
    started: list[datetime] = []
    with RecordingSink() as sink:
        settings = SessionSettings("worker.test", None, "disabled", None, 5.0, 10.0)

        async def connect() -> SmtpSession | SmtpAttempt:
            started.append(virtual.clock())
            return await SmtpSession.open([Destination(*sink.address)], settings)

        shape = ConnectionShape(rate=ThrottleSpec.parse(rate) if rate else None, per_connection=1)
        path = PathDispatcher(
            "s1->sink", shape, connect, Gate(64), virtual.clock, idle_timeout=5.0, sleep=virtual.sleep
        )
        assert await send(path, 4) == [250] * 4
        await path.close()
        if rate:  # the throttle's state outlives the burst, until the fifth connection would be allowed
            assert not path.dormant(virtual.clock())
            assert path.dormant(T0 + 4 * QUARTER)
        else:
            assert path.dormant(virtual.clock())
    assert len(sink.connections) == 4
    if rate:
        assert started == [T0 + i * QUARTER for i in range(4)]  # one every 250 ms: none sooner, none later
        assert virtual.slept
        assert all(s > 0 for s in virtual.slept)
    else:
        assert started == [T0] * 4  # unthrottled they all open at once, without waiting
        assert virtual.slept == []


async def test_a_message_that_waits_past_path_wait_is_withdrawn_not_sent() -> None:
    with RecordingSink(delay=1.0) as sink:
        path = dispatcher(sink, {"connection_limit": 1})
        codes = await send(path, 2, wait=0.3)
        await path.close()
    assert sorted(codes) == [0, 250]  # 0: deliver() gave up; the worker answers 451 4.4.5 for it
    assert len(sink.messages) == 1
