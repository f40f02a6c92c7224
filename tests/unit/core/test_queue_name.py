"""The 8-row queue-name table, explicit queues, the null queue, and parse/format round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailstream.core.queue_name import NULL_QUEUE, QueueName, QueueNameError, scheduled_queue

ROWS = [
    # tenant, campaign, routing_domain, expected
    ("tenant", "campaign", None, "campaign:tenant@domain.com"),
    ("tenant", "campaign", "routing.net", "campaign:tenant@domain.com!routing.net"),
    ("tenant", None, None, "tenant@domain.com"),
    ("tenant", None, "routing.net", "tenant@domain.com!routing.net"),
    (None, "campaign", None, "campaign:@domain.com"),
    (None, "campaign", "routing.net", "campaign:@domain.com!routing.net"),
    (None, None, None, "domain.com"),
    (None, None, "routing.net", "domain.com!routing.net"),
]


@pytest.mark.parametrize(("tenant", "campaign", "routing", "expected"), ROWS)
def test_table(tenant: str | None, campaign: str | None, routing: str | None, expected: str) -> None:
    assert scheduled_queue("domain.com", tenant=tenant, campaign=campaign, routing_domain=routing) == expected
    parsed = QueueName.parse(expected)
    assert (parsed.tenant, parsed.campaign, parsed.routing_domain, parsed.domain) == (
        tenant,
        campaign,
        routing,
        "domain.com",
    )


def test_explicit_queue_wins() -> None:
    assert scheduled_queue("d.com", tenant="t", campaign="c", explicit="my-queue") == "my-queue"
    assert scheduled_queue("d.com", explicit=NULL_QUEUE) == "null"


def test_empty_strings_count_as_unset_and_domains_are_lowercased() -> None:
    assert scheduled_queue("Domain.COM", tenant="", campaign="", routing_domain="R.NET") == "domain.com!r.net"


@pytest.mark.parametrize("bad", [{"tenant": "a:b"}, {"campaign": "x@y"}, {"tenant": "a b"}, {"routing_domain": "a!b"}])
def test_components_that_would_corrupt_the_name_are_refused(bad: dict[str, str]) -> None:
    with pytest.raises(QueueNameError):
        scheduled_queue("d.com", **bad)


def test_campaign_without_at_is_not_a_queue_name() -> None:
    with pytest.raises(QueueNameError):
        QueueName.parse("campaign:domain.com")


LABEL = st.text(
    alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="-_."), min_size=1, max_size=12
)


@given(domain=LABEL, tenant=st.none() | LABEL, campaign=st.none() | LABEL, routing=st.none() | LABEL)
def test_format_parse_round_trip(domain: str, tenant: str | None, campaign: str | None, routing: str | None) -> None:
    name = QueueName(domain=domain, tenant=tenant, campaign=campaign, routing_domain=routing)
    assert QueueName.parse(str(name)) == name
