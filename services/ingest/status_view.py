"""The transaction-status read model: mail.status folded into SQLite, newest version wins.

Each ingest replica keeps its own copy, with the topic offsets it has applied stored in the
same SQLite transaction as the rows, so a restart resumes where it stopped and no record is
applied twice. Waiters (long-polling GETs) are woken when a transaction changes.

Durability is chosen, not defaulted: WAL with synchronous=NORMAL survives the process being killed at any
point (a committed transaction is in the WAL, in the OS's hands, before COMMIT returns); a power loss may take
the last transactions, but their offsets go with them, so they are read again from the topic. Each replica
owns its file: a second process that opens it is refused (a stopped owner would hold its write lock and stall
the other), since each must see every partition of the topic itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import sqlite3
from pathlib import Path
from typing import BinaryIO

from mailstream.events.kafka import Bootstrap, TopicTailer
from mailstream.events.records import TransactionStatus
from mailstream.events.serde import SerdeError, decode, encode
from mailstream.events.topics import STATUS
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
APPLY_BATCH = 200  # statuses folded in per SQLite transaction, between which requests are served

_SCHEMA = """
CREATE TABLE IF NOT EXISTS status (id TEXT PRIMARY KEY, version INTEGER NOT NULL, tenant TEXT, record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS offsets (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
"""


class ViewInUse(RuntimeError):
    """Another process keeps its status view in this file."""


def _own(path: Path) -> BinaryIO:
    """An exclusive lock on `<path>.owner`, held while the file stays open (the kernel drops it when the process
    dies, however it dies)."""
    owner = path.with_name(path.name + ".owner").open("ab")
    try:
        fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner.close()
        raise ViewInUse(
            f"ingest.status_db {path} is held by another process: give each ingest replica a file of its own"
        ) from None
    return owner


class StatusStore:
    """SQLite rows keyed by transaction id; single-threaded use from the event loop."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._owner = _own(path)
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def offsets(self) -> dict[int, int]:
        return dict(self._db.execute("SELECT partition, next_offset FROM offsets").fetchall())

    def apply(self, records: list[tuple[int, int, TransactionStatus]], raw: list[bytes] | None = None) -> set[str]:
        """Apply (partition, offset, status) triples atomically; returns ids that changed. `raw`, when given,
        holds each status as it was read (stored as is instead of encoded again)."""
        changed: set[str] = set()
        with contextlib.closing(self._db.cursor()) as cur:
            cur.execute("BEGIN")
            for i, (partition, offset, status) in enumerate(records):
                cur.execute(
                    "INSERT INTO status (id, version, tenant, record) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET version=excluded.version, tenant=excluded.tenant, "
                    "record=excluded.record WHERE excluded.version > status.version",
                    (status.id, status.version, status.tenant, raw[i] if raw is not None else encode(status)),
                )
                if cur.rowcount:
                    changed.add(status.id)
                cur.execute(
                    "INSERT INTO offsets VALUES (?, ?) ON CONFLICT(partition) DO UPDATE "
                    "SET next_offset=MAX(next_offset, excluded.next_offset)",
                    (partition, offset + 1),
                )
            cur.execute("COMMIT")
        return changed

    def get(self, tx_id: str) -> TransactionStatus | None:
        row = self._db.execute("SELECT record FROM status WHERE id = ?", (tx_id,)).fetchone()
        return decode(row[0], TransactionStatus) if row else None

    def close(self) -> None:
        self._db.close()
        self._owner.close()


class TooManyWaiters(RuntimeError):
    """The view holds as many long-polls as it may."""


class StatusView:
    """The read model, and the long-polls waiting on it: each woken only when its own transaction changes."""

    def __init__(self, store: StatusStore, max_waiters: int = 10_000) -> None:
        self.store = store
        self.caught_up = asyncio.Event()
        self.max_waiters = max_waiters
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self.waiting = 0

    def get(self, tx_id: str) -> TransactionStatus | None:
        return self.store.get(tx_id)

    async def wait_newer(self, tx_id: str, version: int, timeout: float) -> TransactionStatus | None:
        """The transaction once its version exceeds `version`, or its current state after `timeout`.
        TooManyWaiters when `max_waiters` are waiting already."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        status = self.get(tx_id)
        if status is not None and status.version > version:
            return status
        if self.waiting >= self.max_waiters:
            raise TooManyWaiters(f"{self.waiting} status waits are open, the replica's limit")
        self.waiting += 1
        try:
            while status is None or status.version <= version:
                woken: asyncio.Future[None] = loop.create_future()
                waiters = self._waiters.setdefault(tx_id, set())
                waiters.add(woken)
                try:
                    await asyncio.wait_for(woken, max(0.0, deadline - loop.time()))
                except TimeoutError:
                    break
                finally:
                    waiters.discard(woken)
                    if not waiters:
                        self._waiters.pop(tx_id, None)
                status = self.get(tx_id)
        finally:
            self.waiting -= 1
        return self.get(tx_id)

    async def apply(
        self, records: list[tuple[int, int, TransactionStatus]], raw: list[bytes] | None = None
    ) -> set[str]:
        """Store (partition, offset, status) triples and wake the waiters of the ids that changed (only theirs);
        returns those ids."""
        changed = self.store.apply(records, raw)
        for tx_id in changed:
            for woken in self._waiters.get(tx_id, ()):
                if not woken.done():
                    woken.set_result(None)
        return changed

    async def run(self, bootstrap: Bootstrap) -> None:
        """Tail mail.status forever from the stored offsets."""
        tailer = TopicTailer(bootstrap, STATUS.name, STATUS.partitions, self.store.offsets())
        try:
            while True:
                # Small batches: the event loop that answers requests also folds the view in.
                batch = await tailer.poll_batch(max_records=APPLY_BATCH, timeout=0.2)
                if not batch:
                    self.caught_up.set()
                    continue
                records, raw = [], []
                for msg in batch:
                    try:
                        value = msg.value() or b""
                        records.append((msg.partition() or 0, msg.offset() or 0, decode(value, TransactionStatus)))
                        raw.append(value)
                    except SerdeError as exc:  # a poison record must not stop the view
                        log.error(
                            "status_record_unreadable",
                            partition=msg.partition(),
                            offset=msg.offset(),
                            error=str(exc),
                        )
                await self.apply(records, raw)
        finally:
            await tailer.close()
