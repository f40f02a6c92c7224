"""The configuration refuses what it does not understand, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mailstream.config import ConfigError, load_config
from mailstream.config.model import parse_config

REPO = Path(__file__).resolve().parents[3]
KEY = {"key": "k" * 20, "tenant": "acme"}


def test_shipped_local_config_is_valid() -> None:
    config = load_config(REPO / "deploy" / "config" / "local.yaml", env={})
    assert config.delivery.smarthost == "127.0.0.1:2525"
    assert config.queues.retry_interval.total_seconds() == 1200
    assert {k.tenant for k in config.ingest.api_keys} == {None, "acme"}


def test_defaults_need_no_file() -> None:
    config = load_config(None, env={})
    assert config.egress.pools[0].name == "unspecified"
    assert config.queues.max_age.days == 7


def test_bootstrap_servers_env_overrides_the_file() -> None:
    config = parse_config({"kafka": {"bootstrap_servers": "a:1"}}, env={"KAFKA_BOOTSTRAP_SERVERS": "b:2"})
    assert config.kafka.bootstrap_servers == "b:2"


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"kafka": {"bootstrap": "x"}}, "kafka.bootstrap"),
        ({"queues": {"retry_interval": "soonish"}}, "queues.retry_interval"),
        ({"queues": {"egress_pool": "nope"}}, "unknown pool 'nope'"),
        ({"delivery": {"smarthost": "mail.example.com"}}, "delivery"),
        ({"delivery": {"concurrency": 0}}, "delivery.concurrency"),
        ({"ingest": {"api_keys": [{"key": "short", "tenant": "a"}]}}, "ingest.api_keys.0.key"),
        ({"ingest": {"api_keys": [{"key": "k" * 20}]}}, "ingest.api_keys.0"),
        ({"ingest": {"api_keys": [{**KEY, "admin": True}]}}, "ingest.api_keys.0"),
        ({"egress": {"pools": [{"name": "p", "entries": [{"name": "ghost"}]}]}}, "unknown egress source 'ghost'"),
        ({"egress": {"pools": [{"name": "p", "entries": [{"name": "unspecified", "weight": -1}]}]}}, "weight"),
        ({"egress": {"sources": [{"name": "a", "source_address": "999.1.1.1"}]}}, "source_address"),
        ({"egress": {"sources": [{"name": "a", "relay": {"host": "r", "username": "u"}}]}}, "egress.sources.0.relay"),
        (
            {"egress": {"sources": [{"name": "a", "relay": {"host": "r", "starttls": "maybe"}}]}},
            "egress.sources.0.relay.starttls",
        ),
        ({"delivery": {"nameservers": ["dns.example.com"]}}, "nameserver 'dns.example.com'"),
        ({"delivery": {"nameservers": ["127.0.0.1:99999"]}}, "bad port"),
        ({"delivery": {"idle_timeout": "a while"}}, "delivery.idle_timeout"),
    ],
)
def test_bad_values_are_refused_with_their_path(data: dict[str, object], where: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(data, env={})
    assert where in str(exc.value)


def test_unreadable_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad, env={})


def test_commented_scheduling_example_in_local_config_is_valid() -> None:
    text = (REPO / "deploy" / "config" / "local.yaml").read_text()
    example = text[text.index("# egress:") :]
    data = yaml.safe_load("\n".join(line.removeprefix("# ") for line in example.splitlines()))
    config = parse_config(data, env={})
    assert config.egress.pool("warm").policy == "round_robin"
    assert str(config.queues.rules[0].max_message_rate) == "1000/h"
    assert config.tenants["acme"].daily_limit == 50000


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"queues": {"rules": [{"tenant": "a", "egress_pool": "nope"}]}}, "queues.rules.0.egress_pool"),
        ({"queues": {"max_message_rate": "lots/h"}}, "queues.max_message_rate"),
        (
            {
                "egress": {
                    "sources": [{"name": "a", "daily_limit": -5}],
                    "pools": [{"name": "p", "entries": [{"name": "a"}]}],
                }
            },
            "egress.sources.0.daily_limit",
        ),
        ({"egress": {"daily_reset_timezone": "Mars/Olympus"}}, "egress.daily_reset_timezone"),
        (
            {"tenants": {"acme": {"send_window": {"start": "08:00", "end": "20:00", "timezone": "Nowhere/X"}}}},
            "tenants.acme.send_window",
        ),
        (
            {"egress": {"paths": [{"domain": "x.com", "max_connection_rate": "10/fortnight"}]}},
            "egress.paths.0.max_connection_rate",
        ),
        ({"egress": {"paths": [{"domain": "x.com", "source": "ghost"}]}}, "unknown egress source 'ghost'"),
    ],
)
def test_bad_scheduling_configuration_names_the_key(data: dict[str, object], where: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, env={})
    assert where in str(err.value)
