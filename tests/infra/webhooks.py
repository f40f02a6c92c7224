"""Webhook tests' real parts: HTTP receivers on loopback (aiohttp servers that check signatures and record what
they were sent, answering as a test tells them), the webhooks service as a process, and mail.events written as
the scheduler writes it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiohttp import web

from mailstream.events import fixtures
from mailstream.events.kafka import EventProducer
from mailstream.events.records import LogRecordType
from mailstream.events.topics import EVENTS
from mailstream.webhooks.signature import verify
from tests.infra.stack import free_port

SECRET = "test-webhook-secret-0123"
LOOPBACK = "127.0.0.1"  # where every Receiver listens: webhooks.outbound allows it only when told to


@dataclass(frozen=True)
class Received:
    event_id: str
    type: str
    transaction_id: str
    attempt: int
    signed: bool  # the signature verified against SECRET
    answered: int  # the status the receiver gave
    at: float  # time.monotonic()


Answer = Callable[["Receiver", dict[str, Any]], Awaitable[int]]


async def accept(_: Receiver, __: dict[str, Any]) -> int:
    return 200


@dataclass
class Receiver:
    """One endpoint: POST / records the request and answers what `answer` says."""

    answer: Answer = accept
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        """Close the port: from now on the service's connections are refused."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _hook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        event = json.loads(raw)
        signed = verify(
            SECRET,
            request.headers.get("X-Mailstream-Signature", ""),
            request.headers.get("X-Mailstream-Timestamp", ""),
            raw,
            now=time.time(),
        )
        status = await self.answer(self, event)
        self.received.append(
            Received(
                event["id"],
                event["type"],
                event["transaction_id"],
                int(request.headers["X-Mailstream-Attempt"]),
                signed,
                status,
                time.monotonic(),
            )
        )
        return web.Response(status=status)

    def accepted(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.answered < 300]

    def accepted_ids(self) -> set[str]:
        return {r.event_id for r in self.accepted()}


def endpoint(
    name: str, tenant: str, receiver: Receiver, events: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "tenant": tenant,
        "url": receiver.url,
        "secret": SECRET,
        "events": events or ["delivered", "deferred", "bounced"],
        **extra,
    }


@dataclass
class WebhooksProcess:
    """`python -m mailstream.webhooks` with a config of its own (a consumer-group prefix unique to the test)."""

    bootstrap: str
    workdir: Path
    endpoints: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)
    app_id: str = field(default_factory=lambda: f"test-webhooks-{uuid.uuid4().hex[:8]}")
    web_port: int = field(default_factory=free_port)
    name: str = ""  # of its config and log files; default: the app_id (a replica shares that)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def _files(self) -> str:
        return self.name or self.app_id

    def config(self) -> dict[str, Any]:
        return {
            "kafka": {"bootstrap_servers": self.bootstrap},
            "webhooks": {
                "app_id": self.app_id,
                "web_port": self.web_port,
                "retry_interval": "0.2s",
                "max_retry_interval": "1s",
                "endpoints": self.endpoints,
                "outbound": {"allow": [LOOPBACK]},  # the receivers' network, which the default denies
                **self.extra,
            },
        }

    async def start(self, timeout: float = 60.0) -> None:
        path = self.workdir / f"{self._files}.yaml"
        path.write_text(yaml.safe_dump(self.config()))
        with (self.workdir / f"{self._files}.log").open("ab") as log:
            self.proc = await asyncio.to_thread(
                subprocess.Popen,
                [sys.executable, "-m", "mailstream.webhooks", "--config", str(path)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.log()
                try:
                    if (await client.get(f"http://127.0.0.1:{self.web_port}/healthz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"webhooks not healthy in {timeout}s\n{self.log()}")

    async def metrics(self) -> str:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"http://127.0.0.1:{self.web_port}/metrics")).text

    def stop(self) -> None:
        """SIGTERM: each endpoint commits what it finished and leaves its group."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def kill(self) -> None:
        """SIGKILL: nothing committed beyond librdkafka's last periodic commit."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        path = self.workdir / f"{self._files}.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""


async def write_events(
    bootstrap: str,
    tenant: str,
    transactions: int,
    steps: tuple[LogRecordType, ...] = ("TransientFailure", "TransientFailure", "Delivery"),
    prefix: str = "tx",
) -> dict[str, list[str]]:
    """Each transaction's records, in order, on mail.events keyed by its id; returns tx id -> record types."""
    producer = EventProducer(bootstrap)
    written: dict[str, list[str]] = {}
    try:
        for n in range(transactions):
            tx = f"{tenant}-{prefix}{n}"
            for attempt, kind in enumerate(steps, start=1):
                record = fixtures.log_record().model_copy(
                    update={"type": kind, "id": tx, "tenant": tenant, "num_attempts": attempt}
                )
                await producer.send(EVENTS, tx, record)
            written[tx] = list(steps)
    finally:
        await producer.close()
    return written


async def wait_for(condition: Callable[[], bool], timeout: float, what: str, log: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout}s\n{log()}")
        await asyncio.sleep(0.1)


def _offset(event_id: str) -> int:
    return int(event_id.partition("-")[2])


def out_of_order(receiver: Receiver) -> list[Received]:
    """Requests for an event that came before every earlier event of its transaction was accepted (all of one
    transaction's events are on one partition, so their offsets order them)."""
    events: dict[str, set[int]] = {}
    for r in receiver.received:
        events.setdefault(r.transaction_id, set()).add(_offset(r.event_id))
    accepted: set[str] = set()
    wrong = []
    for r in receiver.received:
        earlier = {o for o in events[r.transaction_id] if o < _offset(r.event_id)}
        partition = r.event_id.partition("-")[0]
        if any(f"{partition}-{o}" not in accepted for o in earlier):
            wrong.append(r)
        if 200 <= r.answered < 300:
            accepted.add(r.event_id)
    return wrong


def per_transaction(receiver: Receiver) -> dict[str, int]:
    """How many distinct events of each transaction the receiver accepted."""
    count: dict[str, set[str]] = {}
    for r in receiver.accepted():
        count.setdefault(r.transaction_id, set()).add(r.event_id)
    return {tx: len(ids) for tx, ids in count.items()}
