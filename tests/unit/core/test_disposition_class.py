"""Every disposition, including mailstream's own, ends with a class and a type."""

from __future__ import annotations

import pytest

from mailstream.core.bounce_classify import BOUNCE_TYPES, BounceClassifier, Classification
from mailstream.core.disposition_class import Disposition, classify_disposition, is_internal

TABLE: list[tuple[Disposition, int | None, str | None, str, Classification]] = [
    ("expiry", None, None, "", Classification("MessageExpired", "soft")),
    ("expiry", 451, "4.4.1", "timed out", Classification("MessageExpired", "soft")),  # the last reply is not why
    ("admin_bounce", None, None, "", Classification("AdminBounce", "soft")),
    ("refusal", 550, "5.7.1", "queue q is disabled", Classification("PolicyRelated", "block")),
    # The delivery worker's own replies, by code: their text names domains and hosts.
    ("bounce", 550, "5.1.2", "mailstream: domain rbl.example does not exist", Classification("BadDomain", "hard")),
    (
        "bounce",
        556,
        "5.1.10",
        "mailstream: domain x.example accepts no mail (null MX)",
        Classification("BadDomain", "hard"),
    ),
    (
        "transient",
        451,
        "4.4.3",
        "mailstream: MX lookup for spamhaus.example failed",
        Classification("DNSFailure", "soft"),
    ),
    ("bounce", 550, "5.7.1", "mailstream: x.example is denied by policy", Classification("PolicyRelated", "block")),
    ("transient", 451, "4.3.0", "mailstream internal: task unreadable", Classification("TransientFailure", "soft")),
    ("transient", 451, "4.7.5", "mailstream: TLS required by policy", Classification("PolicyRelated", "block")),
    # A server's reply, by its wording.
    ("bounce", 550, "5.7.1", "blocked using zen.spamhaus.org", Classification("SpamBlock", "block")),
    (
        "bounce",
        550,
        "5.1.1",
        "The email account that you tried to reach does not exist",
        Classification("InvalidRecipient", "hard"),
    ),
    ("transient", 452, "4.2.2", "mailbox full", Classification("QuotaIssues", "soft")),
]


@pytest.mark.parametrize(("kind", "code", "enhanced", "content", "expected"), TABLE)
def test_classifies_every_disposition(
    kind: Disposition, code: int | None, enhanced: str | None, content: str, expected: Classification
) -> None:
    assert classify_disposition(kind, code, enhanced, content) == expected


def test_a_servers_words_are_read_where_ours_are_not() -> None:
    """The same text: a remote server's names a block list, ours only a domain that happens to."""
    ours = classify_disposition("bounce", 550, "5.1.2", "mailstream: domain rbl.example does not exist")
    theirs = classify_disposition("bounce", 550, "5.1.2", "domain rbl.example does not exist")
    assert (ours.bounce_class, theirs.bounce_class) == ("BadDomain", "SpamBlock")


def test_uses_the_classifier_given() -> None:
    rules = BounceClassifier.from_toml("[rules]\nQuotaIssues = ['^550']\n[types]\nQuotaIssues = 'soft'\n")
    assert classify_disposition("bounce", 550, None, "no", classifier=rules) == Classification("QuotaIssues", "soft")


@pytest.mark.parametrize("kind", ["bounce", "transient"])
def test_a_reply_disposition_needs_its_reply(kind: Disposition) -> None:
    with pytest.raises(ValueError, match="from its reply"):
        classify_disposition(kind)


def test_complaint_is_a_type() -> None:
    assert "complaint" in BOUNCE_TYPES  # for feedback reports, which no reply is


@pytest.mark.parametrize(
    ("content", "internal"),
    [("mailstream: x", True), ("mailstream internal: x", True), ("mailstream is a name", False), ("ok", False)],
)
def test_is_internal(content: str, internal: bool) -> None:
    assert is_internal(content) is internal
