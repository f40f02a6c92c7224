"""MX site names (KumoMTA's `site_name`), how long answers are reused, and which answers name a site."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailstream.core.mx_site import CacheTimes, MxAnswer, ordered_hosts, site_name, site_of_answer

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
GMAIL = [
    (5, "gmail-smtp-in.l.google.com."),
    (10, "alt1.gmail-smtp-in.l.google.com."),
    (20, "alt2.gmail-smtp-in.l.google.com."),
    (30, "alt3.gmail-smtp-in.l.google.com."),
    (40, "alt4.gmail-smtp-in.l.google.com."),
]


def test_gmail_and_yahoo_factor_as_kumomta_names_them() -> None:
    assert site_name(ordered_hosts(GMAIL)) == "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com"
    yahoo = [(1, "mta6.am0.yahoodns.net."), (1, "mta5.am0.yahoodns.net."), (1, "mta7.am0.yahoodns.net.")]
    assert site_name(ordered_hosts(yahoo)) == "(mta5|mta6|mta7).am0.yahoodns.net"


def test_one_host_is_its_own_site_and_case_and_the_root_dot_do_not_matter() -> None:
    assert site_name(["MX.Example.COM."]) == "mx.example.com"
    assert site_name(["a.example.com", "b.example.net"]) == "(a|b).example.(com|net)"


def test_the_same_host_set_in_any_order_or_repeated_names_the_same_site() -> None:
    shuffled = [GMAIL[3], GMAIL[0], GMAIL[4], GMAIL[1], GMAIL[2], (50, "ALT1.gmail-smtp-in.l.google.com")]
    assert site_name(ordered_hosts(shuffled)) == site_name(ordered_hosts(GMAIL))


def test_hosts_order_by_preference_then_name_each_at_its_best() -> None:
    assert ordered_hosts([(20, "b.x."), (10, "c.x."), (20, "a.x."), (5, "b.x")]) == ("b.x", "c.x", "a.x")


def test_a_port_stays_on_the_last_label() -> None:
    assert site_name(["mx1.example.com:2525", "mx2.example.com:2525"]) == "(mx1|mx2).example.com:2525"


def test_no_hosts_is_no_site() -> None:
    with pytest.raises(ValueError, match="at least one host"):
        site_name([])


@pytest.mark.parametrize(
    ("answer", "site"),
    [
        (MxAnswer("ok", tuple(GMAIL), 300), "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com"),
        (MxAnswer("implicit"), "example.org"),  # the domain is its own exchanger
        (MxAnswer("null", ttl=300), "example.org"),  # the worker bounces it (556 5.1.10)
        (MxAnswer("nxdomain"), "example.org"),  # the worker bounces it (550 5.1.2)
        (MxAnswer("failed", error="timeout"), "example.org"),  # the worker defers it unless DNS answers then
    ],
)
def test_only_a_usable_answer_names_a_site_other_than_the_domain(answer: MxAnswer, site: str) -> None:
    assert site_of_answer("Example.ORG.", answer) == site


def test_answers_are_reused_for_their_ttl_within_bounds_failures_briefly() -> None:
    times = CacheTimes(
        minimum=timedelta(seconds=30),
        maximum=timedelta(hours=1),
        negative=timedelta(minutes=5),
        failure=timedelta(minutes=1),
    )
    assert times.valid_until(MxAnswer("ok", tuple(GMAIL), 300), NOW) == NOW + timedelta(seconds=300)
    assert times.valid_until(MxAnswer("ok", tuple(GMAIL), 0), NOW) == NOW + timedelta(seconds=30)
    assert times.valid_until(MxAnswer("ok", tuple(GMAIL), 86_400), NOW) == NOW + timedelta(hours=1)
    assert times.valid_until(MxAnswer("implicit", ttl=120), NOW) == NOW + timedelta(seconds=120)
    assert times.valid_until(MxAnswer("nxdomain"), NOW) == NOW + timedelta(minutes=5)
    assert times.valid_until(MxAnswer("null", ttl=9), NOW) == NOW + timedelta(minutes=5)
    assert times.valid_until(MxAnswer("failed"), NOW) == NOW + timedelta(minutes=1)
