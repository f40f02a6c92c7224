"""The configuration refuses what would outgrow what the log keeps: a `max_age` longer than a message's body is
kept (mail.bodies, less a day), and a sliding window whose sends would not fit stage 2's state record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailstream.config import ConfigError
from mailstream.config.model import parse_config
from mailstream.core.backoff import RetryPolicy
from mailstream.events import fixtures
from mailstream.events.records import LimitState, SourceUsage
from mailstream.events.serde import encode
from mailstream.events.topics import EGRESS_STATE, MESSAGE_LIFETIME, SOURCE_USAGE
from mailstream.scheduler.lifecycle import deadline, on_accepted


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"queues": {"max_age": "10 days"}}, "queues.max_age"),
        ({"queues": {"rules": [{"tenant": "acme", "max_age": "9 days 1 second"}]}}, "queues.rules.0.max_age"),
        ({"queues": {"rules": [{"campaign": "x", "max_age": "30d"}]}}, "queues.rules.0.max_age"),
    ],
)
def test_a_max_age_its_body_would_not_outlive_is_refused(data: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, env={})
    assert where in str(err.value)
    assert "at most 9d" in str(err.value)


def test_max_age_up_to_the_lifetime_is_accepted() -> None:
    config = parse_config({"queues": {"max_age": "9 days", "rules": [{"tenant": "a", "max_age": "9d"}]}}, env={})
    assert config.queues.max_age == MESSAGE_LIFETIME
    assert parse_config({}, env={}).queues.max_age == timedelta(days=7)


def test_the_environment_cannot_lengthen_it_either() -> None:
    with pytest.raises(ConfigError, match=r"queues\.max_age"):
        parse_config({}, env={"MAILSTREAM_QUEUES__MAX_AGE": "12d"})


def test_a_message_accepted_before_the_bound_expires_with_its_body() -> None:
    """Stage 1 holds a message written before the doors checked (expires_at a month on) to the lifetime too."""
    created = fixtures.T0
    far = fixtures.accepted().model_copy(update={"received_at": created, "expires_at": created + timedelta(days=30)})
    state = on_accepted(far, 0, "pool").state
    assert state is not None
    assert deadline(state, RetryPolicy()) == state.transaction.created_at + MESSAGE_LIFETIME


def test_a_sliding_window_larger_than_its_state_can_hold_is_refused() -> None:
    source = {"name": "s", "sliding_window": {"limit": 50_001, "span": "1h"}}
    with pytest.raises(ConfigError, match=r"egress\.sources\.0\.sliding_window\.limit"):
        parse_config({"egress": {"sources": [source]}}, env={})


def test_the_largest_sliding_window_fits_stage_2s_records() -> None:
    now = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    sends = tuple(now - timedelta(microseconds=7919 * i) for i in range(50_000))
    state = encode(LimitState(day="2026-11-22", used=50_000, sends=sends))
    usage = encode(
        SourceUsage(source="s" * 255, day="2026-11-22", used=50_000, daily_limit=10**9, sends=sends, as_of=now)
    )
    assert len(state) < EGRESS_STATE.max_message_bytes // 2
    assert len(usage) < SOURCE_USAGE.max_message_bytes // 2
