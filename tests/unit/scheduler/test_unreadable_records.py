"""A record a stage cannot read (not Avro, an unknown schema, a record of another topic) is refused with
SerdeError rather than dropped unseen, so the processor sets it aside in mail.dead-letter with its error
and origin (tests/integration/test_transactional_processor.py shows that on a real broker)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailstream.config.model import parse_config
from mailstream.events import fixtures
from mailstream.events.processor import Output
from mailstream.events.serde import SerdeError, encode
from mailstream.events.topics import EGRESS_STATE, QUEUE_STATE, READY
from mailstream.scheduler.egress_stage import EgressStage
from mailstream.scheduler.policy import Policies
from mailstream.scheduler.queue_stage import INPUTS, QueueStage

POLICIES = Policies(parse_config({}, env={}))
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
UNREADABLE = [b"", b"not avro", b"\xc3\x01" + bytes(8) + b"unknown fingerprint", encode(fixtures.body())]


@pytest.mark.parametrize("value", UNREADABLE)
@pytest.mark.parametrize("topic", INPUTS)
def test_stage_1_refuses_a_record_it_cannot_read(topic: str, value: bytes) -> None:
    stage = QueueStage(POLICIES)
    stage.assigned(0, {})
    out = Output(QUEUE_STATE.name)
    with pytest.raises(SerdeError):
        stage.on_record(0, topic, b"acme", value, NOW, out)
    assert out.writes == []


@pytest.mark.parametrize("value", UNREADABLE)
def test_stage_2_refuses_a_record_it_cannot_read(value: bytes) -> None:
    stage = EgressStage(POLICIES)
    stage.assigned(0, {})
    with pytest.raises(SerdeError):
        stage.on_record(0, READY.name, b"unspecified", value, NOW, Output(EGRESS_STATE.name))
    assert stage.held_count() == 0
