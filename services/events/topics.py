"""Every topic, declared once: name, what its key is, the record types written to it, partitions and retention.

A topic's value type is one type: the union of the record types on it (most topics carry one), and
`TopicSpec.decode` reads a value as that union, refusing a record of any other schema. Keys are UTF-8
strings; `key` says what they name.

All keyed topics share one partition count, because each scheduler stage's state is
co-partitioned with the topics that feed it (changelog partition N holds the state of input
partition N).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from mailstream.events.records import (
    AcceptedMessage,
    AuditRecord,
    CancelNotice,
    DeliveryResponse,
    DeliveryTask,
    Dispatched,
    EgressSettlement,
    EgressVerdict,
    IdempotentAnswer,
    LimitState,
    LogRecord,
    MessageBody,
    OutOfBandReport,
    PendingOperation,
    QueueCommand,
    QueuedMessage,
    QueueOperation,
    QueueOperationOutcome,
    QueueStats,
    QueueSuspension,
    ReadyMessage,
    Record,
    ShapingControl,
    SourceUsage,
    StatusCounts,
    Suppression,
    SuppressionRemoved,
    TransactionStatus,
    UsageHandover,
    WebhookAttempt,
    WebhookDeleted,
    WebhookEndpoint,
)
from mailstream.events.serde import SerdeError, decode, encode, schema_name, writer_of

V = TypeVar("V", bound=Record)


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
class TopicSpec(Generic[V]):
    name: str
    key: str  # what the key names
    values: tuple[type[V], ...]  # every record type written to it; none: records of other topics, as they were
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

    def encode(self, record: V) -> bytes:
        """The record's bytes; TypeError if it is not of a type this topic carries (mypy checks that too)."""
        if type(record) not in self.values:
            raise TypeError(
                f"{self.name} carries {', '.join(t.__name__ for t in self.values) or 'no own records'}, "
                f"not {type(record).__name__}"
            )
        return encode(record)

    def decode(self, data: bytes | None) -> V:
        """The value as the record type it was written as; SerdeError if that is not one of this topic's."""
        name = schema_name(data)
        for value_type in self.values:
            if value_type.schema_name == name:
                return decode(data, value_type)
        if name is None:
            writer_of(data)  # a Confluent-framed record with no registry to ask says so here
        raise SerdeError(
            f"{self.name} carries {', '.join(t.schema_name for t in self.values) or 'no own records'}, "
            f"not {name or 'an unknown schema'}"
        )

    def carries(self, data: bytes | None) -> bool:
        """Whether the encoded value is of one of this topic's record types (its schema is not checked)."""
        name = schema_name(data)
        return any(t.schema_name == name for t in self.values)


# Bodies outlive the longest message (7 days by default) so a retry can still read them.
BODIES: TopicSpec[MessageBody] = TopicSpec(
    "mail.bodies", "body sha256", (MessageBody,), retention_ms=10 * DAY_MS, max_message_bytes=64 * 1024 * 1024
)
# The longest a message may live after it was accepted (its max_age, send_at and expires_at), a day short of its
# body's retention: the config refuses a longer max_age, the doors a later send_at or expires_at.
MESSAGE_LIFETIME = timedelta(milliseconds=BODIES.retention_ms - DAY_MS)
# mail.accepted and mail.responses are keyed by route key (the tenant, else the queue name): one
# partition owns every queue of a tenant, so tenant-wide limits are counted in one place.
ACCEPTED: TopicSpec[AcceptedMessage] = TopicSpec(
    "mail.accepted", "route key", (AcceptedMessage,), retention_ms=10 * DAY_MS
)
# Delivery workers answer each attempt; stage 2 answers an attempt it ended unsent.
RESPONSES: TopicSpec[DeliveryResponse | EgressVerdict] = TopicSpec(
    "mail.responses", "route key", (DeliveryResponse, EgressVerdict), retention_ms=10 * DAY_MS
)
# mail.ready is keyed by egress group (pools that share a source): one partition owns every source
# of the group, so daily caps and source choice are decided in one place. Besides stage 1's promotions
# and cancel notices it carries stage 2's own handovers and settlements when a new configuration regroups, and
# the replies stage 1 matched to a path's shaping rule (ShapingControl), for the path's owner to apply.
READY: TopicSpec[ReadyMessage | CancelNotice | UsageHandover | EgressSettlement | ShapingControl] = TopicSpec(
    "mail.ready",
    "egress group",
    (ReadyMessage, CancelNotice, UsageHandover, EgressSettlement, ShapingControl),
    retention_ms=10 * DAY_MS,
)
DELIVERY: TopicSpec[DeliveryTask] = TopicSpec("mail.delivery", "egress path", (DeliveryTask,))
EVENTS: TopicSpec[LogRecord] = TopicSpec("mail.events", "transaction id", (LogRecord,), retention_ms=30 * DAY_MS)
STATUS: TopicSpec[TransactionStatus] = TopicSpec(
    "mail.status", "transaction id", (TransactionStatus,), cleanup_policy="compact", retention_ms=-1
)

# State of the two scheduler stages (compacted; key: "<kind>:<name>"), written in the same Kafka transaction
# as the stage's outputs: stage 1's messages, limit counters, queue controls and finished totals; stage 2's
# held messages, limit counters and the grouping it settled under.
QUEUE_STATE: TopicSpec[
    QueuedMessage
    | LimitState
    | QueueSuspension
    | StatusCounts
    | Suppression
    | TransactionStatus
    | ShapingControl
    | PendingOperation
] = TopicSpec(
    "mail.scheduler.queues-state",
    "state key",
    (
        QueuedMessage,
        LimitState,
        QueueSuspension,
        StatusCounts,
        Suppression,
        TransactionStatus,
        ShapingControl,
        PendingOperation,
    ),
    cleanup_policy="compact",
    retention_ms=-1,
)
EGRESS_STATE: TopicSpec[ReadyMessage | LimitState | EgressSettlement | ShapingControl] = TopicSpec(
    "mail.scheduler.egress-state",
    "state key",
    (ReadyMessage, LimitState, EgressSettlement, ShapingControl),
    cleanup_policy="compact",
    retention_ms=-1,
)
# The gateway's notifier (delivery status notifications): the Reception of each SMTP-accepted message that may
# owe its sender one, and a failure held until cut-through has had its say (key: "r:<id>" / "f:<id>").
NOTICE_STATE: TopicSpec[LogRecord] = TopicSpec(
    "mail.gateway.notice-state", "state key", (LogRecord,), cleanup_policy="compact", retention_ms=-1
)

# Stage 1's other inputs, keyed by route key like mail.accepted: stage 2 tells it which attempts it
# dispatched (status in_delivery), and admins suspend or resume queues (a command naming no tenant
# goes to every partition). Requests to add or remove a suppression list entry come the same way, keyed by the
# route key of the entry's owner (`suppression_owner`): stage 1 applies them in order with the bounces.
DISPATCHED: TopicSpec[Dispatched] = TopicSpec("mail.dispatched", "route key", (Dispatched,), retention_ms=10 * DAY_MS)
# Bounces and complaints received by mail (OutOfBandReport) come the same way, keyed by the transaction's tenant.
QUEUE_COMMANDS: TopicSpec[QueueCommand | Suppression | SuppressionRemoved | OutOfBandReport | QueueOperation] = (
    TopicSpec(
        "mail.queue-commands",
        "route key",
        (QueueCommand, Suppression, SuppressionRemoved, OutOfBandReport, QueueOperation),
        retention_ms=10 * DAY_MS,
    )
)
# What each stage 1 partition did with a QueueOperation, for the ingest replica that waits to answer it (and reads
# of it later): a day is far longer than any answer waits.
QUEUE_RESULTS: TopicSpec[QueueOperationOutcome] = TopicSpec(
    "mail.queue-results", "operation id", (QueueOperationOutcome,), retention_ms=DAY_MS
)
# Every tenant's suppression list (compacted; key "<tenant>!<address>"), written by stage 1 alone: the partition
# owning the tenant, so every change of an entry is made in one place, in order (docs/design-decisions.md).
SUPPRESSIONS: TopicSpec[Suppression | SuppressionRemoved] = TopicSpec(
    "mail.suppressions",
    "<tenant>!<address>",
    (Suppression, SuppressionRemoved),
    cleanup_policy="compact",
    retention_ms=-1,
)
# What the stages publish for the capacity API (compacted; republished every few seconds when changed).
QUEUE_STATS: TopicSpec[QueueStats] = TopicSpec(
    "mail.queue-stats", "<partition>[#<slot>]/<tenant>", (QueueStats,), cleanup_policy="compact", retention_ms=-1
)
SOURCE_USAGE: TopicSpec[SourceUsage] = TopicSpec(
    "mail.source-usage", "egress source", (SourceUsage,), cleanup_policy="compact", retention_ms=-1
)
# Adaptive shaping's actions as the owning stage last set them (stage 2: paths; stage 1: a tenant's queues), for
# the capacity API and the delivery workers (a path's connection limit); in force while `until` is ahead.
SHAPING: TopicSpec[ShapingControl] = TopicSpec(
    "mail.shaping", "<rule>|<path or queues>", (ShapingControl,), cleanup_policy="compact", retention_ms=-1
)

# Webhooks: the endpoints registered through the API (compacted; a WebhookDeleted replaces a deleted one), and
# every delivery attempt of the webhooks service (ingest keeps the last few per endpoint for the API).
WEBHOOKS: TopicSpec[WebhookEndpoint | WebhookDeleted] = TopicSpec(
    "mail.webhooks", "endpoint id", (WebhookEndpoint, WebhookDeleted), cleanup_policy="compact", retention_ms=-1
)
WEBHOOK_ATTEMPTS: TopicSpec[WebhookAttempt] = TopicSpec(
    "mail.webhook-attempts", "endpoint id", (WebhookAttempt,), retention_ms=7 * DAY_MS
)

# A stage's input record its handler fails on, as it was, with the error and origin in headers.
DEAD_LETTER: TopicSpec[Record] = TopicSpec("mail.dead-letter", "the record's own key", (), retention_ms=30 * DAY_MS)

# Ingest's answers to requests sent with an Idempotency-Key, written in the request's own transaction; each ingest
# replica folds them into its SQLite, so a retry (after a restart too) is answered, not accepted again.
ANSWERS: TopicSpec[IdempotentAnswer] = TopicSpec(
    "mail.ingest.answers",
    "<API key id>/<Idempotency-Key>",
    (IdempotentAnswer,),
    cleanup_policy="compact,delete",
    retention_ms=DAY_MS,
)

# Every operator action through the HTTP API, written in the transaction of what it did (ingest's audit module);
# kept a year, as an audit trail is asked for long after the fact.
AUDIT: TopicSpec[AuditRecord] = TopicSpec(
    "mail.audit", "actor tenant or 'admin'", (AuditRecord,), retention_ms=366 * DAY_MS
)

ALL_TOPICS: tuple[TopicSpec[Any], ...] = (
    BODIES,
    ACCEPTED,
    READY,
    DELIVERY,
    RESPONSES,
    EVENTS,
    STATUS,
    QUEUE_STATE,
    EGRESS_STATE,
    DISPATCHED,
    QUEUE_COMMANDS,
    QUEUE_STATS,
    QUEUE_RESULTS,
    SOURCE_USAGE,
    SHAPING,
    DEAD_LETTER,
    NOTICE_STATE,
    WEBHOOKS,
    WEBHOOK_ATTEMPTS,
    ANSWERS,
    SUPPRESSIONS,
    AUDIT,
)


def route_key(tenant: str | None, queue: str) -> str:
    """Key of mail.accepted and mail.responses: every queue of a tenant shares one partition."""
    return f"tenant:{tenant}" if tenant else f"queue:{queue}"


def suppression_owner(tenant: str | None, address: str) -> str:
    """The route key whose stage 1 partition owns a suppression list entry: the tenant's (its bounces are
    decided there), else one per address for mail routed without a tenant."""
    return route_key(tenant, "") if tenant else f"suppression:{address}"
