"""delivery.outbound and a relay's TLS settings are checked with the configuration, before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trustme

from mailstream.config.model import ConfigError, parse_config


def with_relay(**relay: Any) -> dict[str, Any]:
    return {
        "egress": {
            "sources": [{"name": "s", "relay": {"host": "relay.example.net", **relay}}],
            "pools": [{"name": "p", "entries": [{"name": "s"}]}],
        },
        "queues": {"egress_pool": "p"},
    }


def test_the_default_denies_special_addresses_and_allows_nothing() -> None:
    policy = parse_config({}, env={}).delivery.outbound.policy()
    assert policy.refusal("127.0.0.1", 2525) == "loopback address"
    assert policy.refusal("8.8.8.8", 25) is None


def test_allowed_endpoints_and_networks_are_read() -> None:
    outbound = {"allow": ["127.0.0.1:2525", "10.20.0.0/16"], "deny": ["203.0.113.0/24"]}
    policy = parse_config({"delivery": {"outbound": outbound}}, env={}).delivery.outbound.policy()
    assert policy.refusal("127.0.0.1", 2525) is None
    assert policy.refusal("10.20.1.1", 25) is None
    assert policy.refusal("203.0.113.9", 25) == "in denied network 203.0.113.0/24"


@pytest.mark.parametrize(
    ("outbound", "error"),
    [
        ({"allow": ["sink.local:2525"]}, "must be an IP address"),
        ({"allow": ["10.0.0.1/8"]}, "not a network"),
        ({"deny": ["127.0.0.1:25"]}, "not a network"),
        ({"allow_all": True}, "allow_all"),
    ],
)
def test_bad_outbound_entries_are_refused_by_name(outbound: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_config({"delivery": {"outbound": outbound}}, env={})


def test_a_relay_with_credentials_cannot_have_tls_disabled() -> None:
    with pytest.raises(ConfigError, match="credentials needs TLS"):
        parse_config(with_relay(username="u", password="p", starttls="disabled"), env={})


def test_a_relays_ca_file_must_hold_certificates(tmp_path: Path) -> None:
    (tmp_path / "empty.pem").write_text("not a certificate\n")
    for missing in (tmp_path / "absent.pem", tmp_path / "empty.pem"):
        with pytest.raises(ConfigError, match="no CA certificates"):
            parse_config(with_relay(ca_file=str(missing)), env={})
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    relay = parse_config(with_relay(ca_file=str(tmp_path / "ca.pem")), env={}).egress.source("s").relay
    assert relay is not None
    assert relay.ca_file == tmp_path / "ca.pem"
