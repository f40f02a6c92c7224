"""Where a task goes (relay, smarthost, MX) and which shaping its path gets; shared by scheduler and delivery."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mailstream.config.egress_paths import PathShapes, site_of
from mailstream.config.model import Config, ConfigError, parse_config
from mailstream.core.clock import system_clock
from mailstream.core.egress_path import EgressPath
from mailstream.core.send_window import SendWindow
from mailstream.core.throttle import ThrottleSpec
from mailstream.delivery.routes import route_for
from mailstream.delivery.smtp_client import Destination, Login
from mailstream.delivery.worker import DeliveryWorker
from mailstream.scheduler.policy import Policies

SOURCES = [
    {
        "name": "relayed",
        "relay": {"host": "relay.example.net", "port": 2587, "username": "u", "password": "p", "starttls": "required"},
    },
    {"name": "plain-relay", "relay": {"host": "10.0.0.9"}},
    {"name": "direct", "source_address": "127.0.0.2"},
]


def config(smarthost: str | None = None, **egress: Any) -> Config:
    return parse_config(
        {
            "ingest": {"message_id_domain": "t.test"},
            "delivery": {"smarthost": smarthost, "ehlo_domain": "t.test", "starttls": "opportunistic"},
            "egress": {"sources": SOURCES, "pools": [{"name": "p", "entries": [{"name": "direct"}]}], **egress},
            "queues": {"egress_pool": "p"},
        },
        env={},
    )


def test_a_relay_wins_over_the_smarthost_with_its_credentials_and_tls() -> None:
    c = config(smarthost="127.0.0.1:2525")
    route = route_for(c.egress.source("relayed"), c.delivery, "example.com")
    assert route.path.key() == "relayed->relay.example.net:2587"
    assert route.hosts == (Destination("relay.example.net", 2587),)
    assert (route.starttls, route.login) == ("required", Login("u", "p"))
    plain = route_for(c.egress.source("plain-relay"), c.delivery, "example.com")
    assert (plain.hosts, plain.starttls, plain.login) == ((Destination("10.0.0.9", 587),), "opportunistic", None)


def test_a_relays_password_is_never_in_a_repr() -> None:
    # The config keeps it a SecretStr; the route and the session settings built from it hold it in clear, so
    # their reprs (a log line, a traceback, a failing assertion) must leave it out.
    route = route_for(config().egress.source("relayed"), config().delivery, "example.com")
    assert route.login is not None
    assert route.login.password == "p"
    secret = Login("u", "s3cret-relay-password")
    assert "s3cret" not in repr(secret)
    assert "s3cret" not in repr(dataclasses.replace(route, login=secret))


def test_without_a_relay_the_smarthost_else_the_domains_mx() -> None:
    smart = config(smarthost="[::1]:2525")
    route = route_for(smart.egress.source("direct"), smart.delivery, "example.com")
    assert (route.path.key(), route.hosts) == ("direct->[::1]:2525", (Destination("::1", 2525),))
    mx = config()
    route = route_for(mx.egress.source("direct"), mx.delivery, "example.com")
    assert (route.path.key(), route.hosts, route.domain) == ("direct->example.com", (), "example.com")


def test_the_scheduler_names_the_same_path_the_worker_sends_on() -> None:
    for smarthost in (None, "127.0.0.1:2525"):
        c = config(smarthost=smarthost)
        policies = Policies(c)
        for source in c.egress.sources:
            site = policies.site(source, "example.com", "routed.example")
            assert EgressPath(source.name, site) == route_for(source, c.delivery, "routed.example").path
            assert site == site_of(source, smarthost, "routed.example")


def test_path_shaping_layers_defaults_destination_then_source_and_keeps_parsed_values() -> None:
    c = config(
        path_defaults={"connection_limit": 10, "max_deliveries_per_connection": 100},
        paths=[
            {"domain": "example.com", "connection_limit": 2, "max_connection_rate": "10/min"},
            {"site": "mx.example.com", "connection_limit": 5},
            {"domain": "example.com", "source": "direct", "max_deliveries_per_connection": 3},
        ],
    )
    shapes = PathShapes(c.egress)
    shape = shapes.shape("direct", "example.com", "example.com")
    assert (shape.connection_limit, shape.max_deliveries_per_connection) == (2, 3)
    assert shape.max_connection_rate == ThrottleSpec.parse("10/min")
    by_site = shapes.shape("other", "mx.example.com", "example.com")  # the site's rule beats the domain's
    assert (by_site.connection_limit, by_site.max_connection_rate, by_site.max_deliveries_per_connection) == (
        5,
        None,
        100,
    )
    assert shapes.shape("other", "x.test", "x.test").connection_limit == 10
    assert Policies(c).path("direct", "example.com", "example.com") == shape


def test_queue_rules_keep_parsed_throttles_and_windows() -> None:
    c = parse_config(
        {
            "queues": {
                "rules": [{"tenant": "acme", "max_message_rate": "10/s", "send_window": "09:00-17:00 Europe/Berlin"}]
            }
        },
        env={},
    )
    policy = Policies(c).queue("acme", None, "example.com", None)
    assert policy.max_message_rate == ThrottleSpec.parse("10/s")
    assert policy.windows == (SendWindow.parse("09:00", "17:00", "Europe/Berlin"),)


def test_the_tls_policy_comes_from_the_source_rule_then_the_destination_rule_then_the_source() -> None:
    paths = [
        {"domain": "example.com", "starttls": "required"},
        {"domain": "example.com", "source": "direct", "starttls": "disabled"},
        {"site": "relay.example.net:2587", "starttls": "disabled"},
    ]
    sources = [
        *SOURCES[:2],
        {"name": "direct", "source_address": "127.0.0.2", "starttls": "required"},
        {"name": "other"},
    ]
    c = config(paths=paths, sources=sources)
    shapes = PathShapes(c.egress)
    assert shapes.starttls("direct", "example.com", "example.com") == "disabled"
    assert shapes.starttls("other", "example.com", "example.com") == "required"
    assert shapes.starttls("other", "example.org", "example.org") is None
    direct, other = c.egress.source("direct"), c.egress.source("other")
    assert route_for(direct, c.delivery, "example.org", None).starttls == "required"  # the source's own
    assert route_for(other, c.delivery, "example.org", None).starttls == "opportunistic"  # delivery.starttls
    relayed = c.egress.source("relayed")
    assert (
        route_for(
            relayed, c.delivery, "x.test", shapes.starttls("relayed", "relay.example.net:2587", "x.test")
        ).starttls
        == "required"
    )  # the relay's own first


def test_a_site_pattern_matches_mx_sites_after_an_exact_site_and_before_a_domain() -> None:
    gmail = "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com"
    c = config(
        paths=[
            {"domain": "hosted.example", "connection_limit": 1},
            {"site_pattern": "*.google.com", "connection_limit": 5, "max_message_rate": "10/s"},
            {"site_pattern": "*.GMAIL-smtp-in.l.google.com", "connection_limit": 6},
            {"site": "mx.google.com", "connection_limit": 7},
            {"site_pattern": "*.google.com", "source": "direct", "starttls": "required"},
        ]
    )
    shapes = PathShapes(c.egress)
    assert shapes.shape("other", gmail, "hosted.example").connection_limit == 5  # the first pattern, not the domain
    assert shapes.shape("other", "mx.google.com", "x.test").connection_limit == 7
    assert shapes.shape("other", "hosted.example", "hosted.example").connection_limit == 1
    assert shapes.shape("other", "mx.yahoo.test", "y.test").connection_limit is None
    assert shapes.starttls("direct", gmail, "hosted.example") == "required"
    assert shapes.starttls("other", gmail, "hosted.example") is None


def test_a_path_rule_names_exactly_one_of_site_site_pattern_or_domain() -> None:
    for rule in ({"site": "a", "site_pattern": "*"}, {"site_pattern": "*", "domain": "d"}, {"connection_limit": 1}):
        with pytest.raises(ConfigError, match="exactly one of site, site_pattern or domain"):
            config(paths=[rule])


def test_the_mx_site_names_the_path_unless_a_relay_or_the_smarthost_does() -> None:
    c = config()
    policies = Policies(c)
    site = "(mx1|mx2).provider.test"
    assert policies.site(c.egress.source("direct"), "a.test", None, site) == site
    assert policies.site(c.egress.source("direct"), "a.test", None, None) == "a.test"
    assert policies.site(c.egress.source("relayed"), "a.test", None, site) == "relay.example.net:2587"
    smart = config(smarthost="127.0.0.1:2525")
    assert Policies(smart).site(smart.egress.source("direct"), "a.test", None, site) == "127.0.0.1:2525"


def test_the_worker_sends_on_the_path_the_task_names_so_domains_of_one_site_share_a_dispatcher() -> None:
    c = config(paths=[{"site_pattern": "*.provider.test", "connection_limit": 2}])
    worker = DeliveryWorker(c, system_clock)
    direct = c.egress.source("direct")
    a = worker.route(direct, "a.test", "direct->(mx1|mx2).provider.test")
    b = worker.route(direct, "b.test", "direct->(mx1|mx2).provider.test")
    assert a.path == b.path == EgressPath("direct", "(mx1|mx2).provider.test")
    assert (a.domain, b.domain, a.hosts) == ("a.test", "b.test", ())
    # Another source's path, or none readable: the domain's own.
    assert worker.route(direct, "a.test", "other->(mx1|mx2).provider.test").path == EgressPath("direct", "a.test")
    assert worker.route(direct, "a.test", "garbage").path == EgressPath("direct", "a.test")
