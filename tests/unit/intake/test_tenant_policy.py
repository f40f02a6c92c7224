"""A tenant's rights (`tenants.<t>`): sender domains, and the steering metadata its keys may set."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mailstream.config.model import ConfigError, parse_config
from mailstream.config.tenants import TenantConfig
from mailstream.core.clock import ManualClock
from mailstream.events.memory import MemoryProducer
from mailstream.intake.submission import Outgoing, Submitter
from mailstream.intake.tenant_policy import TenantPolicies, header_addresses, loopback, unrestricted_senders

ACME = TenantConfig.model_validate(
    {
        "sender_domains": ["acme.test", "Mail.Acme.Test."],
        "routing_domains": ["relay.acme.test", "*.hub.acme.test"],
        "queues": ["bulk:acme@*", "acme@example.com!relay.acme.test", "acme@example.com!evil.test", "null", "vip*"],
    }
)
POLICIES = TenantPolicies({"acme": ACME, "globex": TenantConfig()})


@pytest.mark.parametrize(
    ("tenant", "address", "refused"),
    [
        ("acme", "ann@acme.test", False),
        ("acme", "ann@ACME.test", False),
        ("acme", "ann@mail.acme.test", False),  # the configured name was normalised
        ("acme", "ann@sub.acme.test", True),  # exact domains: a subdomain is not its parent
        ("acme", "ann@globex.test", True),
        ("acme", "nobody", True),
        ("globex", "ann@anything.test", False),  # no list: any domain (as before the setting existed)
        ("initech", "ann@anything.test", False),  # a tenant without an entry likewise
    ],
)
def test_sender_domains(tenant: str, address: str, refused: bool) -> None:
    why = POLICIES.sender_refusal(tenant, address)
    assert (why is not None) == refused
    if why is not None:
        assert why == f"tenant {tenant!r} may not send as <{address}> (its sender domains: acme.test, mail.acme.test)"


def test_every_from_address_is_held_to_the_sender_domains() -> None:
    assert POLICIES.from_refusal("acme", '"Ann" <ann@acme.test>') is None
    assert POLICIES.from_refusal("acme", None) is None
    why = POLICIES.from_refusal("acme", "Ann <ann@acme.test>, Mallory <m@evil.test>")
    assert why is not None
    assert why.startswith("From: tenant 'acme' may not send as <m@evil.test>")
    assert header_addresses("undisclosed:;") == []


@pytest.mark.parametrize(
    ("tenant", "meta", "refused"),
    [
        ("acme", {"routing_domain": "relay.acme.test"}, []),
        ("acme", {"routing_domain": "RELAY.acme.test."}, []),
        ("acme", {"routing_domain": "a.hub.acme.test"}, []),
        ("acme", {"routing_domain": "127.0.0.1"}, ["routing_domain"]),
        ("acme", {"routing_domain": ""}, []),  # empty is unset
        ("globex", {"routing_domain": "relay.globex.test"}, ["routing_domain"]),  # allowed none
        ("acme", {"queue": "bulk:acme@example.com"}, []),
        ("acme", {"queue": "null"}, []),  # the discarding queue, when listed
        ("acme", {"queue": "acme@example.com!relay.acme.test"}, []),
        ("acme", {"queue": "acme@example.com!evil.test"}, ["queue"]),  # listed, but its routing domain is not
        ("acme", {"queue": "bulk:globex@example.com"}, ["queue"]),  # not listed
        ("acme", {"queue": "vip"}, ["queue"]),  # listed, but not the tenant's own name
        ("acme", {"queue": "vip:globex@example.com"}, ["queue"]),  # listed, another tenant's
        ("globex", {"queue": "globex@example.com"}, ["queue"]),  # allowed none
        ("acme", {"queue": 7, "routing_domain": ["x"]}, []),  # not strings: the routing checks refuse them
        ("acme", {"queue": "bulk:globex@x.test", "routing_domain": "evil.test"}, ["routing_domain", "queue"]),
    ],
)
def test_steering_metadata(tenant: str, meta: dict[str, Any], refused: list[str]) -> None:
    assert [key for key, _ in POLICIES.steering_refusals(tenant, meta)] == refused


def test_refusals_say_where_the_right_is_given() -> None:
    assert POLICIES.steering_refusals("globex", {"queue": "globex@x.test", "routing_domain": "r.test"}) == [
        (
            "routing_domain",
            "tenant 'globex' may not set a routing domain (only an admin key, or tenants.globex.routing_domains)",
        ),
        ("queue", "tenant 'globex' may not name a queue (only an admin key, or tenants.globex.queues)"),
    ]
    assert POLICIES.steering_refusals("acme", {"queue": "vip:globex@x.test"}) == [
        ("queue", "queue 'vip:globex@x.test' does not belong to tenant 'acme' (its queues are [campaign:]acme@domain)")
    ]


def test_the_rights_live_beside_the_tenants_limits() -> None:
    config = parse_config(
        {"tenants": {"acme": {"daily_limit": 5, "sender_domains": ["acme.test"], "queues": ["acme@*"]}}}, env={}
    )
    assert config.tenants["acme"].daily_limit == 5
    assert config.tenants["acme"].sender_domains == ["acme.test"]
    with pytest.raises(ConfigError, match=r"tenants\.acme\.sender_domains\.0"):
        parse_config({"tenants": {"acme": {"sender_domains": ["not a domain"]}}}, env={})


def test_unrestricted_senders_and_loopback() -> None:
    assert unrestricted_senders(POLICIES, ["acme", "globex", "initech", "globex"]) == ["globex", "initech"]
    assert loopback("127.0.0.1")
    assert loopback("::1")
    assert loopback("localhost")
    assert not loopback("0.0.0.0")
    assert not loopback("mail.example.com")


async def test_the_submitter_refuses_what_a_door_let_through() -> None:
    """The backstop behind each door's own check: a tenant-bound submission's steering metadata is held to the
    tenant's rights; an unbound one (an admin key, the gateway's configured routes) is not."""
    producer = MemoryProducer()
    submitter = Submitter(producer, ManualClock(datetime(2026, 12, 2, tzinfo=UTC)), policies=POLICIES)
    meta: dict[str, object] = {"queue": "bulk:globex@example.com"}
    message = Outgoing("r@example.com", b"Subject: s\r\n\r\nt\r\n", "m@x", {}, meta)
    result = await submitter.submit([message], sender="a@acme.test", bound_tenant="acme", protocol="HTTP")
    assert result.accepted == []
    assert result.failed == [("r@example.com", "metadata.queue: " + POLICIES.steering_refusals("acme", meta)[0][1])]
    assert producer.bus.topics == {}
    unbound = await submitter.submit([message], sender="a@acme.test", bound_tenant=None, protocol="HTTP")
    assert [m.queue for m in unbound.accepted] == ["bulk:globex@example.com"]
