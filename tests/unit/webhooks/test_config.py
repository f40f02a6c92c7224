"""The webhooks section refuses what could not be delivered to, naming the key."""

from __future__ import annotations

from typing import Any

import pytest

from mailstream.config.model import ConfigError, parse_config

GOOD = {"name": "ops", "url": "https://hooks.test/mail", "secret": "s" * 16, "events": ["delivered"]}


def load(**changes: Any) -> Any:
    return parse_config({"webhooks": {"endpoints": [{**GOOD, **changes}]}}, env={})


def test_defaults() -> None:
    endpoint = load().webhooks.endpoints[0]
    assert (endpoint.id, endpoint.retry_for.total_seconds(), endpoint.timeout.total_seconds()) == (
        "config-ops",
        86_400,
        10,
    )


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"url": "ftp://hooks.test/x"}, "url"),
        ({"url": "https:///x"}, "url"),
        ({"url": "https://u:p@hooks.test/x"}, "url"),
        ({"secret": "short"}, "secret"),
        ({"events": ["opened"]}, "events"),
        ({"events": []}, "events"),
        ({"retry_for": "8d"}, "retry_for"),
        ({"retry_for": "0s"}, "retry_for"),
        ({"timeout": "10m"}, "timeout"),
        ({"name": "has space"}, "name"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_endpoints_are_refused_by_key(change: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"webhooks\.endpoints\.0\.{key}"):
        load(**change)


def test_two_endpoints_of_one_name_are_refused() -> None:
    with pytest.raises(ConfigError, match="two webhook endpoints are named 'ops'"):
        parse_config({"webhooks": {"endpoints": [GOOD, GOOD]}}, env={})
