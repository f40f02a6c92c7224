"""Example records of every type, for tests and documentation; deterministic, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime

from mailstream.events.records import (
    AcceptedMessage,
    AttemptRecord,
    AuditRecord,
    BodyRef,
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
    SmtpResponse,
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

T0 = datetime(2026, 11, 22, 8, 0, 0, 123000, tzinfo=UTC)
BODY = BodyRef(topic="mail.bodies", partition=3, offset=42, sha256="ab" * 32, size=2048)
OK_250 = SmtpResponse(code=250, enhanced_code="2.0.0", content="OK queued as 1234", command="DATA")


def accepted() -> AcceptedMessage:
    return AcceptedMessage(
        id="tx-1",
        submission_id="sub-1",
        queue="spring:acme@example.com",
        tenant="acme",
        campaign="spring",
        sender="bounce@acme.test",
        recipient="ann@example.com",
        domain="example.com",
        message_id="m1@acme.test",
        body=BODY,
        headers={"Subject": "Hello", "From": "news@acme.test"},
        metadata={"job": "42"},
        priority=7,
        send_at=T0,
        reception_protocol="HTTP",
        received_at=T0,
    )


def task() -> DeliveryTask:
    return DeliveryTask(
        id="tx-1",
        attempt=1,
        attempt_id="tx-1/1",
        queue="spring:acme@example.com",
        egress_pool="unspecified",
        egress_source="unspecified",
        egress_path="unspecified->mx.example.com",
        sender="bounce@acme.test",
        recipient="ann@example.com",
        domain="example.com",
        tenant="acme",
        campaign="spring",
        body=BODY,
        created_at=T0,
        issued_at=T0,
    )


def response() -> DeliveryResponse:
    return DeliveryResponse(
        id="tx-1",
        attempt=1,
        attempt_id="tx-1/1",
        queue="spring:acme@example.com",
        outcome="DELIVERED",
        response=OK_250,
        egress_source="unspecified",
        egress_path="unspecified->mx.example.com",
        peer_address="127.0.0.1:2525",
        tls="TLS",
        tls_version="TLSv1.3",
        tls_cipher="TLS_AES_256_GCM_SHA384",
        started_at=T0,
        completed_at=T0,
    )


def status() -> TransactionStatus:
    attempt = AttemptRecord(
        attempt=1,
        outcome="DELIVERED",
        response=OK_250,
        egress_source="unspecified",
        egress_path="unspecified->mx.example.com",
        started_at=T0,
        completed_at=T0,
    )
    return TransactionStatus(
        id="tx-1",
        version=2,
        status="delivered",
        queue="spring:acme@example.com",
        tenant="acme",
        campaign="spring",
        sender="bounce@acme.test",
        recipient="ann@example.com",
        message_id="m1@acme.test",
        created_at=T0,
        updated_at=T0,
        num_attempts=1,
        egress_pool="unspecified",
        attempts=(attempt,),
        final_reason="delivered",
    )


def queued() -> QueuedMessage:
    return QueuedMessage(accepted_partition=3, body=BODY, domain="example.com", priority=7, transaction=status())


def log_record() -> LogRecord:
    return LogRecord(
        type="Delivery",
        id="tx-1",
        sender="bounce@acme.test",
        recipient="ann@example.com",
        queue="spring:acme@example.com",
        site="unspecified->mx.example.com",
        size=2048,
        response=OK_250,
        timestamp=T0,
        created=T0,
        num_attempts=1,
        tenant="acme",
    )


def body() -> MessageBody:
    return MessageBody(sha256="ab" * 32, data=b"Subject: hi\r\n\r\nhello\r\n")


def ready() -> ReadyMessage:
    return ReadyMessage(
        id="tx-1",
        attempt=1,
        queue="spring:acme@example.com",
        tenant="acme",
        campaign="spring",
        sender="bounce@acme.test",
        recipient="ann@example.com",
        domain="example.com",
        egress_pool="warm",
        priority=7,
        body=BODY,
        created_at=T0,
        ready_at=T0,
        expires_at=T0,
    )


def cancel_notice() -> CancelNotice:
    return CancelNotice(
        id="tx-1",
        attempt=1,
        queue="spring:acme@example.com",
        tenant="acme",
        egress_pool="warm",
        reason="complaints",
        cancelled_at=T0,
    )


def egress_verdict() -> EgressVerdict:
    return EgressVerdict(
        id="tx-1",
        attempt=1,
        attempt_id="tx-1/1",
        queue="spring:acme@example.com",
        tenant="acme",
        verdict="CANCELLED",
        reason="complaints",
        decided_at=T0,
    )


def limit_state() -> LimitState:
    return LimitState(day="2026-11-22", used=17, sends=(T0, T0), tat=T0, rr_index=1, rr_weight=2)


def usage_handover() -> UsageHandover:
    return UsageHandover(scope="s:mail2", state=limit_state(), from_partition=3)


def egress_settlement() -> EgressSettlement:
    return EgressSettlement(fingerprint="3f2a9c0d1e5b7a64", partitions=(0, 3, 5))


def dispatched() -> Dispatched:
    return Dispatched(
        id="tx-1",
        attempt=1,
        attempt_id="tx-1/1",
        queue="spring:acme@example.com",
        tenant="acme",
        egress_source="unspecified",
        egress_path="unspecified->mx.example.com",
        issued_at=T0,
    )


def queue_command() -> QueueCommand:
    return QueueCommand(
        id="cmd-1",
        action="suspend",
        tenant="acme",
        campaign="spring",
        reason="complaints",
        until=T0,
        issued_at=T0,
        issued_by="tenant:acme",
    )


def suspension() -> QueueSuspension:
    return QueueSuspension(
        id="cmd-1", tenant="acme", campaign="spring", reason="complaints", since=T0, until=T0, issued_by="tenant:acme"
    )


def status_counts() -> StatusCounts:
    return StatusCounts(tenant="acme", campaign="spring", egress_pool="warm", counts={"scheduled": 3, "delivered": 9})


def queue_stats() -> QueueStats:
    return QueueStats(partition=3, tenant="acme", rows=(status_counts(),), suspensions=(suspension(),), as_of=T0)


def source_usage() -> SourceUsage:
    return SourceUsage(source="ip-1", day="2026-11-22", used=17, daily_limit=1000, sends=(T0,), as_of=T0)


def webhook_endpoint() -> WebhookEndpoint:
    return WebhookEndpoint(
        id="wh-1",
        name="acme events",
        tenant="acme",
        url="https://hooks.acme.test/mail",
        secret="whsec-0123456789abcdef",
        events=("delivered", "bounced"),
        retry_for_ms=86_400_000,
        timeout_ms=10_000,
        created_at=T0,
        created_by="tenant:acme",
    )


def webhook_deleted() -> WebhookDeleted:
    return WebhookDeleted(id="wh-1", tenant="acme", deleted_at=T0, deleted_by="tenant:acme")


def webhook_attempt() -> WebhookAttempt:
    return WebhookAttempt(
        endpoint_id="wh-1",
        tenant="acme",
        event_id="3-1234",
        event_type="delivered",
        transaction_id="tx-1",
        attempt=2,
        status_code=200,
        duration_ms=38,
        attempted_at=T0,
        outcome="DELIVERED",
    )


def idempotent_answer() -> IdempotentAnswer:
    return IdempotentAnswer(
        key="3f2a9c0d1e7b4a65/order-1234",
        fingerprint="9" * 64,
        status=200,
        answer='{"success_count":1,"fail_count":0}',
        created_at=T0,
    )


def suppression() -> Suppression:
    return Suppression(
        address="ann@example.com",
        tenant="acme",
        reason="hard bounce: 550 5.1.1 user unknown",
        source="bounce",
        bounce_classification="InvalidRecipient",
        bounce_type="hard",
        response=SmtpResponse(code=550, enhanced_code="5.1.1", content="user unknown"),
        transaction_id="tx-1",
        created_at=T0,
        created_by="scheduler",
    )


def out_of_band_report() -> OutOfBandReport:
    return OutOfBandReport(
        transaction_id="tx-1",
        tenant="acme",
        kind="dsn",
        recipient="ann@example.com",
        response=SmtpResponse(code=550, enhanced_code="5.1.1", content="user unknown"),
        remote_mta="mx.example.com",
        matched_by="trace_header",
        reported_by="192.0.2.1",
        received_at=T0,
    )


def suppression_removed() -> SuppressionRemoved:
    return SuppressionRemoved(address="ann@example.com", tenant="acme", removed_at=T0, removed_by="tenant:acme")


def audit_record() -> AuditRecord:
    return AuditRecord(
        id="0f3c2a9e8b7d4c6a9e1f2b3c4d5e6f70",
        at=T0,
        actor="acme-key-1",
        actor_tenant="acme",
        operation="suspend",
        route="POST /api/admin/suspend/v1",
        scope={"tenant": "acme", "campaign": "spring"},
        reason="complaints from example.com",
        parameters={"duration": "2h"},
        result="accepted",
        status=202,
        affected=1,
        command_ids=("5a1b2c3d4e5f60718293a4b5c6d7e8f9",),
        request_id="req-7f2c",
    )


def shaping_control() -> ShapingControl:
    return ShapingControl(
        id="try-later|ip-1->mx.example.com",
        rule="try-later",
        action="limit_path",
        path="ip-1->mx.example.com",
        max_message_rate="10/m",
        connection_limit=1,
        reason="421 4.7.0 try later",
        since=T0,
        until=datetime(2026, 11, 22, 9, 30, tzinfo=UTC),
    )


def queue_operation() -> QueueOperation:
    return QueueOperation(
        id="6b2c3d4e5f60718293a4b5c6d7e8f90a",
        operation="rebind",
        tenant="acme",
        queue="spring:acme@example.com",
        reason="move to the warm pool",
        to_pool="warm",
        issued_at=T0,
        issued_by="admin",
    )


def pending_operation() -> PendingOperation:
    return PendingOperation(operation=queue_operation(), arrived_at=T0, affected=40)


def queue_operation_outcome() -> QueueOperationOutcome:
    return QueueOperationOutcome(
        id="6b2c3d4e5f60718293a4b5c6d7e8f90a",
        operation="rebind",
        partition=3,
        affected=120,
        affected_queues=("spring:acme@example.com",),
        tenant="acme",
        completed_at=T0,
    )


ALL: tuple[Record, ...] = (
    accepted(),
    task(),
    response(),
    status(),
    queued(),
    log_record(),
    body(),
    OK_250,
    BODY,
    ready(),
    limit_state(),
    usage_handover(),
    egress_settlement(),
    dispatched(),
    queue_command(),
    queue_operation(),
    queue_operation_outcome(),
    pending_operation(),
    suspension(),
    status_counts(),
    queue_stats(),
    source_usage(),
    cancel_notice(),
    egress_verdict(),
    webhook_endpoint(),
    webhook_deleted(),
    webhook_attempt(),
    idempotent_answer(),
    suppression(),
    suppression_removed(),
    out_of_band_report(),
    audit_record(),
    shaping_control(),
)
