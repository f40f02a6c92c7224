"""Keys from the environment (`MAILSTREAM_<SECTION>__<KEY>`): how a container gets secrets beside a mounted file."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mailstream.config.environment import apply_environment
from mailstream.config.model import ConfigError, parse_config


def test_a_variable_sets_a_nested_key_over_the_file() -> None:
    config = parse_config(
        {"scheduler": {"web_host": "127.0.0.1", "web_port": 7000}}, env={"MAILSTREAM_SCHEDULER__WEB_HOST": "0.0.0.0"}
    )
    assert config.scheduler.web_host == "0.0.0.0"
    assert config.scheduler.web_port == 7000  # the file's other keys stay


def test_scalars_are_converted_as_the_file_text_would_be() -> None:
    config = parse_config(
        {},
        env={
            "MAILSTREAM_DELIVERY__METRICS_PORT": "9200",
            "MAILSTREAM_GATEWAY__NOTICES": "false",
            "MAILSTREAM_GATEWAY__CUT_THROUGH_WAIT": "3s",
            "MAILSTREAM_KAFKA__REPLICATION_FACTOR": "3",
        },
    )
    assert config.delivery.metrics_port == 9200
    assert config.gateway.notices is False
    assert config.gateway.cut_through_wait == timedelta(seconds=3)
    assert config.kafka.replication_factor == 3


def test_a_yaml_list_replaces_the_files_list() -> None:
    file = {"ingest": {"api_keys": [{"key": "file-key-0123456789", "admin": True}]}}
    config = parse_config(
        file,
        env={
            "MAILSTREAM_INGEST__API_KEYS": "[{key: secret-key-0123456789, tenant: acme}, {key: admin-key-0123456789, "
            "admin: true}]"
        },
    )
    keys = [(k.key and k.key.get_secret_value(), k.tenant) for k in config.ingest.api_keys]
    assert keys == [("secret-key-0123456789", "acme"), ("admin-key-0123456789", None)]


def test_a_value_that_only_looks_like_yaml_stays_a_string() -> None:
    config = parse_config(
        {}, env={"MAILSTREAM_INGEST__MESSAGE_ID_DOMAIN": "yes", "MAILSTREAM_DELIVERY__EHLO_DOMAIN": "mx: 1"}
    )
    assert config.ingest.message_id_domain == "yes"  # YAML would have read a boolean
    assert config.delivery.ehlo_domain == "mx: 1"


def test_other_mailstream_variables_are_not_keys() -> None:
    env = {"MAILSTREAM_LOG_LEVEL": "DEBUG", "MAILSTREAM_RUN": "/tmp/x", "OTHER__THING": "1"}
    assert apply_environment({"a": 1}, env) == ({"a": 1}, [])


def test_the_file_data_is_not_changed() -> None:
    data = {"scheduler": {"web_port": 7000}}
    merged, names = apply_environment(data, {"MAILSTREAM_SCHEDULER__WEB_PORT": "7001"})
    assert data == {"scheduler": {"web_port": 7000}}
    assert merged == {"scheduler": {"web_port": "7001"}}
    assert names == ["MAILSTREAM_SCHEDULER__WEB_PORT"]


def test_bootstrap_servers_variable_wins_over_a_key_variable() -> None:
    config = parse_config({}, env={"MAILSTREAM_KAFKA__BOOTSTRAP_SERVERS": "a:1", "KAFKA_BOOTSTRAP_SERVERS": "b:2"})
    assert config.kafka.bootstrap_servers == "b:2"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MAILSTREAM_SCHEDULER__WEB_PORT": "0"}, "scheduler.web_port"),
        ({"MAILSTREAM_SCHEDULER__WEB_POTR": "1"}, "scheduler.web_potr"),
        ({"MAILSTREAM_NOSUCH__KEY": "1"}, "nosuch"),
    ],
)
def test_a_bad_key_or_value_names_the_key_and_says_it_came_from_the_environment(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({}, env=env)
    assert message in str(caught.value)
    assert f"keys set in the environment: {next(iter(env))}" in str(caught.value)


@pytest.mark.parametrize(
    ("data", "env", "message"),
    [
        ({}, {"MAILSTREAM_INGEST____PORT": "1"}, "MAILSTREAM_INGEST____PORT: empty key name"),
        ({}, {"MAILSTREAM_INGEST__API_KEYS": "[{key: "}, "MAILSTREAM_INGEST__API_KEYS: not a YAML list or mapping"),
        (
            {"ingest": {"api_keys": []}},
            {"MAILSTREAM_INGEST__API_KEYS__KEY": "x"},
            "MAILSTREAM_INGEST__API_KEYS__KEY: ingest.api_keys is not a mapping",
        ),
    ],
)
def test_a_variable_that_cannot_be_a_key_is_named(data: dict[str, object], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match="in the environment") as caught:
        parse_config(data, env=env)
    assert message in str(caught.value)
