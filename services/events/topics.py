"""Every topic, declared once: name, key, value type, partitions and retention.

All keyed topics share one partition count, because each scheduler stage's state is
co-partitioned with the topics that feed it (changelog partition N holds the state of input
partition N).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mailstream.events.records import (
    AcceptedMessage,
    DeliveryResponse,
    DeliveryTask,
    Dispatched,
    LimitState,
    LogRecord,
    MessageBody,
    QueueCommand,
    QueueStats,
    ReadyMessage,
    Record,
    SourceUsage,
    TransactionStatus,
)


def _partitions() -> int:
    """8, or MAILSTREAM_PARTITIONS: it must be the same in every process of a deployment (the services
    refuse to start on topics with another count)."""
    text = os.environ.get("MAILSTREAM_PARTITIONS", "8")
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"MAILSTREAM_PARTITIONS must be a positive integer, not {text!r}")
    return int(text)


PARTITIONS = _partitions()
DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    key: str
    value_type: type[Record] | None  # None: records of other topics, kept as they were
    partitions: int = PARTITIONS
    cleanup_policy: str = "delete"
    retention_ms: int = 7 * DAY_MS
    max_message_bytes: int = 1024 * 1024

    def config(self) -> dict[str, str]:
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            "max.message.bytes": str(self.max_message_bytes),
        }


# Bodies outlive the longest max_age (7 days by default) so a retry can still read them.
BODIES = TopicSpec("mail.bodies", "body sha256", MessageBody,
                   retention_ms=10 * DAY_MS, max_message_bytes=64 * 1024 * 1024)
# mail.accepted and mail.responses are keyed by route key (the tenant, else the queue name): one
# partition owns every queue of a tenant, so tenant-wide limits are counted in one place.
ACCEPTED = TopicSpec("mail.accepted", "route key", AcceptedMessage, retention_ms=10 * DAY_MS)
RESPONSES = TopicSpec("mail.responses", "route key", DeliveryResponse, retention_ms=10 * DAY_MS)
# mail.ready is keyed by egress group (pools that share a source): one partition owns every source
# of the group, so daily caps and source choice are decided in one place.
READY = TopicSpec("mail.ready", "egress group", ReadyMessage, retention_ms=10 * DAY_MS)
DELIVERY = TopicSpec("mail.delivery", "egress path", DeliveryTask)
EVENTS = TopicSpec("mail.events", "transaction id", LogRecord, retention_ms=30 * DAY_MS)
STATUS = TopicSpec("mail.status", "transaction id", TransactionStatus,
                   cleanup_policy="compact", retention_ms=-1)

# State of the two scheduler stages (compacted; key: "<kind>:<name>", value: QueuedMessage, ReadyMessage,
# LimitState, QueueSuspension or StatusCounts). Written in the same Kafka transaction as the stage's outputs.
QUEUE_STATE = TopicSpec("mail.scheduler.queues-state", "state key", LimitState,
                        cleanup_policy="compact", retention_ms=-1)
EGRESS_STATE = TopicSpec("mail.scheduler.egress-state", "state key", LimitState,
                         cleanup_policy="compact", retention_ms=-1)

# Stage 1's other inputs, keyed by route key like mail.accepted: stage 2 tells it which attempts it
# dispatched (status in_delivery), and admins suspend or resume queues (a command naming no tenant
# goes to every partition).
DISPATCHED = TopicSpec("mail.dispatched", "route key", Dispatched, retention_ms=10 * DAY_MS)
QUEUE_COMMANDS = TopicSpec("mail.queue-commands", "route key", QueueCommand, retention_ms=10 * DAY_MS)
# What the stages publish for the capacity API (compacted; republished every few seconds when changed).
QUEUE_STATS = TopicSpec("mail.queue-stats", "<partition>/<tenant>", QueueStats,
                        cleanup_policy="compact", retention_ms=-1)
SOURCE_USAGE = TopicSpec("mail.source-usage", "egress source", SourceUsage,
                         cleanup_policy="compact", retention_ms=-1)

# A stage's input record its handler fails on, as it was, with the error and origin in headers.
DEAD_LETTER = TopicSpec("mail.dead-letter", "the record's own key", None, retention_ms=30 * DAY_MS)

ALL_TOPICS: tuple[TopicSpec, ...] = (BODIES, ACCEPTED, READY, DELIVERY, RESPONSES, EVENTS, STATUS,
                                     QUEUE_STATE, EGRESS_STATE, DISPATCHED, QUEUE_COMMANDS, QUEUE_STATS,
                                     SOURCE_USAGE, DEAD_LETTER)


def route_key(tenant: str | None, queue: str) -> str:
    """Key of mail.accepted and mail.responses: every queue of a tenant shares one partition."""
    return f"tenant:{tenant}" if tenant else f"queue:{queue}"
