"""The Koukan API's replica-local state: transactions created but not yet written (their blobs being uploaded),
and the blobs of recent ones, so a later transaction can reuse them by reference.

Nothing here is mail yet: a transaction is mail once its records are committed through the shared intake path
(`intake.submission`), and from then on its status is the status view's. What is kept is what Koukan keeps in its
own database: the envelope until the body is complete (as Koukan, uploads go to the replica that holds the
transaction), then, for a day (the reuse window, `REUSE_WINDOW`), each blob's reference: the body's BodyRef on
mail.bodies (its bytes are dropped once written there) and a message builder's part contents (they are rendered
into each new message, so they are kept). SQLite beside the status view; single-threaded use from the event loop.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from mailstream.events.records import BodyRef
from mailstream.ingest.koukan_request import Chunk

# A referenced body must outlive the new message: mail.bodies keeps a body MESSAGE_LIFETIME + a day after it was
# written, so a body written more than a day ago cannot carry a new message through its whole lifetime.
REUSE_WINDOW = timedelta(days=1)
PENDING_TTL = timedelta(minutes=10)  # a transaction whose blobs stop arriving ends "downstream timeout"
BODY = ""  # the blob id of a transaction's RFC 822 body

State = Literal["awaiting", "submitted", "refused", "ended"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ktx (id TEXT PRIMARY KEY, tenant TEXT, key_id TEXT NOT NULL, mail_from TEXT NOT NULL,
    rcpt TEXT NOT NULL, campaign TEXT, spec TEXT, state TEXT NOT NULL, reason TEXT, response TEXT,
    version INTEGER NOT NULL, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kblob (tx_id TEXT NOT NULL, blob_id TEXT NOT NULL, tenant TEXT, data BLOB,
    length INTEGER NOT NULL, total INTEGER, sha256 TEXT, ref TEXT, summary TEXT, created_ms INTEGER NOT NULL,
    PRIMARY KEY (tx_id, blob_id));
CREATE INDEX IF NOT EXISTS ktx_created ON ktx (created_ms);
"""


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(slots=True)
class KTx:
    id: str
    tenant: str | None
    key_id: str
    mail_from: str
    rcpt: str
    campaign: str | None
    spec: dict[str, Any] | None  # the message builder spec; None: an RFC 822 body
    state: State
    created: datetime
    updated: datetime
    reason: str | None = None  # Koukan's final_attempt_reason while the transaction is only here
    response: dict[str, Any] | None = None  # {"field": "rcpt_response"|"data_response", "code", "message"}
    version: int = 1


@dataclass(slots=True)
class KBlob:
    tx_id: str
    blob_id: str
    tenant: str | None
    created: datetime
    data: bytes | None = b""  # None once dropped (the body is on mail.bodies)
    length: int = 0
    total: int | None = None
    sha256: str | None = None
    ref: BodyRef | None = None  # the written body
    summary: dict[str, Any] = field(default_factory=dict)  # message_id, headers, attachment_count of a body

    @property
    def finalized(self) -> bool:
        return self.total is not None and self.length == self.total


class UploadRefused(ValueError):
    """A piece that does not continue the blob (416 with the length so far) or passes its limit (413)."""

    def __init__(self, status: int, message: str, blob: KBlob) -> None:
        super().__init__(message)
        self.status, self.blob = status, blob


class KoukanStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def create(self, tx: KTx, blobs: list[KBlob]) -> None:
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO ktx VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    tx.id,
                    tx.tenant,
                    tx.key_id,
                    tx.mail_from,
                    tx.rcpt,
                    tx.campaign,
                    None if tx.spec is None else json.dumps(tx.spec),
                    tx.state,
                    tx.reason,
                    None if tx.response is None else json.dumps(tx.response),
                    tx.version,
                    _ms(tx.created),
                    _ms(tx.updated),
                ),
            )
            for blob in blobs:
                self._put_blob(cur, blob)

    def tx(self, tx_id: str) -> KTx | None:
        row = self._db.execute(
            "SELECT id, tenant, key_id, mail_from, rcpt, campaign, spec, state, reason, response, version, "
            "created_ms, updated_ms FROM ktx WHERE id = ?",
            (tx_id,),
        ).fetchone()
        if row is None:
            return None
        return KTx(
            id=row[0],
            tenant=row[1],
            key_id=row[2],
            mail_from=row[3],
            rcpt=row[4],
            campaign=row[5],
            spec=None if row[6] is None else json.loads(row[6]),
            state=row[7],
            reason=row[8],
            response=None if row[9] is None else json.loads(row[9]),
            version=row[10],
            created=_at(row[11]),
            updated=_at(row[12]),
        )

    def blobs(self, tx_id: str) -> list[KBlob]:
        rows = self._db.execute(
            "SELECT tx_id, blob_id, tenant, data, length, total, sha256, ref, summary, created_ms FROM kblob "
            "WHERE tx_id = ? ORDER BY rowid",
            (tx_id,),
        ).fetchall()
        return [
            KBlob(
                tx_id=r[0],
                blob_id=r[1],
                tenant=r[2],
                data=r[3],
                length=r[4],
                total=r[5],
                sha256=r[6],
                ref=None if r[7] is None else BodyRef.model_validate_json(r[7]),
                summary=json.loads(r[8]) if r[8] else {},
                created=_at(r[9]),
            )
            for r in rows
        ]

    def blob(self, tx_id: str, blob_id: str) -> KBlob | None:
        return next((b for b in self.blobs(tx_id) if b.blob_id == blob_id), None)

    def append(self, blob: KBlob, chunk: Chunk, data: bytes, limit: int) -> KBlob:
        """Add a piece at its offset, Koukan's way: a retransmitted overlap is trimmed and accepted, a gap or a
        piece past the blob's declared end is refused (UploadRefused), as is a blob over `limit` bytes."""
        if blob.data is None or blob.finalized:
            raise UploadRefused(416, "the blob is complete", blob)
        if chunk.start > blob.length:
            raise UploadRefused(416, f"the piece starts at {chunk.start}; the blob has {blob.length} bytes", blob)
        new = data[blob.length - chunk.start :]
        end = blob.length + len(new)
        total = chunk.total if chunk.total is not None else blob.total
        if max(end, total or 0) > limit:
            raise UploadRefused(413, f"the blob would pass {limit} bytes", blob)
        if total is not None and end > total:
            raise UploadRefused(416, f"the piece passes the blob's length {total}", blob)
        blob.data, blob.length, blob.total = blob.data + new, end, total
        with self._transaction() as cur:
            self._put_blob(cur, blob)
        return blob

    def save_blob(self, blob: KBlob) -> None:
        with self._transaction() as cur:
            self._put_blob(cur, blob)

    def update(self, tx: KTx, now: datetime) -> None:
        """Store the transaction's state with a new version."""
        tx.version += 1
        tx.updated = now
        self._db.execute(
            "UPDATE ktx SET state = ?, reason = ?, response = ?, version = ?, updated_ms = ? WHERE id = ?",
            (
                tx.state,
                tx.reason,
                None if tx.response is None else json.dumps(tx.response),
                tx.version,
                _ms(now),
                tx.id,
            ),
        )

    def touch(self, tx: KTx, now: datetime) -> None:
        """A heartbeat: the transaction's blobs are still coming (Koukan's empty PATCH)."""
        tx.updated = now
        self._db.execute("UPDATE ktx SET updated_ms = ? WHERE id = ?", (_ms(now), tx.id))

    def prune(self, before: datetime) -> int:
        """Forget transactions (and their blobs) created before `before`; returns how many."""
        with self._transaction() as cur:
            cur.execute("DELETE FROM kblob WHERE tx_id IN (SELECT id FROM ktx WHERE created_ms < ?)", (_ms(before),))
            cur.execute("DELETE FROM ktx WHERE created_ms < ?", (_ms(before),))
            return int(cur.rowcount)

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        with contextlib.closing(self._db.cursor()) as cur:
            cur.execute("BEGIN")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    @staticmethod
    def _put_blob(cur: sqlite3.Cursor, b: KBlob) -> None:
        cur.execute(
            "INSERT INTO kblob VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(tx_id, blob_id) DO UPDATE SET "
            "data=excluded.data, length=excluded.length, total=excluded.total, sha256=excluded.sha256, "
            "ref=excluded.ref, summary=excluded.summary",
            (
                b.tx_id,
                b.blob_id,
                b.tenant,
                b.data,
                b.length,
                b.total,
                b.sha256,
                None if b.ref is None else b.ref.model_dump_json(),
                json.dumps(b.summary) if b.summary else None,
                _ms(b.created),
            ),
        )
