"""The message read model in SQLite (WAL): one row per transaction, an FTS5 index over recipient, sender and
subject, a tag table, and the offsets applied, written in the same SQLite transaction as the rows.

One writer (the projection's thread) and any number of readers, each thread with its own connection: WAL lets
readers go on while a batch is written. A reader's query is interrupted past `query_timeout`, so no request
can hold a connection for long.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mailstream.ingest.read_model.query import Cursor, QueueFilter, fts_match, page_query

SCHEMA_VERSION = 3  # raise it with any change to the layout below
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  accepted INTEGER NOT NULL DEFAULT 0,
  message_id TEXT NOT NULL DEFAULT '',
  queue_name TEXT NOT NULL DEFAULT '',
  recipient TEXT NOT NULL DEFAULT '' COLLATE NOCASE,
  sender TEXT NOT NULL DEFAULT '' COLLATE NOCASE,
  domain TEXT NOT NULL DEFAULT '',
  routing_domain TEXT, campaign_id TEXT, tenant_id TEXT, pool_name TEXT, egress_source TEXT,
  status TEXT NOT NULL DEFAULT 'scheduled',
  queue_state TEXT NOT NULL DEFAULT 'active',
  status_version INTEGER NOT NULL DEFAULT -1,
  final INTEGER NOT NULL DEFAULT 0,
  priority INTEGER NOT NULL DEFAULT 5,
  size_bytes INTEGER NOT NULL DEFAULT 0,
  num_attempts INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER,
  created_at INTEGER NOT NULL DEFAULT 0,
  scheduled_at INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER, last_attempt_at INTEGER, delivered_at INTEGER, expires_at INTEGER, updated_at INTEGER,
  smtp_code INTEGER, smtp_enhanced TEXT, smtp_message TEXT, smtp_at INTEGER,
  last_bounce_reason TEXT, bounce_type TEXT, bounce_class TEXT,
  subject TEXT NOT NULL DEFAULT '', headers TEXT, body_hash TEXT, attachment_count INTEGER,
  metadata TEXT, tags TEXT, reception_protocol TEXT,
  fts INTEGER NOT NULL DEFAULT 0,  -- 0: not in messages_fts yet, 1: in it, 2: in it without its subject
  record BLOB
);
CREATE INDEX IF NOT EXISTS ix_created ON messages (created_at);
CREATE INDEX IF NOT EXISTS ix_scheduled ON messages (scheduled_at);
CREATE INDEX IF NOT EXISTS ix_priority ON messages (priority);
CREATE INDEX IF NOT EXISTS ix_attempts ON messages (num_attempts);
CREATE INDEX IF NOT EXISTS ix_size ON messages (size_bytes);
CREATE INDEX IF NOT EXISTS ix_recipient ON messages (recipient);
CREATE INDEX IF NOT EXISTS ix_sender ON messages (sender);
CREATE INDEX IF NOT EXISTS ix_domain ON messages (domain);
CREATE INDEX IF NOT EXISTS ix_domain_created ON messages (domain, created_at);
-- a tenant's or a status's rows in each sort's order: a page walks them and tests the rest, instead of
-- sorting every row of the tenant or status (where those rows are many and the sort field is skewed by status)
CREATE INDEX IF NOT EXISTS ix_tenant_id_created_at ON messages (tenant_id, created_at);
CREATE INDEX IF NOT EXISTS ix_tenant_id_scheduled_at ON messages (tenant_id, scheduled_at);
CREATE INDEX IF NOT EXISTS ix_tenant_id_priority ON messages (tenant_id, priority);
CREATE INDEX IF NOT EXISTS ix_tenant_id_num_attempts ON messages (tenant_id, num_attempts);
CREATE INDEX IF NOT EXISTS ix_tenant_id_size_bytes ON messages (tenant_id, size_bytes);
CREATE INDEX IF NOT EXISTS ix_tenant_id_recipient ON messages (tenant_id, recipient);
CREATE INDEX IF NOT EXISTS ix_tenant_id_domain ON messages (tenant_id, domain);
CREATE INDEX IF NOT EXISTS ix_status_scheduled_at ON messages (status, scheduled_at);
CREATE INDEX IF NOT EXISTS ix_status_priority ON messages (status, priority);
CREATE INDEX IF NOT EXISTS ix_status_num_attempts ON messages (status, num_attempts);
CREATE INDEX IF NOT EXISTS ix_status_size_bytes ON messages (status, size_bytes);
CREATE INDEX IF NOT EXISTS ix_status_recipient ON messages (status, recipient);
CREATE INDEX IF NOT EXISTS ix_status_domain ON messages (status, domain);
CREATE INDEX IF NOT EXISTS ix_tenant_status_created ON messages (tenant_id, status, created_at);
CREATE INDEX IF NOT EXISTS ix_status_created ON messages (status, created_at);
CREATE INDEX IF NOT EXISTS ix_campaign_created ON messages (campaign_id, created_at);
CREATE INDEX IF NOT EXISTS ix_queue_created ON messages (queue_name, created_at);
CREATE INDEX IF NOT EXISTS ix_queued ON messages (final, created_at);
-- the delivery timeline's buckets (added to an existing store on open: no layout change)
CREATE INDEX IF NOT EXISTS ix_delivered ON messages (delivered_at) WHERE delivered_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_fts_pending ON messages (fts) WHERE fts != 1;
CREATE TABLE IF NOT EXISTS tags (tag TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (tag, seq)) WITHOUT ROWID;
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts
  USING fts5(recipient, sender, subject, content='messages', content_rowid='seq');
CREATE TABLE IF NOT EXISTS offsets (
  topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition)
);
"""

ACCEPTED_COLUMNS = (  # noqa: SIM905 - a list of names, read more easily as words
    "message_id queue_name recipient sender domain routing_domain campaign_id tenant_id priority size_bytes "
    "max_attempts created_at scheduled_at expires_at subject headers body_hash metadata tags reception_protocol "
    "attachment_count"
).split()
PROGRESS_COLUMNS = (  # noqa: SIM905
    "status_version status queue_state num_attempts next_attempt_at last_attempt_at delivered_at pool_name "
    "egress_source smtp_code smtp_enhanced smtp_message smtp_at last_bounce_reason bounce_type bounce_class final "
    "updated_at record"
).split()
# Submission facts a status carries too; kept only until the accepted record is seen (which always wins).
FALLBACK_COLUMNS = (  # noqa: SIM905
    "message_id queue_name domain routing_domain campaign_id tenant_id priority max_attempts "
    "created_at scheduled_at expires_at"
).split()
INSERT_ONLY = ("recipient", "sender")  # the same on both records: a status never rewrites them


def _accepted_sql() -> str:
    cols = ["id", "accepted", *ACCEPTED_COLUMNS]
    sets = ", ".join(f"{c}=excluded.{c}" for c in ACCEPTED_COLUMNS)
    # A row a status made is already in the full-text index without its subject (fts 2: index it again).
    return (
        f"INSERT INTO messages ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
        f"ON CONFLICT(id) DO UPDATE SET accepted=1, fts=iif(fts = 1 AND accepted = 0, 2, fts), {sets}"
    )


def _status_sql() -> str:
    cols = ["id", *PROGRESS_COLUMNS, *FALLBACK_COLUMNS, *INSERT_ONLY]
    sets = [f"{c}=excluded.{c}" for c in PROGRESS_COLUMNS]
    sets += [f"{c}=iif(accepted, {c}, excluded.{c})" for c in FALLBACK_COLUMNS]
    return (
        f"INSERT INTO messages ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
        f"ON CONFLICT(id) DO UPDATE SET {', '.join(sets)} WHERE excluded.status_version > messages.status_version"
    )


# Rows are put into the full-text index once a batch, in bulk: an FTS5 insert per row from a trigger cost
# ten times the row's own insert. External content: a 'delete' must name the values indexed (subject '').
INDEX_PENDING = (
    "INSERT INTO messages_fts (messages_fts, rowid, recipient, sender, subject) "
    "SELECT 'delete', seq, recipient, sender, '' FROM messages WHERE fts != 1 AND fts = 2",
    "INSERT INTO messages_fts (rowid, recipient, sender, subject) "
    "SELECT seq, recipient, sender, subject FROM messages WHERE fts != 1",
    "UPDATE messages SET fts = 1 WHERE fts != 1",
)

ACCEPTED_SQL, STATUS_SQL = _accepted_sql(), _status_sql()


COMMON = 5000  # matches past which a tag or search is probed rather than driven from (MessageStore.page)


class QueryTimeout(RuntimeError):
    """A read took longer than the store allows."""


class MessageStore:
    def __init__(self, path: Path, query_timeout: float = 5.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.query_timeout = path, query_timeout
        self._local = threading.local()
        self._writer = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._writer.execute("PRAGMA journal_mode=WAL")
        self._writer.execute("PRAGMA synchronous=NORMAL")
        self._writer.execute("PRAGMA cache_size=-65536")  # 64 MiB: index pages of a big batch stay in memory
        if self._writer.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            # Another layout: this is a read model, so it is dropped (its offsets too) and built again from the topics.
            for table in ("messages_fts", "tags", "offsets", "messages"):
                self._writer.execute(f"DROP TABLE IF EXISTS {table}")
            self._writer.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._writer.executescript(_SCHEMA)
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    # -- writing (the projection's thread) --

    def offsets(self) -> dict[tuple[str, int], int]:
        rows = self._writer.execute("SELECT topic, partition, next_offset FROM offsets").fetchall()
        return {(t, p): o for t, p, o in rows}

    def apply(
        self,
        accepted: Iterable[dict[str, Any]],
        statuses: Iterable[dict[str, Any]],
        offsets: dict[tuple[str, int], int],
    ) -> None:
        """One SQLite transaction: the accepted rows, then the statuses (a status read in the same batch as its
        accepted record lands on the full row), then the next offsets to read."""
        cur = self._writer.cursor()
        try:
            cur.execute("BEGIN")
            accepted = list(accepted)
            cur.executemany(ACCEPTED_SQL, [[r["id"], 1, *(r[c] for c in ACCEPTED_COLUMNS)] for r in accepted])
            tagged = [r for r in accepted if r["tag_list"]]
            if tagged:
                seqs = dict(self._seqs(cur, [r["id"] for r in tagged]))
                cur.executemany(
                    "INSERT OR IGNORE INTO tags VALUES (?, ?)",
                    [(t, seqs[r["id"]]) for r in tagged for t in r["tag_list"]],
                )
            cur.executemany(
                STATUS_SQL,
                [
                    [r["id"], *(r[c] for c in PROGRESS_COLUMNS), *(r[c] for c in FALLBACK_COLUMNS)]
                    + [r[c] for c in INSERT_ONLY]
                    for r in statuses
                ],
            )
            for statement in INDEX_PENDING:
                cur.execute(statement)
            cur.executemany(
                "INSERT INTO offsets VALUES (?, ?, ?) ON CONFLICT(topic, partition) DO UPDATE "
                "SET next_offset=MAX(next_offset, excluded.next_offset)",
                [(t, p, o) for (t, p), o in offsets.items()],
            )
            cur.execute("COMMIT")
        except BaseException:
            if self._writer.in_transaction:
                cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()

    def prune(self, created_before_ms: int, limit: int = 10_000) -> int:
        """Forget up to `limit` finished messages created before the instant (rows, tags, full-text entries) in
        one transaction; returns how many. Their records are past mail.accepted's retention, so none comes back."""
        cur = self._writer.cursor()
        try:
            cur.execute("BEGIN")
            seqs = [
                r[0]
                for r in cur.execute(
                    "SELECT seq FROM messages WHERE final = 1 AND created_at < ? LIMIT ?", (created_before_ms, limit)
                )
            ]
            for start in range(0, len(seqs), 500):
                chunk = seqs[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                cur.execute(
                    "INSERT INTO messages_fts (messages_fts, rowid, recipient, sender, subject) SELECT 'delete', "
                    f"seq, recipient, sender, subject FROM messages WHERE seq IN ({marks}) AND fts = 1",
                    chunk,
                )
                cur.execute(f"DELETE FROM tags WHERE seq IN ({marks})", chunk)
                cur.execute(f"DELETE FROM messages WHERE seq IN ({marks})", chunk)
            cur.execute("COMMIT")
            return len(seqs)
        except BaseException:
            if self._writer.in_transaction:
                cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()

    @staticmethod
    def _seqs(cur: sqlite3.Cursor, ids: list[str]) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        for start in range(0, len(ids), 500):  # SQLite binds at most 32,766 parameters
            chunk = ids[start : start + 500]
            found += cur.execute(f"SELECT id, seq FROM messages WHERE id IN ({', '.join('?' * len(chunk))})", chunk)
        return found

    def optimize(self) -> None:
        """Fresh statistics for the planner (sampled, so quick at any size): without them it takes an equality on
        any index for selective, and would sort a whole tenant's rows rather than walk the sort's index."""
        self._writer.execute("PRAGMA analysis_limit=50000")  # rows per index: enough to tell a tenant from an id
        self._writer.execute("ANALYZE")

    # -- reading (any thread) --

    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            db.row_factory = sqlite3.Row
            self._local.db = db
            with self._readers_lock:
                self._readers.append(db)
        return db

    @contextlib.contextmanager
    def _deadline(self) -> Iterator[sqlite3.Connection]:
        db = self._reader()
        until = time.monotonic() + self.query_timeout
        db.set_progress_handler(lambda: int(time.monotonic() > until), 10_000)
        try:
            yield db
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc):
                raise QueryTimeout(f"the query took longer than {self.query_timeout:g} s") from None
            raise
        finally:
            db.set_progress_handler(None, 0)

    def page(
        self,
        f: QueueFilter,
        sort_by: str = "created_at",
        order: str = "desc",
        limit: int = 50,
        cursor: Cursor | None = None,
        offset: int = 0,
    ) -> list[sqlite3.Row]:
        """Up to `limit` + 1 whole rows in the sort's order (page_query; QueryError for a bad sort)."""
        with self._deadline() as db:
            probe = self._common(db, f)
            page = page_query(f, sort_by, order, limit, cursor, offset, probe)
            seqs = [row[0] for row in db.execute(page.sql, page.params)]
            if not seqs:
                return []
            rows = db.execute(f"SELECT * FROM messages WHERE seq IN ({', '.join('?' * len(seqs))})", seqs)
            by_seq = {row["seq"]: row for row in rows}
            return [by_seq[s] for s in seqs if s in by_seq]

    @staticmethod
    def _common(db: sqlite3.Connection, f: QueueFilter) -> bool:
        """Whether a tag or search of the filter matches so many rows that probing beats driving from them."""
        checks = [("SELECT seq FROM tags WHERE tag = ?", tag) for tag in f.tags]
        if f.search_query is not None:
            checks.append(("SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?", fts_match(f.search_query)))
        return any(
            db.execute(f"SELECT count(*) FROM ({sql} LIMIT ?)", (value, COMMON)).fetchone()[0] >= COMMON
            for sql, value in checks
        )

    def rows(self, sql: str, params: Iterable[object] = ()) -> list[sqlite3.Row]:
        with self._deadline() as db:
            return db.execute(sql, list(params)).fetchall()

    def get(self, tx_id: str) -> sqlite3.Row | None:
        found = self.rows("SELECT * FROM messages WHERE id = ?", (tx_id,))
        return found[0] if found else None

    def close(self) -> None:
        with self._readers_lock:
            for db in self._readers:
                db.close()
            self._readers.clear()
        self._writer.close()
