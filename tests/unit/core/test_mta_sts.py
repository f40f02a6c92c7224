"""MTA-STS policy parsing and MX pattern matching (RFC 8461 §3, §4.1)."""

from __future__ import annotations

import pytest

from mailstream.core.mta_sts import Policy, PolicyError, mx_matches, parse_policy, txt_id

POLICY = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n"


def test_a_policy_parses_with_crlf_or_lf_and_ignores_unknown_keys() -> None:
    expected = Policy("enforce", ("mail.example.com", "*.example.net"), 604800)
    assert parse_policy(POLICY) == expected
    assert parse_policy(POLICY.replace("\r\n", "\n") + "extension: x\n") == expected


def test_max_age_is_capped_at_a_year_and_none_needs_no_mx() -> None:
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 9999999999\n") == Policy("none", (), 31_557_600)


@pytest.mark.parametrize(
    "text",
    [
        POLICY.replace("STSv1", "STSv2"),
        POLICY.replace("enforce", "strict"),
        POLICY.replace("604800", "-1"),
        POLICY.replace("max_age: 604800\r\n", ""),
        "version: STSv1\nmode: testing\nmax_age: 60\n",  # no mx
        POLICY.replace("mail.example.com", "mail..example.com"),
        POLICY.replace("*.example.net", "a.*.example.net"),
        "version STSv1\n",
    ],
)
def test_a_bad_policy_is_refused(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text)


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("mail.example.com", "mail.example.com", True),
        ("mail.example.com", "MAIL.Example.COM.", True),
        ("mail.example.com", "other.example.com", False),
        ("*.example.net", "mx1.example.net", True),
        ("*.example.net", "example.net", False),
        ("*.example.net", "a.b.example.net", False),
        ("*.example.net", ".example.net", False),
        ("*.example.net", "mx1.example.net.evil.test", False),
    ],
)
def test_mx_patterns_match_one_label_wildcards_only(pattern: str, host: str, matches: bool) -> None:
    assert mx_matches(pattern, host) is matches


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (["v=STSv1; id=20261202T01;"], "20261202T01"),
        (["v=STSv1;id=abc"], "abc"),
        (["v=spf1 -all", "v=STSv1; id=abc;"], "abc"),
        (["v=STSv1; id=abc;", "v=STSv1; id=def;"], None),  # two: no policy
        (["v=STSv1;"], None),
        (["v=STSv1; id=not-alnum"], None),
        (["v=STSv10; id=abc"], None),
        ([], None),
    ],
)
def test_the_txt_record_gives_the_policy_id(records: list[str], expected: str | None) -> None:
    assert txt_id(records) == expected
