"""The scheduler as a Faust app: thin agents that decode, call `lifecycle`, and apply the effects.

Topics feeding the `messages` table (mail.accepted, mail.responses, mail.scheduler.due) are all
keyed by scheduled-queue name with the same partition count, so Faust assigns partition N of
each to the same worker and a message's state, its responses and its wake-ups meet there.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import faust

from mailstream.config.model import Config
from mailstream.core.backoff import RetryPolicy
from mailstream.core.bounce_classify import BounceClassifier
from mailstream.core.clock import Clock
from mailstream.events.records import AcceptedMessage, DeliveryResponse, DueMessage, QueuedMessage, Record
from mailstream.events.serde import SerdeError, decode, encode
from mailstream.events.topics import ACCEPTED, DELIVERY, DUE, EVENTS, PARTITIONS, RESPONSES, STATUS
from mailstream.observability.logs import get_logger
from mailstream.scheduler.lifecycle import Effects, SchedulerPolicy, on_accepted, on_due, on_response

log = get_logger(__name__)
R = TypeVar("R", bound=Record)


def policy_from(config: Config) -> SchedulerPolicy:
    q = config.queues
    return SchedulerPolicy(
        retry=RetryPolicy(q.retry_interval, q.max_retry_interval, q.max_age),
        egress_pool=q.egress_pool,
        pools={p.name: [(e.name, e.weight) for e in p.entries] for p in config.egress.pools},
        site=config.delivery.smarthost,
        classifier=BounceClassifier.default(),
    )


def build_app(config: Config, clock: Clock, *, due_scan_interval: float = 1.0) -> faust.App:
    sc = config.scheduler
    app = faust.App(
        sc.app_id,
        broker=f"kafka://{config.kafka.bootstrap_servers}",
        store=sc.store,
        datadir=str(sc.data_dir),
        topic_partitions=PARTITIONS,
        topic_replication_factor=config.kafka.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        web_port=sc.web_port,
        web_host="127.0.0.1",
        topic_disable_leader=True,
        producer_acks=-1,
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
    )
    policy = policy_from(config)
    rng = random.Random()

    def topic(name: str) -> Any:
        return app.topic(name, key_type=bytes, value_type=bytes, partitions=PARTITIONS,
                         key_serializer="raw", value_serializer="raw")

    accepted_t, responses_t, due_t = topic(ACCEPTED.name), topic(RESPONSES.name), topic(DUE.name)
    delivery_t, status_t, events_t = topic(DELIVERY.name), topic(STATUS.name), topic(EVENTS.name)
    messages = app.Table("messages", default=None, partitions=PARTITIONS,
                         key_type=bytes, value_type=bytes)  # raw bytes: the app serializers are raw

    async def apply(key: bytes, effects: Effects) -> None:
        for task in effects.tasks:
            await delivery_t.send(key=task.egress_path.encode(), value=encode(task))
        for status in effects.statuses:
            await status_t.send(key=status.id.encode(), value=encode(status))
        for record in effects.logs:
            await events_t.send(key=record.id.encode(), value=encode(record))
        if effects.state is not None:
            messages[key] = encode(effects.state)
        elif effects.delete and key in messages:
            del messages[key]

    def load(key: bytes) -> QueuedMessage | None:
        raw = messages.get(key)
        return decode(raw, QueuedMessage) if raw is not None else None

    async def records(stream: Any, record_type: type[R]) -> AsyncIterator[tuple[int, R]]:
        """(partition, record) for each readable record; a poison record is logged and skipped."""
        async for event in stream.events():
            try:
                yield event.message.partition, decode(event.value, record_type)
            except SerdeError as exc:
                log.error("record_unreadable", topic=event.message.topic, partition=event.message.partition,
                          offset=event.message.offset, error=str(exc))

    @app.agent(accepted_t)
    async def accept(stream: Any) -> None:
        async for partition, msg in records(stream, AcceptedMessage):
            await apply(msg.id.encode(), on_accepted(msg, partition, policy, clock()))

    @app.agent(responses_t)
    async def respond(stream: Any) -> None:
        async for _, resp in records(stream, DeliveryResponse):
            await apply(resp.id.encode(), on_response(load(resp.id.encode()), resp, policy, clock(), rng))

    @app.agent(due_t)
    async def wake(stream: Any) -> None:
        async for _, due in records(stream, DueMessage):
            await apply(due.id.encode(), on_due(load(due.id.encode()), policy, clock()))

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        ready = app.consumer is not None and not app.rebalancing
        return web.json({"status": "ok" if ready else "rebalancing"}, status=200 if ready else 503)

    @app.timer(interval=due_scan_interval)  # type: ignore[untyped-decorator]
    async def find_due() -> None:
        """Waiting messages whose time has come are announced to their own partition's agent."""
        now = clock()
        for raw in list(messages.values()):
            q = decode(raw, QueuedMessage)
            tx = q.transaction
            if tx.status in ("deferred", "scheduled") and tx.next_attempt_at is not None \
                    and tx.next_attempt_at <= now:
                await due_t.send(key=tx.queue.encode(), value=encode(DueMessage(id=tx.id, due_at=now)),
                                 partition=q.accepted_partition)
                # Mark nothing here: on_due ignores a second wake-up for a message already dispatched.
    return app
