"""Synthetic messages for the read model: an accepted record and the statuses of its life, made from a seed so
tests and bench/read_model.py can say what each query must find."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mailstream.events.records import AcceptedMessage, AttemptRecord, BodyRef, SmtpResponse, TransactionStatus
from mailstream.events.serde import encode
from mailstream.events.status import next_version, reception_status
from mailstream.events.topics import ACCEPTED, STATUS

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
TENANTS = ("acme", "globex", "initech", "umbrella")
DOMAINS = ("example.com", "example.net", "gmail.test", "yahoo.test", "outlook.test", "mail.test")
CAMPAIGNS = (None, "spring", "summer", "autumn")
SUBJECTS = ("Weekly newsletter", "Your invoice", "Password reset", "Spring sale", "Welcome aboard")


@dataclass(frozen=True, slots=True)
class Synthetic:
    accepted: AcceptedMessage
    statuses: tuple[TransactionStatus, ...]


def message(i: int, rng: random.Random, start: datetime = T0) -> Synthetic:
    tenant = TENANTS[i % len(TENANTS)]
    domain = DOMAINS[rng.randrange(len(DOMAINS))]
    campaign = CAMPAIGNS[rng.randrange(len(CAMPAIGNS))]
    received = start + timedelta(seconds=i)
    queue = f"{campaign or ''}:{tenant}@{domain}" if campaign else f"{tenant}@{domain}"
    tags = ["newsletter"] if i % 3 == 0 else (["billing", "vip"] if i % 3 == 1 else [])
    msg = AcceptedMessage(
        id=f"tx-{i:08d}",
        submission_id=f"sub-{i}",
        queue=queue,
        tenant=tenant,
        campaign=campaign,
        sender=f"bounce@{tenant}.test",
        recipient=f"user{i}@{domain}",
        domain=domain,
        message_id=f"m{i}@{tenant}.test",
        body=BodyRef(topic="mail.bodies", partition=0, offset=i, sha256=f"{i:064x}", size=1000 + rng.randrange(50_000)),
        headers={"Subject": f"{SUBJECTS[i % len(SUBJECTS)]} {i}", "From": f"news@{tenant}.test"},
        metadata={"tags": str(tags).replace("'", '"')} if tags else {},
        priority=rng.randrange(11) if i % 2 else None,
        reception_protocol="HTTP",
        received_at=received,
        attachment_count=i % 3,
    )
    tx = reception_status(msg, "unspecified")
    statuses = [tx]
    fate = rng.random()
    at = received
    if fate < 0.7:  # delivered, perhaps after a deferral
        for n in range(1 + (rng.random() < 0.2)):
            at += timedelta(seconds=30 + rng.randrange(600))
            ok = (n == 0 and fate < 0.56) or n == 1
            outcome = "DELIVERED" if ok else "TRANSIENT"
            attempt = AttemptRecord(
                attempt=n + 1,
                outcome=outcome,
                response=SmtpResponse(code=250 if ok else 451, enhanced_code="2.0.0" if ok else "4.7.1", content="ok"),
                egress_source="unspecified",
                egress_path=f"unspecified->mx.{domain}",
                started_at=at - timedelta(seconds=1),
                completed_at=at,
            )
            tx = next_version(
                tx,
                at,
                status="delivered" if ok else "deferred",
                num_attempts=n + 1,
                attempts=(*tx.attempts, attempt),
                final_reason="delivered" if ok else None,
            )
            statuses.append(tx)
            if ok:
                break
    elif fate < 0.85:  # bounced
        at += timedelta(seconds=20)
        attempt = AttemptRecord(
            attempt=1,
            outcome="PERMANENT",
            response=SmtpResponse(code=550, enhanced_code="5.1.1", content="user unknown"),
            egress_source="unspecified",
            egress_path=f"unspecified->mx.{domain}",
            started_at=at,
            completed_at=at,
        )
        tx = next_version(
            tx,
            at,
            status="bounced",
            num_attempts=1,
            attempts=(attempt,),
            bounce_type="hard",
            bounce_classification="InvalidRecipient",
            final_reason="bounced: user unknown",
        )
        statuses.append(tx)
    # else: still scheduled
    return Synthetic(msg, tuple(statuses))


def records(synthetic: list[Synthetic]) -> list[tuple[str, int, int, bytes]]:
    """(topic, partition, offset, value) as the projection reads them, accepted before statuses."""
    out: list[tuple[str, int, int, bytes]] = []
    offsets = {ACCEPTED.name: 0, STATUS.name: 0}
    for s in synthetic:
        for topic, value in ((ACCEPTED.name, encode(s.accepted)), *((STATUS.name, encode(st)) for st in s.statuses)):
            out.append((topic, 0, offsets[topic], value))
            offsets[topic] += 1
    return out
