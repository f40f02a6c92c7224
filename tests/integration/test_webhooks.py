"""The webhooks service as a process on a real broker, POSTing to real HTTP servers on loopback: one that checks
signatures, one that fails for a while, one that is slow, one that dies mid-run; and the service itself stopped
and killed mid-run. Each test has its own tenants and consumer groups, so tests sharing a broker see only their
own events (an endpoint's group starts at the endpoint's creation)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.infra.webhooks import (
    Receiver,
    WebhooksProcess,
    endpoint,
    out_of_order,
    per_transaction,
    wait_for,
    write_events,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DEFERRED_DEFERRED_DELIVERED = 3  # events per transaction write_events writes by default


def tenant() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def complete(receiver: Receiver, written: dict[str, list[str]], per_tx: int = DEFERRED_DEFERRED_DELIVERED) -> bool:
    return per_transaction(receiver) == dict.fromkeys(written, per_tx)


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    series = f"{name}{{{wanted}}}" if labels else name
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def settles(service: WebhooksProcess, value: float, name: str, **labels: str) -> None:
    deadline = time.monotonic() + 10
    while (seen := metric(await service.metrics(), name, **labels)) != value:
        assert time.monotonic() < deadline, f"{name} {labels}: {seen}, not {value}"
        await asyncio.sleep(0.1)


async def test_a_good_endpoint_gets_its_tenants_events_once_signed(kafka_bootstrap: str, tmp_path: Path) -> None:
    acme, globex = tenant(), tenant()
    good = await Receiver().start()
    service = WebhooksProcess(kafka_bootstrap, tmp_path, [endpoint("good", acme, good, ["delivered", "deferred"])])
    await service.start()
    try:
        # The other tenant's first: they sit before ours on the partitions, so once ours arrived, theirs were passed.
        await write_events(kafka_bootstrap, globex, 5)
        written = await write_events(kafka_bootstrap, acme, 8, steps=("Reception", "TransientFailure", "Delivery"))
        await wait_for(lambda: complete(good, written, 2), 60, "every deferred and delivered event", service.log)
        assert {r.transaction_id.partition("-")[0] for r in good.received} == {acme}
        assert all(r.signed for r in good.received)
        assert [r.attempt for r in good.received] == [1] * 16  # each once: nothing failed
        assert {r.type for r in good.received} == {"deferred", "delivered"}  # no Reception
        assert out_of_order(good) == []
        # The receiver counts a request before the service has recorded its attempt and counted it.
        await settles(service, 16, "mailstream_webhook_deliveries_total", endpoint="config-good", outcome="delivered")
        await settles(service, 0, "mailstream_webhook_lag_records", endpoint="config-good")
        assert metric(await service.metrics(), "mailstream_webhook_endpoints") == 1
        assert "endpoint_failed" not in service.log()  # no worker crashed and was restarted
    finally:
        service.stop()
        await good.stop()


async def test_a_failing_endpoint_is_retried_and_order_per_transaction_kept(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    acme = tenant()
    failures = 0

    async def fail_for_a_while(_: Receiver, __: dict[str, Any]) -> int:
        nonlocal failures
        failures += 1
        return 500 if failures <= 20 else 200

    flaky = await Receiver(fail_for_a_while).start()
    service = WebhooksProcess(kafka_bootstrap, tmp_path, [endpoint("flaky", acme, flaky)])
    await service.start()
    try:
        written = await write_events(kafka_bootstrap, acme, 8)
        await wait_for(lambda: complete(flaky, written), 60, "every event past the failures", service.log)
        assert sum(r.answered == 500 for r in flaky.received) == 20
        assert max(r.attempt for r in flaky.received) > 1  # the failed ones came again
        assert out_of_order(flaky) == []  # no event before its transaction's earlier ones were accepted
        assert per_transaction(flaky) == dict.fromkeys(written, 3)
        assert "endpoint_failed" not in service.log()  # no worker crashed and was restarted
    finally:
        service.stop()
        await flaky.stop()


async def test_a_slow_endpoint_holds_back_no_other_endpoint_or_tenant(kafka_bootstrap: str, tmp_path: Path) -> None:
    acme, globex = tenant(), tenant()
    release = asyncio.Event()

    async def hold(_: Receiver, __: dict[str, Any]) -> int:
        await release.wait()
        return 200

    slow, same_tenant, other_tenant = (await Receiver(hold).start(), await Receiver().start(), await Receiver().start())
    service = WebhooksProcess(
        kafka_bootstrap,
        tmp_path,
        [
            endpoint("slow", acme, slow, timeout="2m"),
            endpoint("fast", acme, same_tenant),
            endpoint("other", globex, other_tenant),
        ],
    )
    await service.start()
    try:
        ours = await write_events(kafka_bootstrap, acme, 8)
        theirs = await write_events(kafka_bootstrap, globex, 8)
        # The slow endpoint answers nothing until the others have everything: were they waiting on it, this fails.
        await wait_for(
            lambda: complete(same_tenant, ours) and complete(other_tenant, theirs),
            60,
            "the fast endpoints' events while the slow one hangs",
            service.log,
        )
        assert slow.received == []  # its requests are all still waiting for an answer
        release.set()
        await wait_for(lambda: complete(slow, ours), 60, "the slow endpoint's events once it answers", service.log)
        assert out_of_order(slow) == []
        assert "endpoint_failed" not in service.log()  # no worker crashed and was restarted
    finally:
        release.set()
        service.stop()
        for receiver in (slow, same_tenant, other_tenant):
            await receiver.stop()


async def test_an_endpoint_that_dies_mid_run_gets_everything_once_back(kafka_bootstrap: str, tmp_path: Path) -> None:
    acme = tenant()
    dying = await Receiver().start()
    service = WebhooksProcess(kafka_bootstrap, tmp_path, [endpoint("dying", acme, dying)])
    await service.start()
    try:
        written = await write_events(kafka_bootstrap, acme, 2)
        await wait_for(lambda: complete(dying, written), 60, "the first events", service.log)
        await dying.stop()  # the port closes: connections are refused from here on
        written |= await write_events(kafka_bootstrap, acme, 8, prefix="later")

        async def refused() -> float:
            return metric(
                await service.metrics(),
                "mailstream_webhook_attempts_total",
                endpoint="config-dying",
                result="no_answer",
            )

        deadline = time.monotonic() + 30
        while await refused() < 5:  # the service keeps trying the dead endpoint
            assert time.monotonic() < deadline, service.log()
            await asyncio.sleep(0.2)
        await dying.start()  # back on the same port
        await wait_for(lambda: complete(dying, written), 60, "every event once the endpoint is back", service.log)
        assert out_of_order(dying) == []
        assert "endpoint_failed" not in service.log()  # no worker crashed and was restarted
    finally:
        service.stop()
        await dying.stop()


async def test_a_stopped_service_resumes_where_it_stopped(kafka_bootstrap: str, tmp_path: Path) -> None:
    acme = tenant()
    receiver = await Receiver().start()
    service = WebhooksProcess(kafka_bootstrap, tmp_path, [endpoint("hook", acme, receiver)])
    await service.start()
    try:
        before = await write_events(kafka_bootstrap, acme, 6)
        await wait_for(lambda: complete(receiver, before), 60, "the events before the stop", service.log)
        service.stop()
        during = await write_events(kafka_bootstrap, acme, 6, prefix="down")  # written while it is down
        await service.start()
        await wait_for(lambda: complete(receiver, before | during), 60, "the events written while down", service.log)
        assert len(receiver.received) == len(receiver.accepted_ids()) == 36  # nothing sent twice
        assert out_of_order(receiver) == []
        assert "endpoint_failed" not in service.log()  # no worker crashed and was restarted
    finally:
        service.stop()
        await receiver.stop()


async def test_a_killed_service_loses_nothing_and_resends_only_the_uncommitted(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    acme = tenant()

    async def a_little_slow(_: Receiver, __: dict[str, Any]) -> int:
        await asyncio.sleep(0.25)
        return 200

    receiver = await Receiver(a_little_slow).start()
    service = WebhooksProcess(kafka_bootstrap, tmp_path, [endpoint("hook", acme, receiver)])
    await service.start()
    try:
        written = await write_events(kafka_bootstrap, acme, 24)  # 72 events: several seconds of work
        await wait_for(lambda: len(receiver.accepted()) >= 20, 60, "deliveries under way", service.log)
        service.kill()
        killed_at = time.monotonic()
        assert not complete(receiver, written)  # killed mid-run
        await service.start()
        await wait_for(lambda: complete(receiver, written), 90, "every event after the restart", service.log)
        first: dict[str, float] = {}
        for r in receiver.accepted():
            first.setdefault(r.event_id, r.at)
        resent = {r.event_id for r in receiver.accepted() if r.at != first[r.event_id]}
        # librdkafka commits what was finished every second: only events finished in the last second or so before
        # the kill (or in flight) may come again.
        assert all(first[e] > killed_at - 2.5 for e in resent), sorted(killed_at - first[e] for e in resent)
        assert out_of_order(receiver) == []
        assert "endpoint_failed" not in service.log()  # no worker crashed and was restarted
    finally:
        service.stop()
        await receiver.stop()


async def test_replicas_share_an_endpoints_partitions(kafka_bootstrap: str, tmp_path: Path) -> None:
    acme = tenant()
    receiver = await Receiver().start()
    first = WebhooksProcess(kafka_bootstrap, tmp_path, [endpoint("hook", acme, receiver)], name="first")
    second = WebhooksProcess(kafka_bootstrap, tmp_path, first.endpoints, app_id=first.app_id, name="second")
    await first.start()
    await second.start()
    try:
        written: dict[str, list[str]] = {}

        async def delivered(replica: WebhooksProcess) -> float:
            return metric(
                await replica.metrics(),
                "mailstream_webhook_deliveries_total",
                endpoint="config-hook",
                outcome="delivered",
            )

        deadline = time.monotonic() + 60
        while not (await delivered(first) > 0 and await delivered(second) > 0):  # the group spread the partitions
            assert time.monotonic() < deadline, first.log() + second.log()
            written |= await write_events(kafka_bootstrap, acme, 4, prefix=f"r{len(written)}-")
            await asyncio.sleep(0.5)
        await wait_for(lambda: complete(receiver, written), 60, "every event from the two replicas", second.log)
        assert out_of_order(receiver) == []
        assert await delivered(first) + await delivered(second) >= 3 * len(written)
    finally:
        first.stop()
        second.stop()
        await receiver.stop()
