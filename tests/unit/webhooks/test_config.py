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


def test_a_configured_endpoint_at_a_denied_address_is_refused_unless_allowed() -> None:
    with pytest.raises(ConfigError, match=r"'ops': its host 127\.0\.0\.1 \(loopback address\) is denied"):
        load(url="http://127.0.0.1:9000/hook")
    allowed = {"endpoints": [{**GOOD, "url": "http://127.0.0.1:9000/hook"}], "outbound": {"allow": ["127.0.0.1"]}}
    assert parse_config({"webhooks": allowed}, env={}).webhooks.endpoints[0].url == "http://127.0.0.1:9000/hook"
    assert (
        load(url="https://localhost/hook").webhooks.endpoints[0].url == "https://localhost/hook"
    )  # a name: at connect


def test_a_bad_port_is_refused() -> None:
    with pytest.raises(ConfigError, match="url"):
        load(url="https://hooks.test:99999/x")
