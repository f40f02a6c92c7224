"""The event catalogue is generated, current, and its example consumer reads what mailstream writes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mailstream.events import fixtures
from mailstream.events.catalogue import render
from mailstream.events.serde import encode, schemas_dir
from mailstream.events.topics import ALL_TOPICS

ROOT = Path(__file__).resolve().parents[3]


def test_committed_catalogue_is_current() -> None:
    assert (ROOT / "docs/events.md").read_text() == render(), (
        "docs/events.md is stale: run `python -m mailstream.events.catalogue > docs/events.md`"
    )


def test_every_topic_and_record_type_is_in_it() -> None:
    text = render()
    for topic in ALL_TOPICS:
        assert f"### `{topic.name}`" in text
        for record_type in topic.values:
            assert f"`{record_type.schema_name}`" in text


def test_the_example_consumer_decodes_every_record_type_without_mailstream() -> None:
    spec = importlib.util.spec_from_file_location("consume_events", ROOT / "examples/consume_events.py")
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    schemas = example.load_schemas(schemas_dir())
    for record in fixtures.ALL:
        decoded = example.decode(encode(record), schemas)
        assert set(decoded) == set(type(record).model_fields), type(record).__name__
    single = encode(fixtures.log_record())
    by_id = {7: schemas[single[2:10]]}  # as a registry would answer for the id it gave the schema
    confluent = b"\x00\x00\x00\x00\x07" + single[10:]
    assert example.decode(confluent, schemas, by_id.__getitem__) == example.decode(single, schemas)
