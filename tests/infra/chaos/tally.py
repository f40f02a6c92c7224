"""The chaos run's count: what was accepted, how each accepted message ended, what was lost, what was sent twice.

Pure: it reads what the run collected (submissions, kills, the sink's receipts by attempt id, the witness's
statuses and response times) and returns the figures, with examples of anything that must be zero.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from mailstream.events.records import TransactionStatus
from tests.infra.chaos.clients import Submission

FINAL = ("delivered", "bounced", "expired", "cancelled")
_ATTEMPT = re.compile(rb"^X-Mailstream-Attempt: *(\S+)\r?$", re.MULTILINE)


@dataclass(frozen=True)
class Kill:
    target: str  # "ingest", "scheduler", "delivery", "gateway", "broker" or "broker-<n>"
    at: float  # time.monotonic() of the SIGKILL
    back_at: float  # when the restarted process answered its health probe again


@dataclass(frozen=True)
class Receipt:
    recipient: str
    attempt_id: str | None  # from the X-Mailstream-Attempt header
    at: float  # time.monotonic() the sink accepted it


def attempt_of(data: bytes) -> str | None:
    head = data.split(b"\r\n\r\n", 1)[0]
    found = _ATTEMPT.search(head)
    return found.group(1).decode() if found else None


@dataclass
class Report:
    submitted: int = 0
    accepted: int = 0
    ended: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)  # accepted, never final, never at the sink
    unfinished_at_sink: int = 0  # at the sink but no final status (a status lagging, not a loss)
    pipeline_duplicates: list[str] = field(default_factory=list)  # an attempt sent again after its answer
    in_flight_duplicates: int = 0  # an attempt sent again, unanswered at a delivery kill
    unanswered_at_kills: int = 0  # attempts at the sink but not answered at a delivery kill: the bound
    redelivered: list[str] = field(default_factory=list)  # a transaction at the sink under two attempt ids
    http_created_twice: list[str] = field(default_factory=list)  # one HTTP recipient, two transactions
    smtp_resubmitted: int = 0  # one SMTP recipient, two transactions: a reply lost at a gateway kill
    untraced: int = 0  # sink messages without an attempt header
    kills: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0


def tally(
    submissions: list[Submission],
    kills: list[Kill],
    receipts: list[Receipt],
    statuses: dict[str, TransactionStatus],
    answered: dict[str, float],
) -> Report:
    report = Report(submitted=len(submissions), kills=Counter(k.target for k in kills))
    by_recipient: dict[str, list[TransactionStatus]] = defaultdict(list)
    for status in statuses.values():
        by_recipient[status.recipient].append(status)
    sends: dict[str, list[float]] = defaultdict(list)
    at_sink: set[str] = set()
    for r in receipts:
        at_sink.add(r.recipient)
        if r.attempt_id is None:
            report.untraced += 1
        else:
            sends[r.attempt_id].append(r.at)
    for s in submissions:
        txs = by_recipient.get(s.recipient, [])
        if s.door == "http" and len(txs) > 1:
            report.http_created_twice.append(s.recipient)
        if s.door == "smtp" and len(txs) > 1:
            report.smtp_resubmitted += 1
        if not s.accepted:
            continue
        report.accepted += 1
        final = sorted((t.status for t in txs if t.is_final), key=FINAL.index)
        if final:
            report.ended[final[0]] += 1
        elif s.recipient in at_sink:
            report.unfinished_at_sink += 1
        else:
            report.lost.append(s.recipient)
    _duplicates(report, kills, sends, answered)
    _redelivered(report, sends, statuses)
    return report


def _duplicates(report: Report, kills: list[Kill], sends: dict[str, list[float]], answered: dict[str, float]) -> None:
    """A second send of one attempt is tolerated only after a delivery kill that found it sent but unanswered."""
    cuts = sorted(k.at for k in kills if k.target == "delivery")
    for cut in cuts:
        report.unanswered_at_kills += sum(
            1 for a, times in sends.items() if min(times) < cut and answered.get(a, float("inf")) > cut
        )
    for attempt, times in sends.items():
        times.sort()
        for later in times[1:]:
            if any(times[0] < cut < later and answered.get(attempt, float("inf")) > cut for cut in cuts):
                report.in_flight_duplicates += 1
            else:
                report.pipeline_duplicates.append(attempt)


def _redelivered(report: Report, sends: dict[str, list[float]], statuses: dict[str, TransactionStatus]) -> None:
    """A transaction at the sink under two attempt ids is a pipeline duplicate unless the earlier attempt was
    recorded as failed (a retry the scheduler chose; the sink always accepts, so none is expected)."""
    attempts: dict[str, set[str]] = defaultdict(set)
    for attempt_id in sends:
        attempts[attempt_id.rpartition("/")[0]].add(attempt_id)
    for tx, ids in attempts.items():
        if len(ids) < 2:
            continue
        status = statuses.get(tx)
        failed = {f"{tx}/{a.attempt}" for a in (status.attempts if status else ()) if a.outcome != "DELIVERED"}
        if not set(sorted(ids, key=_number)[:-1]) <= failed:
            report.redelivered.append(tx)


def _number(attempt_id: str) -> int:
    return int(attempt_id.rpartition("/")[2])


def table(report: Report, services: list[str]) -> str:
    rows = [(f"kills: {name}", str(report.kills.get(name, 0))) for name in services]
    rows += [
        ("submitted", str(report.submitted)),
        ("accepted", str(report.accepted)),
        *((name, str(report.ended.get(name, 0))) for name in FINAL),
        ("at the sink, status not final", str(report.unfinished_at_sink)),
        ("LOST", str(len(report.lost))),
        ("pipeline duplicates (same attempt)", str(len(report.pipeline_duplicates))),
        ("redelivered under a new attempt", str(len(report.redelivered))),
        ("in-flight duplicates", str(report.in_flight_duplicates)),
        ("  bound: unanswered at delivery kills", str(report.unanswered_at_kills)),
        ("HTTP recipients created twice", str(len(report.http_created_twice))),
        ("SMTP resubmitted after a lost reply", str(report.smtp_resubmitted)),
        ("elapsed", f"{report.elapsed:.0f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v:>8}" for k, v in rows)
