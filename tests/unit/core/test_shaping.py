"""Adaptive shaping's matching and triggers, as tables (mailstream.core.shaping)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from mailstream.core.shaping import (
    QueueTarget,
    Reply,
    Rule,
    Sent,
    Threshold,
    fires,
    matches,
    queue_target,
    triggered,
)

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
TRY_LATER = Reply(421, "4.7.0", "try later")
SENT = Sent(
    "ip-1", "mx.example.net:25", "example.com", tenant="acme", campaign="spring", queue="spring:acme@example.com"
)


def rule(**fields: object) -> Rule:
    base: dict[str, object] = {"name": "r", "action": "suspend_path", "duration": timedelta(minutes=10)}
    return Rule(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "reply", "sent", "expected"),
    [
        ({}, TRY_LATER, SENT, True),  # no condition: every failure
        ({"codes": frozenset({421})}, TRY_LATER, SENT, True),
        ({"codes": frozenset({451, 452})}, TRY_LATER, SENT, False),
        ({"enhanced_codes": ("4.7.*",)}, TRY_LATER, SENT, True),
        ({"enhanced_codes": ("4.7.1",)}, TRY_LATER, SENT, False),
        ({"enhanced_codes": ("4.7.*",)}, Reply(421, None, "try later"), SENT, False),  # no enhanced code to match
        ({"pattern": re.compile("TRY LATER", re.I)}, TRY_LATER, SENT, True),
        ({"pattern": re.compile("rate limited", re.I)}, TRY_LATER, SENT, False),
        ({"sites": ("*.example.net:*",)}, TRY_LATER, SENT, True),
        ({"sites": ("*.outlook.com",)}, TRY_LATER, SENT, False),
        ({"sites": ("MX.EXAMPLE.NET:25",)}, TRY_LATER, SENT, True),  # names compare without case
        ({"domains": ("example.*",)}, TRY_LATER, SENT, True),
        ({"domains": ("gmail.com",)}, TRY_LATER, SENT, False),
        ({"sources": ("ip-*",)}, TRY_LATER, SENT, True),
        ({"sources": ("warm-*",)}, TRY_LATER, SENT, False),
        ({"tenants": ("acme",)}, TRY_LATER, SENT, True),
        ({"tenants": ("globex",)}, TRY_LATER, SENT, False),
        ({"tenants": ("acme",)}, TRY_LATER, Sent("ip-1", "s", "example.com"), False),  # mail of no tenant
        ({}, Reply(451, "4.4.1", "mailstream: CONNECT to x failed"), SENT, False),  # our own replies: not by default
        ({"match_internal": True}, Reply(451, "4.4.1", "mailstream: CONNECT to x failed"), SENT, True),
        ({"action": "suspend_campaign"}, TRY_LATER, Sent("ip-1", "s", "example.com", tenant="acme"), False),
        ({"codes": frozenset({421}), "enhanced_codes": ("4.7.0",), "sites": ("mx.*",)}, TRY_LATER, SENT, True),
        ({"codes": frozenset({421}), "enhanced_codes": ("4.7.0",), "sites": ("smtp.*",)}, TRY_LATER, SENT, False),
    ],
)
def test_a_rule_matches_when_every_condition_holds(
    fields: dict[str, object], reply: Reply, sent: Sent, expected: bool
) -> None:
    assert matches(rule(**fields), reply, sent) is expected


def test_every_matching_rule_triggers_in_file_order_and_a_delivery_none() -> None:
    rules = (rule(name="a"), rule(name="b", codes=frozenset({550})), rule(name="c", action="suspend_tenant"))
    assert [r.name for r in triggered(rules, TRY_LATER, SENT)] == ["a", "c"]
    assert triggered(rules, Reply(250, "2.0.0", "ok"), SENT) == []


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [
        ("3/10min", 3, timedelta(minutes=10)),
        ("2/hr", 2, timedelta(hours=1)),
        ("1/h", 1, timedelta(hours=1)),
        (" 5 / 30s ", 5, timedelta(seconds=30)),
    ],
)
def test_a_threshold_parses(text: str, count: int, period: timedelta) -> None:
    assert Threshold.parse(text) == Threshold(count, period)


@pytest.mark.parametrize("text", ["3", "x/10min", "3/", "0/1h", "3/never", "-1/1h"])
def test_a_bad_threshold_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"threshold|duration|count"):
        Threshold.parse(text)


def test_immediate_fires_on_the_first_reply() -> None:
    assert fires(None, (), T0) == (True, ())


def test_a_threshold_fires_on_the_nth_reply_within_its_period_and_counts_again_after() -> None:
    three = Threshold(3, timedelta(minutes=10))
    fired, hits = fires(three, (), T0)
    assert not fired
    fired, hits = fires(three, hits, T0 + timedelta(minutes=1))
    assert (fired, hits) == (False, (T0, T0 + timedelta(minutes=1)))
    fired, hits = fires(three, hits, T0 + timedelta(minutes=9))
    assert (fired, hits) == (True, ())  # fired: the count starts again


def test_replies_older_than_the_period_do_not_count() -> None:
    three = Threshold(3, timedelta(minutes=10))
    hits = (T0, T0 + timedelta(minutes=1))
    fired, kept = fires(three, hits, T0 + timedelta(minutes=10, seconds=30))
    assert (fired, kept) == (False, (T0 + timedelta(minutes=1), T0 + timedelta(minutes=10, seconds=30)))


def test_queue_actions_cover_the_tenant_or_the_campaign_for_the_domain_or_else_the_queue() -> None:
    assert queue_target(rule(action="suspend_tenant"), SENT) == QueueTarget("example.com", tenant="acme")
    assert queue_target(rule(action="slow_campaign"), SENT) == QueueTarget(
        "example.com", tenant="acme", campaign="spring"
    )
    no_tenant = Sent("ip-1", "s", "example.com", queue="example.com")
    assert queue_target(rule(action="suspend_tenant"), no_tenant) == QueueTarget("example.com", queue="example.com")
    assert rule().on_path
    assert rule(action="limit_path").on_path
    assert not rule(action="slow_tenant").on_path
