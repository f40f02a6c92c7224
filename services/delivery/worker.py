"""Delivery worker: consume tasks, send each over its egress path, write its response, then commit.

Each task names its egress source; the source's relay, else the smarthost, else the domain's MX
is where it goes, from the source's address, with its EHLO name and its envelope sender if it has
one (`mailstream.core.envelope_sender`). Messages of one egress path
(`source->site`, the key of mail.delivery, so one worker owns a path) share connections under the
path's shaping: see `mailstream.delivery.dispatch`.

Responses and the consumed offsets commit together in Kafka transactions (`mailstream.delivery.ledger`),
so a worker restarted after any crash, or the next owner of a partition, sends again only the attempts
whose response was not yet committed. Within one process a task read again is answered from the
recent-attempts memory. Losing the cluster makes the worker degraded, never makes it exit.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client import Counter, Histogram

from mailstream.config.egress_paths import PathShapes, site_of
from mailstream.config.model import Config
from mailstream.config.scheduling import EgressSource
from mailstream.core.clock import Clock
from mailstream.core.egress_path import EgressPath
from mailstream.core.envelope_sender import envelope_sender
from mailstream.core.path_connections import ConnectionShape
from mailstream.core.smtp_reply import outcome_of
from mailstream.delivery.dispatch import Connector, Gate, PathDispatcher
from mailstream.delivery.ledger import Ledger
from mailstream.delivery.mta_sts import MtaSts, applied
from mailstream.delivery.mx import MxResolver
from mailstream.delivery.outbound import Outbound
from mailstream.delivery.routes import Route, route_for
from mailstream.delivery.shaped_limits import ShapedLimits
from mailstream.delivery.smtp_client import SessionSettings, SmtpAttempt, SmtpSession, printable
from mailstream.delivery.unreadable import UNREADABLE, dead_letter, salvage
from mailstream.events.bodies import BodyCorrupt, BodyReader
from mailstream.events.kafka import Cluster, Consumed, EventConsumer, KafkaUnavailable
from mailstream.events.records import DeliveryResponse, DeliveryTask, SmtpResponse
from mailstream.events.serde import SerdeError, decode
from mailstream.events.topics import DEAD_LETTER, DELIVERY, RESPONSES, route_key
from mailstream.events.transactions import OffsetTransactions, Outgoing
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
ATTEMPTS = Counter("mailstream_delivery_attempts_total", "Delivery attempts by outcome", ["outcome"])
LATENCY = Histogram("mailstream_delivery_attempt_seconds", "Attempt duration, connection wait included")
CONNECTIONS = Counter("mailstream_delivery_connections_total", "SMTP connections opened")


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    batch_size: int = 256
    max_in_flight: int = 4096  # tasks taken but not answered and committed; beyond it the worker pauses fetching
    commit_interval: float = 0.05  # seconds between transactions (responses + offsets)
    stop_within: float = 9.0  # seconds from stop() to the end of run(), whatever the cluster does
    kafka_timeout: float = 5.0  # seconds any one blocking Kafka call may take
    probe_interval: float = 2.0  # seconds between checks that the cluster answers (health)
    remembered_attempts: int = 100_000


def _task_path(egress_path: str | None, source: str) -> EgressPath | None:
    try:
        path = EgressPath.parse(egress_path) if egress_path else None
    except ValueError:
        return None
    return path if path is not None and path.source == source else None


def _internal(content: str, enhanced: str = "4.3.0", command: str = "BODY") -> SmtpResponse:
    return SmtpResponse(code=451, enhanced_code=enhanced, command=command, content=f"mailstream internal: {content}")


class DeliveryWorker:
    def __init__(self, config: Config, clock: Clock, settings: WorkerSettings = WorkerSettings()) -> None:
        self._config = config
        self._clock = clock
        self._settings = settings
        dc = config.delivery
        self._sources = {s.name: s for s in config.egress.sources}
        self._shapes = PathShapes(config.egress)
        self._gate = Gate(dc.concurrency)
        mx = MxResolver(dc.nameservers, dc.smtp_port, timeout=dc.connect_timeout.total_seconds())
        self._outbound = Outbound(dc.outbound.policy(), mx)
        ca_file = str(dc.tls_ca_file) if dc.tls_ca_file is not None else None
        self._mta_sts = MtaSts(dc.mta_sts, mx, dc.outbound.policy(), ca_file, clock) if dc.mta_sts.enabled else None
        self._paths: dict[tuple[EgressPath, str], PathDispatcher] = {}  # by path (and domain, under MTA-STS)
        self.shaped = ShapedLimits()  # connection limits adaptive shaping sets, from mail.shaping
        self._done: OrderedDict[str, DeliveryResponse] = OrderedDict()
        self._stopping = asyncio.Event()
        self._stop_at = float("inf")
        self.state = "starting"  # ok | degraded (the cluster does not answer, or commits fail) | stopping

    def route(self, source: EgressSource, domain: str, egress_path: str | None = None) -> Route:
        """Where the source's mail to `domain` goes, and with which TLS policy (path rules, source, default).
        `egress_path`: the task's, whose site stage 2 chose (the MX site); one that is not the source's is
        ignored for the domain's own."""
        dc = self._config.delivery
        path = _task_path(egress_path, source.name) or EgressPath(source.name, site_of(source, dc.smarthost, domain))
        return route_for(source, dc, domain, self._shapes.starttls(source.name, path.site, domain), path)

    def dispatcher(self, source: EgressSource, route: Route) -> PathDispatcher:
        """The path's dispatcher; its shaping is resolved for the first task's domain, as KumoMTA's ready queue.
        Domains of one MX site share it (and its connections), except under MTA-STS, whose policy is a domain's:
        there each domain of the site connects on its own."""
        key = (route.path, route.domain if self._mta_sts is not None and not route.hosts else "")
        found = self._paths.get(key)
        if found is None:
            shape = self._shapes.shape(route.path.source, route.path.site, route.domain)
            found = self._paths[key] = PathDispatcher(
                route.path.key(),
                ConnectionShape(shape.connection_limit, shape.max_connection_rate, shape.max_deliveries_per_connection),
                self._connector(source, route),
                self._gate,
                self._clock,
                self._config.delivery.idle_timeout.total_seconds(),
            )
        self._narrow(found)
        return found

    def _narrow(self, path: PathDispatcher) -> None:
        """The path's connection limit: as configured, or lower while an adaptive-shaping action says so."""
        shaped = self.shaped.limit(path.path, self._clock())
        base = path.base
        want = base if shaped is None else replace(base, limit=min(shaped, base.limit or shaped))
        if want != path.shape:
            log.info("path_reshaped", path=path.path, connection_limit=want.limit, configured=base.limit)
            path.reshape(want)

    def _connector(self, source: EgressSource, route: Route) -> Connector:
        dc = self._config.delivery
        settings = SessionSettings(
            ehlo_domain=source.ehlo_domain or dc.ehlo_domain,
            source_address=str(source.source_address) if source.source_address else None,
            starttls=route.starttls,
            login=route.login,
            connect_timeout=dc.connect_timeout.total_seconds(),
            command_timeout=dc.command_timeout.total_seconds(),
            ca_file=route.ca_file,
            implicit_tls=route.implicit_tls,
        )

        async def connect() -> SmtpSession | SmtpAttempt:
            CONNECTIONS.inc()
            deadline = asyncio.get_running_loop().time() + dc.attempt_timeout.total_seconds()
            try:
                async with asyncio.timeout_at(deadline):  # many exchangers whose DNS is slow: still one deadline
                    hosts = await self._outbound.destinations(route)
            except TimeoutError:
                unresolved = f"mailstream: the addresses of {route.domain} not found within the attempt's deadline"
                hosts = SmtpResponse(code=451, enhanced_code="4.4.3", command="MX", content=unresolved)
            session = settings
            if not isinstance(hosts, SmtpResponse) and not route.hosts and self._mta_sts is not None:
                try:  # MX hosts only: a relay or the smarthost is the operator's choice, not the domain's
                    async with asyncio.timeout_at(deadline):
                        policy = await self._mta_sts.policy(route.domain)
                except TimeoutError:
                    policy = None  # as if the domain had none (RFC 8461 §5); the attempt's deadline is spent
                applied_ = applied(policy, route.domain, hosts, settings)
                hosts, session = (applied_, settings) if isinstance(applied_, SmtpResponse) else applied_
            if isinstance(hosts, SmtpResponse):
                return SmtpAttempt(hosts, None, None)
            return await SmtpSession.open(hosts, session, deadline)

        return connect

    async def _send(self, task: DeliveryTask, bodies: BodyReader) -> SmtpAttempt:
        source = self._sources.get(task.egress_source)
        if source is None:  # removed from the configuration since the scheduler chose it: choose again
            return SmtpAttempt(
                _internal(f"unknown egress source {task.egress_source!r}", "4.4.0", "CONNECT"), None, None
            )
        dc = self._config.delivery
        route = self.route(source, task.routing_domain or task.domain, task.egress_path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + dc.attempt_timeout.total_seconds()
        try:
            data = await bodies.get(task.body)
        except (KafkaUnavailable, BodyCorrupt, SerdeError) as exc:
            return SmtpAttempt(_internal(str(exc)), None, None)
        data = traced(data, task.attempt_id)
        path = self.dispatcher(source, route)
        wait = min(dc.path_wait.total_seconds(), deadline - loop.time())
        sender = envelope_sender(task.sender, task.id, pattern=source.envelope_sender, from_email=source.from_email)
        attempt = await path.deliver(sender, task.recipient, data, max(wait, 0.0), deadline)
        if attempt is None:
            return SmtpAttempt(
                _internal(
                    f"no connection on egress path {route.path} within {min(dc.path_wait, dc.attempt_timeout)}",
                    "4.4.5",
                    "CONNECT",
                ),
                None,
                None,
            )
        return attempt

    async def _attempt(self, task: DeliveryTask, bodies: BodyReader) -> DeliveryResponse:
        remembered = self._done.get(task.attempt_id)
        if remembered is not None:
            return remembered
        started = self._clock()
        with LATENCY.time():
            result = await self._send(task, bodies)
        response = result.response
        outcome = outcome_of(response.code)
        ATTEMPTS.labels(outcome).inc()
        answer = DeliveryResponse(
            id=task.id,
            attempt=task.attempt,
            attempt_id=task.attempt_id,
            queue=task.queue,
            outcome=outcome,
            response=response,
            egress_source=task.egress_source,
            egress_path=task.egress_path,
            peer_address=result.peer_address,
            tls=result.tls,
            tls_version=result.tls_info.version if result.tls_info else None,
            tls_cipher=result.tls_info.cipher if result.tls_info else None,
            started_at=started,
            completed_at=self._clock(),
        )
        self._done[task.attempt_id] = answer
        if len(self._done) > self._settings.remembered_attempts:
            self._done.popitem(last=False)
        log.info(
            "attempt",
            id=task.id,
            attempt=task.attempt,
            outcome=outcome,
            code=response.code,
            path=task.egress_path,
            peer=result.peer_address,
            tls=answer.tls_version,
            cipher=answer.tls_cipher,
        )
        return answer

    async def _handle(self, record: Consumed, bodies: BodyReader, ledger: Ledger) -> None:
        tp = (record.topic, record.partition)
        try:
            task = decode(record.value, DeliveryTask)
        except SerdeError as exc:
            self._unreadable(record, str(exc), ledger)
            return
        answer = await self._attempt(task, bodies)
        ledger.answered(
            tp, record.offset, Outgoing(RESPONSES.name, route_key(task.tenant, task.queue).encode(), _encoded(answer))
        )

    def _unreadable(self, record: Consumed, error: str, ledger: Ledger) -> None:
        """Dead-letter the record with its offset; answer its attempt too if its front can be read."""
        tp = (record.topic, record.partition)
        fields = salvage(record.value)
        answered = fields is not None
        log.error("task_unreadable", partition=record.partition, offset=record.offset, error=error, answered=answered)
        UNREADABLE.labels(str(answered).lower()).inc()
        if fields is not None:
            now = self._clock()
            answer = DeliveryResponse(
                id=fields["id"],
                attempt=fields["attempt"],
                attempt_id=fields["attempt_id"],
                queue=fields["queue"],
                outcome=outcome_of(451),
                response=_internal(f"delivery task unreadable, set aside in {DEAD_LETTER.name}: {error}"),
                egress_source=fields["egress_source"],
                egress_path=fields["egress_path"],
                started_at=now,
                completed_at=now,
            )
            key = route_key(fields["tenant"], fields["queue"]).encode()
            ledger.written(Outgoing(RESPONSES.name, key, _encoded(answer)))
        ledger.answered(tp, record.offset, dead_letter(record, error))

    async def run(self) -> None:
        """Tasks are taken as they come, up to `max_in_flight` at once, each answered on its own; every
        `commit_interval` one transaction writes the answers and each partition's checkpoint (`Ledger`).
        A slow destination holds back its own tasks only: the worker goes on polling, and so stays in its group.
        Kafka going away makes the worker degraded, never makes it exit: it goes on retrying.
        """
        bootstrap, dc = Cluster.of(self._config.kafka), self._config.delivery
        consumer = EventConsumer(bootstrap, dc.group_id, [DELIVERY.name])
        writer = OffsetTransactions(bootstrap, dc.group_id, timeout=self._settings.kafka_timeout)
        bodies = BodyReader(bootstrap)
        ledger = Ledger(consumer, writer, self._settings.commit_interval)
        running: set[asyncio.Task[None]] = set()
        failed: list[BaseException] = []
        committing: asyncio.Task[bool] | None = None
        probing: asyncio.Task[None] | None = None

        def finished(task: asyncio.Task[None]) -> None:
            running.discard(task)
            if not task.cancelled() and task.exception() is not None:
                failed.append(task.exception())  # type: ignore[arg-type]  # a bug, not the cluster: stop

        next_probe = 0.0
        shaping = asyncio.create_task(self.shaped.run(bootstrap), name="mailstream.shaping tail")
        try:
            while not self._stopping.is_set():
                if failed:
                    raise failed[0]
                room = self._settings.max_in_flight - len(running) - ledger.unsent
                batch = await self._poll(consumer, room)
                ledger.forget(consumer.revoked())
                given = consumer.assigned()
                if given and not await self._restore(ledger, given):
                    break  # stopping
                for record in batch:
                    if ledger.progress.take((record.topic, record.partition), record.offset):
                        task = asyncio.create_task(self._handle(record, bodies, ledger))
                        running.add(task)
                        task.add_done_callback(finished)
                if (committing is None or committing.done()) and ledger.due():
                    committing = asyncio.create_task(ledger.commit())
                    self._forget_dormant_paths()
                if time.monotonic() >= next_probe and (probing is None or probing.done()):
                    next_probe = time.monotonic() + self._settings.probe_interval
                    probing = asyncio.create_task(self._probe(writer, ledger))
            await self._finish(running, ledger, committing)
        finally:
            self.state = "stopping"
            shaping.cancel()
            for task in running:
                task.cancel()
            await _bounded(asyncio.gather(*(p.close(grace=0.5) for p in self._paths.values())), 1.0)
            await _bounded(asyncio.gather(shaping, return_exceptions=True), 1.0)  # its tailer closes
            await consumer.close(timeout=1.0)
            await writer.close(timeout=0.5)
            threading.Thread(target=bodies.close, daemon=True).start()

    async def _poll(self, consumer: EventConsumer, room: int) -> list[Consumed]:
        try:
            await consumer.pause(room <= 0)
            return await consumer.poll_batch(max(1, min(room, self._settings.batch_size)), timeout=0.05)
        except KafkaUnavailable as exc:
            log.warning("poll_failed", error=str(exc))
            self.state = "degraded"
            await asyncio.sleep(0.5)
            return []

    async def _restore(self, ledger: Ledger, given: list[tuple[str, int]]) -> bool:
        """Read the checkpoints of partitions just assigned before any of their records is handled, retrying
        while the cluster does not answer; False if the worker is told to stop meanwhile."""
        while not self._stopping.is_set():
            try:
                await ledger.restore(given, self._settings.kafka_timeout)
                return True
            except KafkaUnavailable as exc:
                self.state = "degraded"
                log.warning("restore_failed", partitions=given, error=str(exc))
                await asyncio.sleep(1.0)
        return False

    async def _probe(self, writer: OffsetTransactions, ledger: Ledger) -> None:
        reachable = await writer.reachable()
        if self._stopping.is_set():
            return
        if reachable and ledger.ok and not ledger.stalled(self._settings.kafka_timeout):
            self.state = "ok"
        elif self.state != "starting":
            self.state = "degraded"

    async def _finish(
        self, running: set[asyncio.Task[None]], ledger: Ledger, committing: asyncio.Task[bool] | None
    ) -> None:
        """Within `stop_within` of stop(): attempts in flight get what the budget leaves, then one last commit."""
        end = self._stop_at
        if running:
            await asyncio.wait(set(running), timeout=max(0.0, end - time.monotonic() - 3.0))
        for task in running:
            task.cancel()  # not answered: sent again by whoever reads the partition next
        if committing is not None:
            await _bounded(committing, end - time.monotonic() - 2.0)
        await _bounded(ledger.commit(), end - time.monotonic() - 1.5)

    def _forget_dormant_paths(self) -> None:
        """One dispatcher per MX domain would grow without end; a dormant one is rebuilt as it was."""
        now = self._clock()
        for path in [p for p, d in self._paths.items() if d.dormant(now)]:
            del self._paths[path]

    @property
    def healthy(self) -> bool:
        return self.state == "ok"

    def stop(self) -> None:
        self._stop_at = time.monotonic() + self._settings.stop_within
        self._stopping.set()


ATTEMPT_HEADER = b"X-Mailstream-Attempt"


def traced(data: bytes, attempt_id: str) -> bytes:
    """The message with `X-Mailstream-Attempt: <id>/<n>` last in its header: a receiver (or a test's sink) can
    tell a second send of one attempt (a crash after DATA) from a retry. Placed after any DKIM-Signature fields,
    which stay first, and outside what they sign."""
    end = data.find(b"\r\n\r\n")
    cut = 0 if end < 0 else end + 2
    return data[:cut] + ATTEMPT_HEADER + b": " + attempt_id.encode() + b"\r\n" + data[cut:]


def _encoded(answer: DeliveryResponse) -> bytes:
    try:
        return RESPONSES.encode(answer)
    except (ValueError, UnicodeError):  # text from a peer that slipped through: never lose the answer to it
        response = answer.response.model_copy(update={"content": printable(answer.response.content)})
        return RESPONSES.encode(answer.model_copy(update={"response": response}))


async def _bounded(work: Awaitable[Any], seconds: float) -> None:
    try:
        await asyncio.wait_for(work, max(seconds, 0.1))
    except TimeoutError:
        log.warning("stop_step_timed_out", seconds=round(seconds, 1))
