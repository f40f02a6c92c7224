"""Delivery worker: consume tasks, send each over SMTP, write its response, then commit.

At-least-once with attempt-id deduplication: a task seen again after a crash before commit
is answered from the recent-attempts memory instead of being sent twice by this process.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

from confluent_kafka import Message
from prometheus_client import Counter, Histogram

from mailstream.config.model import Config
from mailstream.core.clock import Clock
from mailstream.core.smtp_reply import outcome_of
from mailstream.delivery.smtp_client import Destination, send_one
from mailstream.events.bodies import BodyCorrupt, BodyReader
from mailstream.events.kafka import EventConsumer, EventProducer, KafkaUnavailable
from mailstream.events.records import DeliveryResponse, DeliveryTask, SmtpResponse
from mailstream.events.serde import SerdeError, decode
from mailstream.events.topics import DELIVERY, RESPONSES, route_key
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
ATTEMPTS = Counter("mailstream_delivery_attempts_total", "Delivery attempts by outcome", ["outcome"])
LATENCY = Histogram("mailstream_delivery_attempt_seconds", "SMTP attempt duration")


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    batch_size: int = 256
    remembered_attempts: int = 100_000


class DeliveryWorker:
    def __init__(self, config: Config, clock: Clock, settings: WorkerSettings = WorkerSettings()) -> None:
        self._config = config
        self._clock = clock
        self._settings = settings
        self._gate = asyncio.Semaphore(config.delivery.concurrency)
        self._done: OrderedDict[str, DeliveryResponse] = OrderedDict()
        self._stopping = asyncio.Event()
        self.healthy = False

    def _destination(self, task: DeliveryTask) -> Destination:
        smarthost = self._config.delivery.smarthost
        if smarthost is None:
            raise LookupError("no smarthost configured and MX routing is not built yet")
        host, _, port = smarthost.rpartition(":")
        return Destination(host, int(port))

    async def _attempt(self, task: DeliveryTask, bodies: BodyReader) -> DeliveryResponse:
        remembered = self._done.get(task.attempt_id)
        if remembered is not None:
            return remembered
        started = self._clock()
        source = self._config.egress.source(task.egress_source)
        dc = self._config.delivery
        try:
            data = await bodies.get(task.body)
            async with self._gate:
                with LATENCY.time():
                    result = await send_one(
                        self._destination(task), sender=task.sender, recipient=task.recipient, data=data,
                        ehlo_domain=source.ehlo_domain or dc.ehlo_domain,
                        source_address=str(source.source_address) if source.source_address else None,
                        starttls=dc.starttls, connect_timeout=dc.connect_timeout.total_seconds(),
                        command_timeout=dc.command_timeout.total_seconds())
            response, peer, tls = result.response, result.peer_address, result.tls
        except (KafkaUnavailable, BodyCorrupt, SerdeError, LookupError) as exc:
            response = SmtpResponse(code=451, enhanced_code="4.3.0", command="BODY",
                                    content=f"mailstream internal: {exc}")
            peer, tls = None, None
        outcome = outcome_of(response.code)
        ATTEMPTS.labels(outcome).inc()
        answer = DeliveryResponse(
            id=task.id, attempt=task.attempt, attempt_id=task.attempt_id, queue=task.queue, outcome=outcome,
            response=response, egress_source=task.egress_source, egress_path=task.egress_path,
            peer_address=peer, tls=tls, started_at=started, completed_at=self._clock())
        self._done[task.attempt_id] = answer
        if len(self._done) > self._settings.remembered_attempts:
            self._done.popitem(last=False)
        log.info("attempt", id=task.id, attempt=task.attempt, outcome=outcome, code=response.code,
                 path=task.egress_path)
        return answer

    async def _handle(self, msg: Message, bodies: BodyReader, producer: EventProducer) -> None:
        try:
            task = decode(msg.value(), DeliveryTask)
        except SerdeError as exc:
            log.error("task_unreadable", partition=msg.partition(), offset=msg.offset(), error=str(exc))
            return
        answer = await self._attempt(task, bodies)
        await producer.send(RESPONSES, route_key(task.tenant, task.queue), answer)

    async def run(self) -> None:
        bootstrap = self._config.kafka.bootstrap_servers
        consumer = EventConsumer(bootstrap, self._config.delivery.group_id, [DELIVERY.name])
        producer = EventProducer(bootstrap)
        bodies = BodyReader(bootstrap)
        self.healthy = True
        try:
            while not self._stopping.is_set():
                batch = await consumer.poll_batch(self._settings.batch_size, timeout=0.2)
                if not batch:
                    continue
                # Responses are acknowledged before the offsets move: a crash repeats, never loses.
                await asyncio.gather(*(self._handle(m, bodies, producer) for m in batch))
                await consumer.commit(batch)
        finally:
            self.healthy = False
            await consumer.close()
            await producer.close()
            bodies.close()

    def stop(self) -> None:
        self._stopping.set()
