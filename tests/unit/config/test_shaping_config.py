"""shaping.rules: refused at start-up when a rule cannot work, naming the rule's key."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from mailstream.config.model import ConfigError, parse_config
from mailstream.core.shaping import Threshold


def rules(*items: dict[str, Any]) -> dict[str, Any]:
    return {"shaping": {"rules": list(items)}}


def test_a_rule_compiles_into_the_core_rule() -> None:
    config = parse_config(
        rules(
            {
                "name": "yahoo-ts",
                "codes": [421],
                "enhanced_codes": ["4.7.*"],
                "regex": r"\[TS0[1-4]\]",
                "sites": ["*.yahoodns.net"],
                "action": "limit_path",
                "max_message_rate": "10/min",
                "connection_limit": 1,
                "duration": "90m",
                "trigger": "2/hr",
            }
        ),
        env={},
    )
    [rule] = config.shaping.compiled()
    assert rule.threshold == Threshold(2, timedelta(hours=1))
    assert (rule.duration, rule.connection_limit, rule.max_message_rate) == (timedelta(minutes=90), 1, "10/m")
    assert rule.pattern is not None
    assert rule.pattern.search("421 [ts03] deferred")


@pytest.mark.parametrize(
    ("rule", "named"),
    [
        ({"action": "suspend_path"}, "duration"),
        ({"action": "pause", "duration": "1h"}, "action"),
        ({"action": "limit_path", "duration": "1h"}, "max_message_rate or connection_limit"),
        ({"action": "slow_tenant", "duration": "1h"}, "needs max_message_rate"),
        ({"action": "suspend_path", "duration": "1h", "connection_limit": 2}, "limit_path only"),
        ({"action": "suspend_tenant", "duration": "1h", "max_message_rate": "1/s"}, "no meaning"),
        ({"action": "suspend_path", "duration": "1h", "regex": "("}, "does not compile"),
        ({"action": "suspend_path", "duration": "1h", "trigger": "often"}, "trigger"),
        ({"action": "suspend_path", "duration": "0s"}, "duration"),
        ({"action": "suspend_path", "duration": "400d"}, "366 days"),
        ({"action": "suspend_path", "duration": "1h", "codes": [250]}, "codes"),
        ({"action": "suspend_path", "duration": "1h", "colour": "red"}, "colour"),
    ],
)
def test_a_rule_that_cannot_work_is_refused(rule: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        parse_config(rules({"name": "r", **rule}), env={})


def test_rule_names_are_unique() -> None:
    rule = {"name": "r", "action": "suspend_path", "duration": "1h"}
    with pytest.raises(ConfigError, match="used twice"):
        parse_config(rules(rule, rule), env={})
