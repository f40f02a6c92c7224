"""Each topic declares the record types written to it, and that declaration is held to what is written.

The in-memory twin refuses a stage's output or changelog write of a type the topic does not declare,
so every simulation that runs the stages on it (campaigns, queue controls, regrouping) checks
`topics.py`; the scenario here also checks the other way: each type declared on the topics several
kinds of record share is written there.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from mailstream.core.clock import ManualClock
from mailstream.events import fixtures, serde
from mailstream.events.memory import MemoryBus, MemoryOutput, MemoryProducer
from mailstream.events.records import Record
from mailstream.events.serde import SerdeError, encode, schema_name
from mailstream.events.topics import (
    ALL_TOPICS,
    DEAD_LETTER,
    EGRESS_STATE,
    QUEUE_STATE,
    READY,
    RESPONSES,
    STATUS,
    TopicSpec,
)
from tests.unit.scheduler.test_queue_controls_simulation import START, Twin
from tests.unit.scheduler.test_queue_states_simulation import TIGHT, latest

EXAMPLES: dict[type[Record], Record] = {type(r): r for r in fixtures.ALL}


def test_every_declared_type_has_a_current_schema_and_an_example() -> None:
    for topic in ALL_TOPICS:
        for value_type in topic.values:
            assert value_type.schema_name in serde.registry().current, (topic.name, value_type)
            assert value_type in EXAMPLES, f"fixtures.ALL has no {value_type.__name__}"
    assert DEAD_LETTER.values == ()  # it keeps other topics' records as they were


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=lambda t: t.name)
def test_a_topic_reads_each_of_its_types_and_refuses_the_others(topic: TopicSpec[Any]) -> None:
    for value_type, example in EXAMPLES.items():
        data = encode(example)
        if value_type in topic.values:
            assert topic.carries(data)
            assert topic.decode(data) == example
            assert topic.encode(example) == data
        else:
            assert not topic.carries(data)
            with pytest.raises(SerdeError, match=re.escape(topic.name)):
                topic.decode(data)
            with pytest.raises(TypeError, match=re.escape(topic.name)):
                topic.encode(example)


async def test_a_producer_refuses_a_record_its_topic_does_not_carry() -> None:
    producer = MemoryProducer(MemoryBus(8))
    with pytest.raises(TypeError, match=re.escape(STATUS.name)):
        await producer.send(STATUS, "tx-1", fixtures.log_record())  # type: ignore[misc]  # mypy refuses it too
    assert producer.records(STATUS) == []


def test_the_twin_refuses_a_stage_output_or_state_its_topic_does_not_declare() -> None:
    out = MemoryOutput(MemoryBus(8), {}, changelog_topic=EGRESS_STATE)
    out.send(READY.name, b"group", encode(fixtures.cancel_notice()))
    out.put(0, b"h:tx-1", encode(fixtures.ready()))
    with pytest.raises(SerdeError, match=re.escape(READY.name)):
        out.send(READY.name, b"group", encode(fixtures.task()))
    with pytest.raises(SerdeError, match=re.escape(EGRESS_STATE.name)):
        out.put(0, b"m:tx-1", encode(fixtures.queued()))  # stage 1's kind of state
    out.put(0, b"h:tx-1", None)  # a deletion carries no record


def test_a_scenario_writes_every_type_declared_on_the_shared_topics_and_nothing_else() -> None:
    """Promotions, a cancel notice and settlements on mail.ready; responses and a verdict on mail.responses;
    messages, counters, controls and totals in the changelogs.
    (UsageHandover: tests/unit/scheduler/test_egress_regrouping; ShapingControl: test_shaping_simulation.)"""
    clock = ManualClock(START)
    twin = Twin(TIGHT)
    ids = twin.submit(4, START)
    twin.command(clock(), "suspend", tenant="acme", campaign="autumn", reason="not this one")
    twin.run(clock, START + timedelta(minutes=5))
    held = next(tx for tx in ids if latest(twin, tx).status == "ready")
    twin.command(clock(), "cancel", tenant="acme", transaction_id=held)
    twin.run(clock, START + timedelta(minutes=10))

    def written(topic: str) -> set[str | None]:
        return {schema_name(r.value) for r in twin.bus.read(topic)}

    def stored(changelog: dict[int, dict[bytes, bytes]]) -> set[str | None]:
        return {schema_name(v) for state in changelog.values() for v in state.values()}

    elsewhere = {"mailstream.UsageHandover", "mailstream.ShapingControl"}
    assert written(READY.name) == {t.schema_name for t in READY.values} - elsewhere
    assert written(RESPONSES.name) == {t.schema_name for t in RESPONSES.values}
    assert stored(twin.queues.out.changelog) <= {t.schema_name for t in QUEUE_STATE.values}
    assert stored(twin.egress.out.changelog) <= {t.schema_name for t in EGRESS_STATE.values}
    assert "mailstream.QueuedMessage" in stored(twin.queues.out.changelog)
    assert "mailstream.EgressSettlement" in stored(twin.egress.out.changelog)
