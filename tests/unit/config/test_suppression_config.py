"""`suppression`: which bounce types suppress and for how long, a tenant's rules replacing the defaults, and a bad
value refused at start-up naming its key."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from mailstream.config.model import ConfigError, parse_config


def suppression(section: dict[str, Any]) -> Any:
    return parse_config({"suppression": section}, env={}).suppression


def test_by_default_hard_bounces_and_complaints_suppress_for_good() -> None:
    rules = parse_config({}, env={}).suppression.rules("acme")
    assert dict(rules.lifetimes) == {"hard": None, "complaint": None}
    assert not rules.suppresses("soft")


def test_a_tenants_rules_replace_the_defaults_for_its_mail_only() -> None:
    section = suppression(
        {"on_bounce": {"hard": "30d"}, "tenants": {"acme": {"on_bounce": {"hard": "forever", "block": "2h"}}}}
    )
    assert dict(section.rules("acme").lifetimes) == {"hard": None, "block": timedelta(hours=2)}
    assert dict(section.rules("globex").lifetimes) == {"hard": timedelta(days=30)}
    assert dict(section.rules(None).lifetimes) == {"hard": timedelta(days=30)}
    assert dict(suppression({"on_bounce": {}}).rules("acme").lifetimes) == {}  # nothing suppresses
    assert dict(suppression({"on_bounce": {"hard": None, "soft": 3600}}).rules(None).lifetimes) == {
        "hard": None,
        "soft": timedelta(hours=1),
    }


@pytest.mark.parametrize(
    ("section", "where"),
    [
        ({"on_bounce": {"hardd": "1d"}}, "suppression.on_bounce.hardd"),
        ({"on_bounce": {"hard": "0s"}}, "suppression.on_bounce.hard"),
        ({"on_bounce": {"hard": "soon"}}, "suppression.on_bounce.hard"),
        ({"on_bounce": {"hard": True}}, "suppression.on_bounce.hard"),
        ({"tenants": {"acme": {}}}, "suppression.tenants.acme.on_bounce"),
        ({"on_bounce": {"hard": "1d"}, "colour": "red"}, "suppression.colour"),
    ],
)
def test_a_bad_value_is_refused_naming_its_key(section: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError, match="  " + re.escape(where)):
        suppression(section)
