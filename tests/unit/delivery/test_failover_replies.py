"""The reply that ends an attempt every host failed, and how the deny list's refusal is classified."""

from __future__ import annotations

from mailstream.core.bounce_classify import BounceClassifier
from mailstream.delivery.smtp_client import SmtpAttempt, most_relevant
from mailstream.events.records import SmtpResponse


def failed(code: int, peer: str | None) -> SmtpAttempt:
    enhanced = f"{code // 100}.0.0"
    return SmtpAttempt(SmtpResponse(code=code, enhanced_code=enhanced, content="x", command="CONNECT"), peer, None)


def test_no_host_at_all_is_a_transient_failure() -> None:
    assert (most_relevant([]).response.code, most_relevant([]).response.enhanced_code) == (451, "4.4.4")


def test_a_transient_failure_wins_over_a_permanent_one() -> None:
    refused, silent = failed(554, "10.0.0.1:25"), failed(451, None)
    assert most_relevant([refused, silent]) is silent
    assert most_relevant([silent, refused]) is silent


def test_a_servers_reply_wins_over_a_connection_that_failed() -> None:
    busy, silent = failed(421, "10.0.0.1:25"), failed(451, None)
    assert most_relevant([busy, silent]) is busy


def test_only_when_every_host_refused_permanently_is_the_end_permanent() -> None:
    first, second = failed(554, "10.0.0.1:25"), failed(550, "10.0.0.2:25")
    assert most_relevant([first, second]) is second


def test_a_denied_destination_is_a_policy_bounce() -> None:
    content = "mailstream: destination address 10.0.0.1 (private address) of example.com denied by policy"
    found = BounceClassifier.default().classify(550, "5.7.1", content)
    assert (found.bounce_class, found.bounce_type) == ("PolicyRelated", "block")
