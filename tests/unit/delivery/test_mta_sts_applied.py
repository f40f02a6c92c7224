"""What an MTA-STS policy does to an attempt's MX hosts and session: enforce keeps the named hosts and requires
verified TLS, testing changes nothing (and counts), none or no policy changes nothing."""

from __future__ import annotations

from dataclasses import replace

from prometheus_client import REGISTRY

from mailstream.core.mta_sts import Policy
from mailstream.delivery.mta_sts import applied
from mailstream.delivery.smtp_client import Destination, SessionSettings
from mailstream.events.records import SmtpResponse

SETTINGS = SessionSettings("w.test", None, "opportunistic", None, 5.0, 5.0)
REQUIRED = replace(SETTINGS, starttls="required")
HOSTS = [Destination("192.0.2.1", 25, "mx1.example.com"), Destination("192.0.2.2", 25, "backup.other.test")]


def _violations(mode: str) -> float:
    return REGISTRY.get_sample_value("mailstream_delivery_mta_sts_violations_total", {"mode": mode}) or 0.0


def test_enforce_keeps_the_named_hosts_and_requires_verified_tls() -> None:
    before = _violations("enforce")
    assert applied(Policy("enforce", ("*.example.com",), 60), "example.com", HOSTS, SETTINGS) == ([HOSTS[0]], REQUIRED)
    assert _violations("enforce") == before + 1
    every = Policy("enforce", ("mx1.example.com", "*.other.test"), 60)
    assert applied(every, "example.com", HOSTS, SETTINGS) == (HOSTS, REQUIRED)
    assert _violations("enforce") == before + 1  # nothing refused: no violation


def test_enforce_with_no_named_host_defers() -> None:
    refused = applied(Policy("enforce", ("mail.elsewhere.test",), 60), "example.com", HOSTS, SETTINGS)
    assert isinstance(refused, SmtpResponse)
    assert (refused.code, refused.enhanced_code) == (451, "4.7.5")


def test_testing_none_and_no_policy_change_nothing() -> None:
    before = _violations("testing")
    assert applied(Policy("testing", ("mail.elsewhere.test",), 60), "example.com", HOSTS, SETTINGS) == (HOSTS, SETTINGS)
    assert _violations("testing") == before + 1
    assert applied(Policy("none", (), 60), "example.com", HOSTS, SETTINGS) == (HOSTS, SETTINGS)
    assert applied(None, "example.com", HOSTS, SETTINGS) == (HOSTS, SETTINGS)
