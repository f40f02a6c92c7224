"""Idempotency-Key: a retried inject request is answered what the first was answered, and creates nothing twice.

The answer travels as an `IdempotentAnswer` on mail.ingest.answers inside the request's own Kafka transaction,
so it exists exactly when the request's records were committed. Each replica folds that topic into its SQLite
(beside the status view), offsets in the same SQLite transaction; the replica that answered also stores the
answer at once. So on one replica, across restarts too, a retry never creates anything twice; on another replica
it does not either once that replica's tail has read the answer (milliseconds behind the commit). A retry that
arrives while the first request is still being written is told 409 and retries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from mailstream.core.clock import Clock
from mailstream.events.kafka import Bootstrap, KafkaUnavailable, TopicTailer
from mailstream.events.records import IdempotentAnswer
from mailstream.events.serde import SerdeError
from mailstream.events.topics import ANSWERS
from mailstream.ingest.problems import Problem
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
KEEP = timedelta(milliseconds=ANSWERS.retention_ms)  # a key is remembered as long as the topic keeps it
_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII, as the IETF draft's examples (UUIDs, order ids)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER NOT NULL,
                                    answer TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS answer_offsets (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
"""


def idempotency_key(header: str | None) -> str | None:
    """The Idempotency-Key header's value (None when absent), or 400 naming what is wrong with it."""
    if header is None:
        return None
    value = header.strip().strip('"')  # the draft writes it as a quoted string; plain tokens are common
    if not _KEY.fullmatch(value):
        raise Problem(
            400,
            "Bad Idempotency-Key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
            [{"field": "Idempotency-Key", "message": "1 to 255 visible ASCII characters"}],
        )
    return value


@dataclass(frozen=True, slots=True)
class Answer:
    fingerprint: str  # sha256 of the request body
    status: int
    body: str  # JSON


class AnswerStore:
    """SQLite rows keyed by '<API key id>/<Idempotency-Key>'; single-threaded use from the event loop."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def offsets(self) -> dict[int, int]:
        return dict(self._db.execute("SELECT partition, next_offset FROM answer_offsets").fetchall())

    def get(self, key: str, since: datetime) -> Answer | None:
        row = self._db.execute(
            "SELECT fingerprint, status, answer FROM answers WHERE key = ? AND created_ms >= ?", (key, _ms(since))
        ).fetchone()
        return Answer(*row) if row else None

    def put(self, answers: list[IdempotentAnswer], offsets: dict[int, int] | None = None) -> None:
        """Store answers (the first one stored for a key stays) and, from the tail, the offsets they came to."""
        with contextlib.closing(self._db.cursor()) as cur:
            cur.execute("BEGIN")
            cur.executemany(
                "INSERT INTO answers VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO NOTHING",
                [(a.key, a.fingerprint, a.status, a.answer, _ms(a.created_at)) for a in answers],
            )
            cur.executemany(
                "INSERT INTO answer_offsets VALUES (?, ?) ON CONFLICT(partition) DO UPDATE "
                "SET next_offset=MAX(next_offset, excluded.next_offset)",
                list((offsets or {}).items()),
            )
            cur.execute("COMMIT")

    def prune(self, before: datetime) -> None:
        self._db.execute("DELETE FROM answers WHERE created_ms < ?", (_ms(before),))

    def close(self) -> None:
        self._db.close()


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


class Answers:
    """The answers this replica knows, and the keys whose requests are being written right now."""

    def __init__(self, store: AnswerStore, clock: Clock) -> None:
        self.store = store
        self._clock = clock
        self._writing: set[str] = set()
        self._settling: set[asyncio.Task[None]] = set()
        self.caught_up = asyncio.Event()  # the tail has read the topic to its end once

    def claim(self, key: str, fingerprint: str) -> Answer | None:
        """The stored answer to replay, or None after reserving `key` for this request (release or record it).
        409 while another request with the key is being written; 422 when the key was used for another body."""
        if not self.caught_up.is_set():
            raise Problem(
                503,
                "Service unavailable",
                "idempotency keys are being read back; retry shortly",
                headers={"Retry-After": "1"},
            )
        stored = self.store.get(key, self._clock() - KEEP)
        if stored is not None:
            if stored.fingerprint != fingerprint:
                raise Problem(
                    422,
                    "Idempotency-Key reused",
                    "this Idempotency-Key was used for another request",
                    [{"field": "Idempotency-Key", "message": "used for another request body"}],
                )
            return stored
        if key in self._writing:
            raise Problem(
                409,
                "Request in progress",
                "a request with this Idempotency-Key is still being written",
                headers={"Retry-After": "1"},
            )
        self._writing.add(key)
        return None

    def release(self, key: str) -> None:
        """Nothing was written for the key's request: a retry is processed anew."""
        self._writing.discard(key)

    def record(self, answer: IdempotentAnswer) -> None:
        """The request's transaction committed with `answer` in it."""
        self.store.put([answer])
        self._writing.discard(answer.key)

    def settle_later(self, answer: IdempotentAnswer, outcome: asyncio.Future[None]) -> None:
        """The commit's outcome was not known in time: keep the key reserved until it is."""

        async def settle() -> None:
            try:
                await outcome
            except Exception:  # aborted: nothing was written
                self.release(answer.key)
            else:
                self.record(answer)

        task = asyncio.get_running_loop().create_task(settle())
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    @staticmethod
    async def _end_offsets(tailer: TopicTailer) -> dict[int, int]:
        while True:
            try:
                return await tailer.end_offsets()
            except KafkaUnavailable as exc:  # the cluster is away (or the topic's leaders not elected yet)
                log.warning("answers_end_offsets_unavailable", error=str(exc))
                await asyncio.sleep(1.0)

    async def run(self, bootstrap: Bootstrap) -> None:
        """Tail mail.ingest.answers forever from the stored offsets."""
        tailer = TopicTailer(bootstrap, ANSWERS.name, ANSWERS.partitions, self.store.offsets())
        try:
            ends = await self._end_offsets(tailer)  # keyed requests wait until what was committed before is read
            while True:
                batch = await tailer.poll_batch(max_records=500, timeout=0.2)
                if not self.caught_up.is_set() and await tailer.reached(ends):
                    self.caught_up.set()
                if not batch:
                    self.store.prune(self._clock() - KEEP)
                    continue
                answers, offsets = [], {}
                for msg in batch:
                    offsets[msg.partition() or 0] = (msg.offset() or 0) + 1
                    try:
                        answers.append(ANSWERS.decode(msg.value()))
                    except SerdeError as exc:
                        log.error(
                            "answer_record_unreadable", partition=msg.partition(), offset=msg.offset(), error=str(exc)
                        )
                self.store.put(answers, offsets)
        finally:
            await tailer.close()
