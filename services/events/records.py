"""Record types of every topic; each mirrors one Avro schema in `schemas/` field for field."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict

from mailstream.core.bounce_classify import BounceType

MessageStatus = Literal[
    "scheduled",
    "ready",
    "in_delivery",
    "suspended",
    "deferred",
    "bounced",
    "delivered",
    "expired",
    "cancelled",
]
FINAL_STATUSES: frozenset[str] = frozenset({"bounced", "delivered", "expired", "cancelled"})
# EXPIRED and CANCELLED only in records written before 2026-12-02: stage 2 now writes an EgressVerdict.
AttemptOutcome = Literal["DELIVERED", "TRANSIENT", "PERMANENT", "EXPIRED", "CANCELLED"]
EgressVerdictKind = Literal["EXPIRED", "CANCELLED"]
QueueState = Literal["active", "suspended", "draining", "disabled"]
LogRecordType = Literal[
    "Reception",
    "Delivery",
    "TransientFailure",
    "Bounce",
    "Expiration",
    "AdminBounce",
    "Rejection",
    "Feedback",
]
WebhookEventType = Literal[
    "delivered", "deferred", "bounced", "expired", "cancelled", "rejected", "suppressed", "feedback"
]
WebhookOutcome = Literal["DELIVERED", "RETRYING", "GIVEN_UP"]
SuppressionSource = Literal["bounce", "complaint", "api"]


class Record(BaseModel):
    """Base of all wire records: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_name: ClassVar[str]

    def to_avro(self) -> dict[str, Any]:
        return self.model_dump()

    @classmethod
    def from_avro(cls, datum: dict[str, Any]) -> Self:
        return cls.model_validate(datum)


class SmtpResponse(Record):
    schema_name = "mailstream.SmtpResponse"
    code: int
    enhanced_code: str | None = None
    content: str
    command: str | None = None

    def __str__(self) -> str:
        parts = [str(self.code)]
        if self.enhanced_code:
            parts.append(self.enhanced_code)
        parts.append(self.content)
        return " ".join(parts)

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 300

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500


class BodyRef(Record):
    schema_name = "mailstream.BodyRef"
    topic: str
    partition: int
    offset: int
    sha256: str
    size: int


class MessageBody(Record):
    schema_name = "mailstream.MessageBody"
    sha256: str
    data: bytes


class AcceptedMessage(Record):
    schema_name = "mailstream.AcceptedMessage"
    id: str
    submission_id: str
    queue: str
    tenant: str | None = None
    campaign: str | None = None
    routing_domain: str | None = None
    sender: str
    recipient: str
    domain: str
    message_id: str
    body: BodyRef
    headers: dict[str, str] = {}
    metadata: dict[str, str] = {}
    priority: int | None = None  # None: the sender named none; stage 1 applies the queue's
    send_at: datetime | None = None
    expires_at: datetime | None = None
    reception_protocol: Literal["HTTP", "ESMTP"]
    received_at: datetime
    attachment_count: int | None = None  # None: written before it was counted


class DeliveryTask(Record):
    schema_name = "mailstream.DeliveryTask"
    id: str
    attempt: int
    attempt_id: str
    queue: str
    egress_pool: str
    egress_source: str
    egress_path: str
    sender: str
    recipient: str
    domain: str
    routing_domain: str | None = None
    tenant: str | None = None
    campaign: str | None = None
    body: BodyRef
    created_at: datetime
    issued_at: datetime


class DeliveryResponse(Record):
    schema_name = "mailstream.DeliveryResponse"
    id: str
    attempt: int
    attempt_id: str
    queue: str
    outcome: AttemptOutcome
    response: SmtpResponse
    egress_source: str
    egress_path: str
    peer_address: str | None = None
    tls: str | None = None
    tls_version: str | None = None
    tls_cipher: str | None = None
    started_at: datetime
    completed_at: datetime


class AttemptRecord(Record):
    schema_name = "mailstream.AttemptRecord"
    attempt: int
    outcome: AttemptOutcome
    response: SmtpResponse
    egress_source: str
    egress_path: str
    peer_address: str | None = None
    started_at: datetime
    completed_at: datetime


class TransactionStatus(Record):
    schema_name = "mailstream.TransactionStatus"
    id: str
    version: int
    status: MessageStatus
    queue: str
    tenant: str | None = None
    campaign: str | None = None
    sender: str
    recipient: str
    message_id: str
    created_at: datetime
    updated_at: datetime
    num_attempts: int = 0
    next_attempt_at: datetime | None = None
    egress_pool: str | None = None
    attempts: tuple[AttemptRecord, ...] = ()
    bounce_classification: str | None = None
    bounce_type: BounceType | None = None
    final_reason: str | None = None
    queue_state: QueueState = "active"
    complaint: str | None = None  # the Feedback-Type of a complaint about the message; the delivery stands

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class QueuedMessage(Record):
    schema_name = "mailstream.QueuedMessage"
    accepted_partition: int
    body: BodyRef
    routing_domain: str | None = None
    domain: str
    priority: int = 5
    send_at: datetime | None = None
    expires_at: datetime | None = None
    transaction: TransactionStatus
    cancel_reason: str | None = None  # cancelled while at stage 2 or in delivery: no retry
    egress_pool: str | None = None  # rebound to this pool (an operation); None: its queue's configured pool
    held: str | None = None  # suspended by id (an operation's reason): waits until resumed by id


class LogRecord(Record):
    schema_name = "mailstream.LogRecord"
    type: LogRecordType
    id: str
    sender: str
    recipient: str
    queue: str
    site: str = ""
    size: int = 0
    response: SmtpResponse
    peer_address: str | None = None
    timestamp: datetime
    created: datetime
    num_attempts: int = 0
    bounce_classification: str | None = None
    bounce_type: str | None = None  # a BounceType; a string on the wire
    egress_pool: str | None = None
    egress_source: str | None = None
    reception_protocol: str | None = None
    delivery_protocol: str | None = None
    tenant: str | None = None
    campaign: str | None = None
    message_id: str | None = None
    meta: dict[str, str] = {}


class ReadyMessage(Record):
    schema_name = "mailstream.ReadyMessage"
    id: str
    attempt: int
    queue: str
    tenant: str | None = None
    campaign: str | None = None
    sender: str
    recipient: str
    domain: str
    routing_domain: str | None = None
    egress_pool: str
    priority: int = 5
    body: BodyRef
    created_at: datetime
    ready_at: datetime
    expires_at: datetime
    cancel_reason: str | None = None  # set only by writers before 2026-12-02: a CancelNotice (events.legacy)


class CancelNotice(Record):
    """Stage 1 recalls an attempt it promoted (mail.ready, after the promotion on the same partition)."""

    schema_name = "mailstream.CancelNotice"
    id: str
    attempt: int
    queue: str
    tenant: str | None = None
    egress_pool: str
    reason: str
    cancelled_at: datetime


class EgressVerdict(Record):
    """Stage 2 ended a held attempt unsent (mail.responses, beside the delivery workers' responses)."""

    schema_name = "mailstream.EgressVerdict"
    id: str
    attempt: int
    attempt_id: str
    queue: str
    tenant: str | None = None
    verdict: EgressVerdictKind
    reason: str
    decided_at: datetime


class LimitState(Record):
    schema_name = "mailstream.LimitState"
    day: str | None = None
    used: int = 0
    sends: tuple[datetime, ...] = ()
    tat: datetime | None = None
    rr_index: int = -1
    rr_weight: int = 0


class ShapingControl(Record):
    """What one adaptive-shaping rule does to one egress path, or to one tenant's (campaign's) queues for a
    domain: a reply reported to stage 2, a stage's counted hits and action, and what mail.shaping publishes."""

    schema_name = "mailstream.ShapingControl"
    id: str
    rule: str
    action: str
    path: str | None = None
    tenant: str | None = None
    campaign: str | None = None
    domain: str | None = None
    queue: str | None = None
    max_message_rate: str | None = None
    connection_limit: int | None = None
    reason: str
    since: datetime
    until: datetime | None = None
    hits: tuple[datetime, ...] = ()
    tat: datetime | None = None

    def in_force(self, now: datetime) -> bool:
        return self.until is not None and self.until > now


class UsageHandover(Record):
    schema_name = "mailstream.UsageHandover"
    scope: str
    state: LimitState
    from_partition: int


class EgressSettlement(Record):
    schema_name = "mailstream.EgressSettlement"
    fingerprint: str
    partitions: tuple[int, ...] = ()


class Dispatched(Record):
    schema_name = "mailstream.Dispatched"
    id: str
    attempt: int
    attempt_id: str
    queue: str
    tenant: str | None = None
    egress_source: str
    egress_path: str
    issued_at: datetime


QueueAction = Literal["suspend", "resume", "drain", "disable", "cancel"]
QueueRule = Literal["suspended", "draining", "disabled", "bounce"]
ADMIN_ISSUER = "admin"  # QueueCommand.issued_by of an admin key; a tenant's reads "tenant:<name>"


class QueueCommand(Record):
    schema_name = "mailstream.QueueCommand"
    id: str
    action: QueueAction
    queue: str | None = None
    tenant: str | None = None
    campaign: str | None = None
    domain: str | None = None
    reason: str | None = None
    until: datetime | None = None
    issued_at: datetime
    issued_by: str
    transaction_id: str | None = None  # cancel: the one transaction (the scope fields only route it)


QueueOperationType = Literal["suspend", "resume", "rebind", "bounce", "retry", "cancel", "purge", "set_priority"]


class QueueOperation(Record):
    """A one-off operation on the messages stage 1 holds (mail.queue-commands): those of a scope, or those named by
    id (then the scope fields only route it: one record per owning partition)."""

    schema_name = "mailstream.QueueOperation"
    id: str
    operation: QueueOperationType
    queue: str | None = None
    tenant: str | None = None
    campaign: str | None = None
    domain: str | None = None
    message_ids: tuple[str, ...] = ()
    reason: str | None = None
    to_queue: str | None = None  # rebind: the scheduled queue to move to (same tenant and recipient domain)
    to_pool: str | None = None  # rebind: the egress pool to send through
    priority: int | None = None  # set_priority
    until: datetime | None = None  # suspend or bounce of a scope: the control ends then
    issued_at: datetime
    issued_by: str
    expected: int = 1  # how many records carry this operation (partitions answering it)


class PendingOperation(Record):
    """A QueueOperation stage 1 is still applying (its changelog, until the partition is done with it): after a
    restart its candidates are looked at again and the count goes on from here."""

    schema_name = "mailstream.PendingOperation"
    operation: QueueOperation
    arrived_at: datetime
    affected: int = 0
    affected_queues: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


class QueueOperationOutcome(Record):
    """What one stage 1 partition did with a QueueOperation (mail.queue-results, key: the operation id)."""

    schema_name = "mailstream.QueueOperationOutcome"
    id: str
    operation: QueueOperationType
    partition: int
    affected: int
    affected_queues: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    expected: int = 1
    tenant: str | None = None
    completed_at: datetime


class QueueSuspension(Record):
    schema_name = "mailstream.QueueSuspension"
    id: str
    queue: str | None = None
    tenant: str | None = None
    campaign: str | None = None
    domain: str | None = None
    reason: str | None = None
    since: datetime
    until: datetime | None = None
    issued_by: str
    state: QueueRule = "suspended"


class StatusCounts(Record):
    schema_name = "mailstream.StatusCounts"
    tenant: str | None = None
    campaign: str | None = None
    egress_pool: str
    counts: dict[str, int] = {}


class QueueStats(Record):
    schema_name = "mailstream.QueueStats"
    partition: int
    tenant: str | None = None
    rows: tuple[StatusCounts, ...] = ()
    suspensions: tuple[QueueSuspension, ...] = ()
    as_of: datetime


class SourceUsage(Record):
    schema_name = "mailstream.SourceUsage"
    source: str
    day: str | None = None
    used: int = 0
    daily_limit: int | None = None
    sends: tuple[datetime, ...] = ()
    as_of: datetime


class WebhookEndpoint(Record):
    """An endpoint registered through the API (mail.webhooks, compacted, key: its id)."""

    schema_name = "mailstream.WebhookEndpoint"
    id: str
    name: str
    tenant: str | None = None
    url: str
    secret: str
    events: tuple[WebhookEventType, ...]
    retry_for_ms: int
    timeout_ms: int
    created_at: datetime
    created_by: str


class WebhookDeleted(Record):
    """An endpoint deleted through the API (mail.webhooks, in the place of its WebhookEndpoint)."""

    schema_name = "mailstream.WebhookDeleted"
    id: str
    tenant: str | None = None
    deleted_at: datetime
    deleted_by: str


class WebhookAttempt(Record):
    """One POST of one event to one endpoint (mail.webhook-attempts, key: endpoint id)."""

    schema_name = "mailstream.WebhookAttempt"
    endpoint_id: str
    tenant: str | None = None
    event_id: str
    event_type: WebhookEventType
    transaction_id: str
    attempt: int
    status_code: int | None = None
    error: str | None = None
    duration_ms: int
    attempted_at: datetime
    outcome: WebhookOutcome


class IdempotentAnswer(Record):
    """What ingest answered a request with an Idempotency-Key (mail.ingest.answers, compacted, key: `key`)."""

    schema_name = "mailstream.IdempotentAnswer"
    key: str
    fingerprint: str
    status: int
    answer: str
    created_at: datetime


class Suppression(Record):
    """An address on a tenant's suppression list (mail.suppressions, key `<tenant>!<address>`; as a request to
    add it, mail.queue-commands keyed by its owner's route key)."""

    schema_name = "mailstream.Suppression"
    address: str
    tenant: str | None = None
    reason: str
    source: SuppressionSource
    bounce_classification: str | None = None
    bounce_type: str | None = None
    response: SmtpResponse | None = None
    transaction_id: str | None = None
    created_at: datetime
    expires_at: datetime | None = None
    created_by: str


class SuppressionRemoved(Record):
    """The address is off the list (mail.suppressions, in the place of its Suppression; as a request to remove
    it, mail.queue-commands)."""

    schema_name = "mailstream.SuppressionRemoved"
    address: str
    tenant: str | None = None
    reason: str | None = None
    removed_at: datetime
    removed_by: str


class AuditRecord(Record):
    """One operator action through the HTTP API (mail.audit, key: the actor's tenant or "admin")."""

    schema_name = "mailstream.AuditRecord"
    id: str
    at: datetime
    actor: str  # the key's id, never the key
    actor_tenant: str | None = None
    admin: bool = False
    operation: str
    route: str
    scope: dict[str, str] = {}
    reason: str | None = None
    parameters: dict[str, str] = {}
    result: str  # accepted or refused; a string on the wire, so a new result breaks no reader
    status: int
    problem: str | None = None
    affected: int | None = None
    command_ids: tuple[str, ...] = ()
    request_id: str


class OutOfBandReport(Record):
    """A bounce or complaint received by mail, tied to its transaction (mail.queue-commands, keyed by the route
    key of the transaction's tenant): stage 1 applies it to the transaction it owns."""

    schema_name = "mailstream.OutOfBandReport"
    transaction_id: str
    tenant: str | None = None
    kind: str  # dsn or feedback
    recipient: str | None = None
    response: SmtpResponse | None = None
    remote_mta: str | None = None
    feedback_type: str | None = None
    user_agent: str | None = None
    matched_by: str  # trace_header or verp
    reported_by: str
    received_at: datetime
