"""Bounce classification: the bundled rules against a corpus of SMTP replies, rule-file loading
and precedence, and the literal prefilter checked against a plain ordered search."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstream.core import bounce_classify
from mailstream.core.bounce_classify import (
    BOUNCE_TYPES,
    UNCATEGORIZED,
    BounceClassifier,
    Classification,
    flatten_response,
)

CORPUS: list[dict[str, Any]] = tomllib.loads(
    Path(__file__).with_name("smtp_reply_corpus.toml").read_text(encoding="utf-8")
)["reply"]
BUNDLED: dict[str, Any] = tomllib.loads(bounce_classify._BUNDLED_RULES.read_text(encoding="utf-8"))
KUMO_CLASSES = {
    "InvalidRecipient",
    "DNSFailure",
    "SpamBlock",
    "SpamContent",
    "ProhibitedAttachment",
    "RelayDenied",
    "AutoReply",
    "TransientFailure",
    "Subscribe",
    "Unsubscribe",
    "ChallengeResponse",
    "BadConfiguration",
    "BadConnection",
    "BadDomain",
    "ContentRelated",
    "InactiveMailbox",
    "InvalidSender",
    "MessageExpired",
    "NoAnswerFromHost",
    "PolicyRelated",
    "ProtocolErrors",
    "QuotaIssues",
    "RelayingIssues",
    "RoutingErrors",
    "SpamRelated",
    "VirusRelated",
    "AuthenticationFailed",
    "TooManyRecipients",
    "Uncategorized",
}


def classify(*texts: str, code: int = 550, enhanced: str | None = None, content: str) -> Classification:
    return BounceClassifier.from_toml(*texts).classify(code, enhanced, content)


# ---------------------------------------------------------------------------- the corpus


def test_corpus_is_substantial_and_covers_most_classes() -> None:
    assert len(CORPUS) >= 40
    assert len({reply["expect_class"] for reply in CORPUS}) >= 20


@pytest.mark.parametrize("reply", CORPUS, ids=[f"{i:02}-{r['code']}-{r['expect_class']}" for i, r in enumerate(CORPUS)])
def test_bundled_rules_classify_the_corpus(reply: dict[str, Any]) -> None:
    got = BounceClassifier.default().classify(reply["code"], reply.get("enhanced"), reply["content"])
    assert got == Classification(reply["expect_class"], reply["expect_type"])


def test_bundled_types_cover_kumomta_classes_and_every_class_with_rules() -> None:
    types = BUNDLED["types"]
    ruled = {name for table in BUNDLED["rules"] for name in table}
    assert types.keys() >= KUMO_CLASSES
    assert ruled <= types.keys()  # a misspelt class name would otherwise silently be "unknown"
    assert set(types.values()) <= BOUNCE_TYPES


def test_default_is_compiled_once() -> None:
    assert BounceClassifier.default() is BounceClassifier.default()


# ------------------------------------------------------------------------------- flattening


def test_flatten_joins_lines_and_drops_blank_ones() -> None:
    content = "first line\r\n  second line  \n\nthird\rfourth"
    assert flatten_response(550, "5.1.1", content) == "550 5.1.1 first line second line third fourth"


@pytest.mark.parametrize("enhanced", [None, ""])
def test_flatten_leaves_out_an_absent_enhanced_code(enhanced: str | None) -> None:
    assert flatten_response(421, enhanced, "Try again later") == "421 Try again later"


def test_flatten_with_no_content_has_no_trailing_space() -> None:
    assert flatten_response(452, "4.5.3", "") == "452 4.5.3"


def test_multi_line_reply_is_matched_across_its_line_breaks() -> None:
    rules = '[rules]\nSpamContent = ["likely unsolicited mail"]'
    content = "this message is likely\nunsolicited mail. To reduce"
    assert classify(rules, content=content).bounce_class == "SpamContent"


def test_enhanced_code_absent_does_not_satisfy_a_code_rule() -> None:
    rules = '[rules]\nInvalidRecipient = ["^\\\\d{3} 5\\\\.1\\\\.1\\\\b"]'
    assert classify(rules, enhanced="5.1.1", content="x").bounce_class == "InvalidRecipient"
    assert classify(rules, enhanced=None, content="5 1 1").bounce_class == UNCATEGORIZED


# ------------------------------------------------------------------------------- precedence


def test_first_file_wins_so_overrides_go_first() -> None:
    base = '[rules]\nInvalidRecipient = ["user unknown"]\n[types]\nInvalidRecipient = "hard"'
    override = '[rules]\nTransientFailure = ["user unknown"]\n[types]\nTransientFailure = "soft"'
    content = "User unknown in local table, user unknown"
    assert classify(override, base, content=content) == Classification("TransientFailure", "soft")
    assert classify(base, override, content=content) == Classification("InvalidRecipient", "hard")


def test_lowest_rule_index_wins_not_the_leftmost_match() -> None:
    # "late" matches near the end of the line, "early" at its start; "late" is listed first.
    rules = '[rules]\nLate = ["full"]\nEarly = ["^552"]'
    assert classify(rules, code=552, content="mailbox full").bounce_class == "Late"


def test_order_within_a_class_list_and_across_rule_tables() -> None:
    tiers = '[[rules]]\nA = ["zzz", "alpha"]\nB = ["beta"]\n[[rules]]\nC = ["alpha", "gamma"]'
    assert classify(tiers, content="gamma beta alpha").bounce_class == "A"
    assert classify(tiers, content="gamma beta").bounce_class == "B"
    assert classify(tiers, content="gamma").bounce_class == "C"


def test_no_match_is_uncategorized_and_unknown() -> None:
    assert classify('[rules]\nA = ["nothing like this"]', content="hello") == Classification(UNCATEGORIZED, "unknown")
    assert classify(content="no rules at all") == Classification(UNCATEGORIZED, "unknown")


def test_uncategorized_can_be_typed_like_any_class() -> None:
    assert classify('[types]\nUncategorized = "soft"', content="x").bounce_type == "soft"


def test_class_without_a_type_is_unknown_and_first_type_wins() -> None:
    assert classify('[rules]\nCustom = ["x"]', content="x") == Classification("Custom", "unknown")
    first = '[types]\nCustom = "block"'
    second = '[rules]\nCustom = ["x"]\n[types]\nCustom = "hard"'
    assert classify(first, second, content="x").bounce_type == "block"


def test_kumomta_shaped_file_loads_unchanged() -> None:
    kumo = '[rules]\nInvalidRecipient = ["^(451|550) [45]\\\\.1\\\\.[1234] "]\n'
    got = classify(kumo, enhanced="5.1.1", content="No such user")
    assert got == Classification("InvalidRecipient", "unknown")


# ---------------------------------------------------------------------------- bad rule files


def test_invalid_regex_names_the_class_and_pattern_index() -> None:
    rules = '[rules]\nGood = ["fine"]\nBroken = ["ok", "ok", "unclosed (group"]'
    with pytest.raises(ValueError, match=r"class 'Broken', pattern 2: invalid regex"):
        BounceClassifier.from_toml(rules)


def test_invalid_regex_in_a_later_file_and_table_says_where() -> None:
    bad = '[[rules]]\nA = ["a"]\n[[rules]]\nB = ["[z-a]"]'
    with pytest.raises(ValueError, match=r"rule file 1 rules #1, class 'B', pattern 0"):
        BounceClassifier.from_toml("", bad)


def test_unknown_bounce_type_is_refused_with_its_class() -> None:
    with pytest.raises(ValueError, match=r"class 'SpamBlock': 'blocked' is not one of"):
        BounceClassifier.from_toml('[types]\nSpamBlock = "blocked"')


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[rule]\nA = ["x"]', r"unknown keys \['rule'\]"),
        ('rules = "x"', r"rules #0: expected a table, got str"),
        ('rules = ["x"]', r"rules #0: expected a table, got str"),
        ('[rules]\nA = "x"', r"class 'A': expected a list of regexes"),
        ("[rules]\nA = [1]", r"class 'A', pattern 0: expected a regex string, got int"),
        ('types = ["hard"]', r"rule file 0 types: expected a table, got list"),
        ("[rules\n", r"."),  # TOML syntax errors are ValueErrors too
    ],
)
def test_malformed_rule_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BounceClassifier.from_toml(text)


# ------------------------------------------------------------------------ literal prefilter


@pytest.mark.parametrize(
    ("pattern", "needle"),
    [
        (r"(?i)\bexceeded storage allocation\b", "exceeded storage allocation"),
        (r"\bS3150\b", "S3150"),  # case-sensitive: compared as written
        (r"(?s)(?i)Mailbox Full", "mailbox full"),  # flags read from the compiled pattern
        (r"abcd?", "abc"),  # a quantified character is optional
        (r"abc{2}x", "ab"),
        (r"abc|def", ""),  # top-level alternation: nothing is required
        (r"(?:abc|def) ghij", " ghij"),  # ... but inside a group it is fine
        (r"[]abcd] xy", " xy"),  # `]` first is a class member: the class is one token
        (r"[^]abcd] xy", " xy"),
        (r"\(abcd\) x", "abcd"),  # escaped parentheses are not groups
        (r"\x41\x42cd", "cd"),  # the digits of an escape are not literal text
        (r"\u0041\U00000042\N{LATIN SMALL LETTER C}d", "d"),
        (r"\101\102cd", "cd"),
        (r"(ab)\1cd", "cd"),  # a backreference is not the digit 1
        (r"(?x) abc def ", ""),  # verbose: spaces are not literal
        (r"\d{3} [45]\.1\.1", " "),
        ("", ""),
    ],
)
def test_needle_is_text_every_match_contains(pattern: str, needle: str) -> None:
    regex = re.compile(pattern)
    assert bounce_classify._needle(regex) == needle


PIECES = [
    *"abcAB ",
    *(r"\b", r"\d", r"\x61", r"\N{LATIN SMALL LETTER B}", r"\(", r"\)", ".", "|", "^"),
    *("[ab]", "[]a]", "[^a]", "(?:a|b)", "(c)", "(?=a)", "(?i:b)", "a?", "b*", "c+?", "a{2}", "b{0,1}"),
]


@settings(max_examples=500, deadline=None)
@given(
    flags=st.sampled_from(["", "(?i)", "(?x)", "(?s)(?i)"]),
    pieces=st.lists(st.sampled_from(PIECES), max_size=8),
    text=st.text(alphabet="abcABC x()]", max_size=12),
)
def test_needle_is_in_every_text_the_regex_matches(flags: str, pieces: list[str], text: str) -> None:
    try:
        regex = re.compile(flags + "".join(pieces))
    except re.error:
        return
    if regex.search(text):
        assert bounce_classify._needle(regex) in (text.lower() if regex.flags & re.IGNORECASE else text)


@pytest.mark.parametrize("line", ["ſpam", "SPAM", "spam"])  # ſ (long s) matches `s` under (?i)
def test_case_folded_needles_are_not_trusted_outside_ascii(line: str) -> None:
    assert classify('[rules]\nSpamRelated = ["(?i)spam"]', content=line).bounce_class == "SpamRelated"


def test_turkish_and_kelvin_letters_still_match_ignoring_case() -> None:
    rules = '[rules]\nA = ["(?i)list"]\nB = ["(?i)kilo"]'
    assert classify(rules, content="block lİst").bounce_class == "A"
    assert classify(rules, content="block lıst").bounce_class == "A"
    assert classify(rules, content="\u212aILO").bounce_class == "B"


def _ordered_search(rules: list[tuple[str, re.Pattern[str]]], types: dict[str, str], line: str) -> tuple[str, str]:
    """The specification, without the prefilter: first rule, in order, whose regex matches."""
    name = next((name for name, regex in rules if regex.search(line)), UNCATEGORIZED)
    return name, types.get(name, "unknown")


BUNDLED_RULES = [
    (name, re.compile(pattern))
    for table in BUNDLED["rules"]
    for name, patterns in table.items()
    for pattern in patterns
]
# Pieces of real replies and of the rules themselves, plus letters that fold unusually.
FRAGMENTS = sorted(
    {word for reply in CORPUS for word in reply["content"].split()}
    | {"spf", "SPF", "Mailbox", "full", "user", "unknown", "ſpam", "lİst", "\u212a", "5.1.1", "4.7.1"}
)


@settings(max_examples=300, deadline=None)
@given(
    code=st.sampled_from([421, 450, 451, 452, 550, 552, 553, 554]),
    enhanced=st.sampled_from([None, "4.2.1", "5.1.1", "5.1.10", "5.4.5", "5.7.1", "5.7.26", "5.5.0"]),
    words=st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=12),
)
def test_bundled_classifier_equals_plain_ordered_search(code: int, enhanced: str | None, words: list[str]) -> None:
    content = " ".join(words)
    line = flatten_response(code, enhanced, content)
    got = BounceClassifier.default().classify(code, enhanced, content)
    assert (got.bounce_class, got.bounce_type) == _ordered_search(BUNDLED_RULES, BUNDLED["types"], line)
