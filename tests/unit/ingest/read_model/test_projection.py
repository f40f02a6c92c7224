"""The projector: a status's id and version read without decoding it, and records it cannot read passed over
with their offsets still stored, so a poison record never stops the read model."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from mailstream.config.scheduling import QueueDefaults
from mailstream.events import fixtures
from mailstream.events.serde import encode
from mailstream.events.topics import ACCEPTED, STATUS
from mailstream.ingest.read_model.projection import Projector, peek_status
from mailstream.ingest.read_model.query import ms
from mailstream.ingest.read_model.rows import QueueResolver
from mailstream.ingest.read_model.store import MessageStore
from tests.infra.read_model_records import message, records


def test_peek_reads_id_and_version_as_decoding_would() -> None:
    for st in message(3, random.Random(3)).statuses:
        assert peek_status(encode(st)) == (st.id, st.version)
    assert peek_status(encode(fixtures.status())) == (fixtures.status().id, fixtures.status().version)


def test_peek_declines_what_is_not_plainly_a_status() -> None:
    for value in (None, b"", b"\xc3\x01short", b"not avro at all, not at all", encode(fixtures.accepted())):
        assert peek_status(value) is None


def test_unreadable_records_are_passed_over_and_their_offsets_stored(tmp_path: Path) -> None:
    store = MessageStore(tmp_path / "m.sqlite3")
    projector = Projector(store, QueueResolver(QueueDefaults()))
    good = message(1, random.Random(1))
    projector.apply(
        [
            (ACCEPTED.name, 2, 10, b"garbage"),
            (STATUS.name, 4, 7, encode(fixtures.accepted())),  # a record of another topic's kind
            (STATUS.name, 4, 8, None),
            (ACCEPTED.name, 2, 11, encode(good.accepted)),
            (STATUS.name, 4, 9, encode(good.statuses[-1])),
        ]
    )
    assert store.offsets() == {(ACCEPTED.name, 2): 12, (STATUS.name, 4): 10}
    row = store.get(good.accepted.id)
    assert row is not None
    assert row["status"] == good.statuses[-1].status
    assert len(store.rows("SELECT id FROM messages")) == 1


def test_only_the_newest_status_of_a_batch_is_written_whatever_its_place(tmp_path: Path) -> None:
    store = MessageStore(tmp_path / "m.sqlite3")
    projector = Projector(store, QueueResolver(QueueDefaults()))
    m = message(25, random.Random(25))
    assert len(m.statuses) == 3  # scheduled, deferred, delivered
    last, *earlier = reversed(m.statuses)
    projector.apply([(STATUS.name, 0, i, encode(st)) for i, st in enumerate([last, *earlier])])  # newest first
    row = store.get(m.accepted.id)
    assert row is not None
    assert (row["status_version"], row["status"]) == (last.version, last.status)


def test_prune_forgets_old_finished_messages_with_their_tags_and_index_entries(tmp_path: Path) -> None:
    store = MessageStore(tmp_path / "m.sqlite3")
    made = [message(i, random.Random(i)) for i in range(60)]
    Projector(store, QueueResolver(QueueDefaults())).apply(records(made))
    cutoff = made[30].accepted.received_at
    old_final = {m.accepted.id for m in made[:30] if m.statuses[-1].is_final}
    assert old_final
    assert store.prune(ms(cutoff) or 0, limit=7) == 7  # bounded passes
    while store.prune(ms(cutoff) or 0):
        pass
    left = {r[0] for r in store.rows("SELECT id FROM messages")}
    assert left == {m.accepted.id for m in made} - old_final
    assert store.rows("SELECT count(*) FROM tags WHERE seq NOT IN (SELECT seq FROM messages)")[0][0] == 0
    indexed = store.rows("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?", ('"bounce"',))[0][0]
    assert indexed == len(left)  # every sender is bounce@<tenant>.test
    with sqlite3.connect(tmp_path / "m.sqlite3") as db:  # the index agrees with the rows, entry for entry
        db.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")
