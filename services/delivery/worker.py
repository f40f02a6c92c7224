"""Delivery worker: consume tasks, send each over its egress path, write its response, then commit.

Each task names its egress source; the source's relay, else the smarthost, else the domain's MX
is where it goes, from the source's address and with its EHLO name. Messages of one egress path
(`source->site`, the key of mail.delivery, so one worker owns a path) share connections under the
path's shaping: see `mailstream.delivery.dispatch`.

At-least-once with attempt-id deduplication: a task seen again after a crash before commit
is answered from the recent-attempts memory instead of being sent twice by this process.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from mailstream.config.egress_paths import PathShapes
from mailstream.config.model import Config
from mailstream.config.scheduling import EgressSource
from mailstream.core.clock import Clock
from mailstream.core.egress_path import EgressPath
from mailstream.core.path_connections import ConnectionShape
from mailstream.core.smtp_reply import outcome_of
from mailstream.delivery.dispatch import Connector, Gate, PathDispatcher
from mailstream.delivery.mx import MxResolver
from mailstream.delivery.progress import Progress
from mailstream.delivery.routes import Route, route_for
from mailstream.delivery.smtp_client import SessionSettings, SmtpAttempt, SmtpSession
from mailstream.events.bodies import BodyCorrupt, BodyReader
from mailstream.events.kafka import Consumed, EventConsumer, EventProducer, KafkaUnavailable
from mailstream.events.records import DeliveryResponse, DeliveryTask, SmtpResponse
from mailstream.events.serde import SerdeError, decode
from mailstream.events.topics import DELIVERY, RESPONSES, route_key
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
ATTEMPTS = Counter("mailstream_delivery_attempts_total", "Delivery attempts by outcome", ["outcome"])
LATENCY = Histogram("mailstream_delivery_attempt_seconds", "Attempt duration, connection wait included")
CONNECTIONS = Counter("mailstream_delivery_connections_total", "SMTP connections opened")


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    batch_size: int = 256
    max_in_flight: int = 4096  # tasks taken but not answered; beyond it the worker pauses fetching
    commit_interval: float = 0.2  # seconds between offset commits
    stop_grace: float = 10.0  # seconds attempts in flight get to finish when the worker stops
    remembered_attempts: int = 100_000


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
        self._mx = MxResolver(dc.nameservers, dc.smtp_port, timeout=dc.connect_timeout.total_seconds())
        self._paths: dict[EgressPath, PathDispatcher] = {}
        self._done: OrderedDict[str, DeliveryResponse] = OrderedDict()
        self._stopping = asyncio.Event()
        self.healthy = False

    def dispatcher(self, source: EgressSource, route: Route) -> PathDispatcher:
        """The path's dispatcher; its shaping is resolved for the first task's domain, as KumoMTA's ready queue."""
        found = self._paths.get(route.path)
        if found is None:
            shape = self._shapes.shape(route.path.source, route.path.site, route.domain)
            found = self._paths[route.path] = PathDispatcher(
                route.path.key(), ConnectionShape(shape.connection_limit, shape.max_connection_rate,
                                            shape.max_deliveries_per_connection),
                self._connector(source, route), self._gate, self._clock,
                self._config.delivery.idle_timeout.total_seconds())
        return found

    def _connector(self, source: EgressSource, route: Route) -> Connector:
        dc = self._config.delivery
        settings = SessionSettings(
            ehlo_domain=source.ehlo_domain or dc.ehlo_domain,
            source_address=str(source.source_address) if source.source_address else None,
            starttls=route.starttls, login=route.login, connect_timeout=dc.connect_timeout.total_seconds(),
            command_timeout=dc.command_timeout.total_seconds())

        async def connect() -> SmtpSession | SmtpAttempt:
            CONNECTIONS.inc()
            hosts = list(route.hosts) or await self._mx.hosts(route.domain)
            if isinstance(hosts, SmtpResponse):
                return SmtpAttempt(hosts, None, None)
            return await SmtpSession.open(hosts, settings)

        return connect

    async def _send(self, task: DeliveryTask, bodies: BodyReader) -> SmtpAttempt:
        source = self._sources.get(task.egress_source)
        if source is None:  # removed from the configuration since the scheduler chose it: choose again
            return SmtpAttempt(_internal(f"unknown egress source {task.egress_source!r}", "4.4.0", "CONNECT"),
                               None, None)
        route = route_for(source, self._config.delivery, task.routing_domain or task.domain)
        try:
            data = await bodies.get(task.body)
        except (KafkaUnavailable, BodyCorrupt, SerdeError) as exc:
            return SmtpAttempt(_internal(str(exc)), None, None)
        path = self.dispatcher(source, route)
        attempt = await path.deliver(task.sender, task.recipient, data,
                                     self._config.delivery.path_wait.total_seconds())
        if attempt is None:
            return SmtpAttempt(_internal(f"no connection on egress path {route.path} within "
                                         f"{self._config.delivery.path_wait}", "4.4.5", "CONNECT"), None, None)
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
            id=task.id, attempt=task.attempt, attempt_id=task.attempt_id, queue=task.queue, outcome=outcome,
            response=response, egress_source=task.egress_source, egress_path=task.egress_path,
            peer_address=result.peer_address, tls=result.tls, started_at=started, completed_at=self._clock())
        self._done[task.attempt_id] = answer
        if len(self._done) > self._settings.remembered_attempts:
            self._done.popitem(last=False)
        log.info("attempt", id=task.id, attempt=task.attempt, outcome=outcome, code=response.code,
                 path=task.egress_path, peer=result.peer_address)
        return answer

    async def _handle(self, record: Consumed, bodies: BodyReader, producer: EventProducer) -> None:
        try:
            task = decode(record.value, DeliveryTask)
        except SerdeError as exc:
            log.error("task_unreadable", partition=record.partition, offset=record.offset, error=str(exc))
            return
        answer = await self._attempt(task, bodies)
        await producer.send(RESPONSES, route_key(task.tenant, task.queue), answer)

    async def run(self) -> None:
        """Tasks are taken as they come, up to `max_in_flight` at once; each partition's offset is committed up
        to its first unfinished task, after that task's response is acknowledged (a crash repeats, never loses).
        A slow destination holds back its own tasks only: the worker goes on polling, and so stays in its group.
        """
        bootstrap = self._config.kafka.bootstrap_servers
        consumer = EventConsumer(bootstrap, self._config.delivery.group_id, [DELIVERY.name])
        producer = EventProducer(bootstrap)
        bodies = BodyReader(bootstrap)
        progress = Progress()
        running: set[asyncio.Task[None]] = set()
        failed: list[BaseException] = []

        def finished(record: Consumed, task: asyncio.Task[None]) -> None:
            running.discard(task)
            if task.cancelled():
                return
            error = task.exception()
            if error is not None:
                failed.append(error)  # the response was not written: the offset must not move past it
            else:
                progress.finished((record.topic, record.partition), record.offset)

        self.healthy = True
        next_commit = 0.0
        try:
            while not self._stopping.is_set():
                if failed:
                    raise failed[0]
                room = self._settings.max_in_flight - len(running)
                await consumer.pause(room <= 0)
                batch = await consumer.poll_batch(max(1, min(room, self._settings.batch_size)), timeout=0.05)
                for tp in consumer.revoked():
                    progress.forget(tp)
                for record in batch:
                    progress.started((record.topic, record.partition), record.offset)
                    task = asyncio.create_task(self._handle(record, bodies, producer))
                    running.add(task)
                    task.add_done_callback(functools.partial(finished, record))
                now = time.monotonic()
                if now >= next_commit:
                    next_commit = now + self._settings.commit_interval
                    await self._commit(consumer, progress)
                    self._forget_dormant_paths()
            if running:
                await asyncio.wait(set(running), timeout=self._settings.stop_grace)
            await self._commit(consumer, progress)
        finally:
            self.healthy = False
            for task in running:
                task.cancel()
            await asyncio.gather(*(p.close() for p in self._paths.values()))
            await consumer.close()
            await producer.close()
            bodies.close()

    @staticmethod
    async def _commit(consumer: EventConsumer, progress: Progress) -> None:
        offsets = progress.committable()
        try:
            await consumer.commit_offsets(offsets)
        except KafkaUnavailable as exc:
            progress.not_committed(offsets)
            log.warning("commit_failed", error=str(exc))

    def _forget_dormant_paths(self) -> None:
        """One dispatcher per MX domain would grow without end; a dormant one is rebuilt as it was."""
        now = self._clock()
        for path in [p for p, d in self._paths.items() if d.dormant(now)]:
            del self._paths[path]

    def stop(self) -> None:
        self._stopping.set()
