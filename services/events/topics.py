"""Every topic, declared once: name, key, value type, partitions and retention.

All keyed topics share one partition count, because the scheduler's tables are
co-partitioned with the topics that feed them (a Faust table's changelog must have as
many partitions as its source topic).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailstream.events.records import (
    AcceptedMessage,
    DeliveryResponse,
    DeliveryTask,
    DueMessage,
    LogRecord,
    MessageBody,
    Record,
    TransactionStatus,
)

PARTITIONS = 8
DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    key: str
    value_type: type[Record]
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
ACCEPTED = TopicSpec("mail.accepted", "scheduled queue name", AcceptedMessage, retention_ms=10 * DAY_MS)
DELIVERY = TopicSpec("mail.delivery", "egress path", DeliveryTask)
RESPONSES = TopicSpec("mail.responses", "scheduled queue name", DeliveryResponse, retention_ms=10 * DAY_MS)
EVENTS = TopicSpec("mail.events", "transaction id", LogRecord, retention_ms=30 * DAY_MS)
STATUS = TopicSpec("mail.status", "transaction id", TransactionStatus,
                   cleanup_policy="compact", retention_ms=-1)

DUE = TopicSpec("mail.scheduler.due", "scheduled queue name", DueMessage, retention_ms=DAY_MS)

ALL_TOPICS: tuple[TopicSpec, ...] = (BODIES, ACCEPTED, DELIVERY, RESPONSES, EVENTS, STATUS, DUE)
