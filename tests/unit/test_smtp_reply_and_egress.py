"""SMTP reply splitting and egress source choice."""

from __future__ import annotations

from collections import Counter

import pytest

from mailstream.core.egress_choice import NoEligibleSource, choose_source
from mailstream.core.smtp_reply import outcome_of, split_enhanced_code


@pytest.mark.parametrize(("code", "text", "enhanced", "rest"), [
    (250, "2.0.0 OK queued", "2.0.0", "OK queued"),
    (550, "5.1.1 user unknown\n5.1.1 see https://example", "5.1.1", "user unknown\nsee https://example"),
    (451, "try later", None, "try later"),
    (550, "4.1.1 class disagrees with the code", None, "4.1.1 class disagrees with the code"),
    (421, "4.7.0", "4.7.0", ""),
    (250, "", None, ""),
])
def test_split_enhanced_code(code: int, text: str, enhanced: str | None, rest: str) -> None:
    assert split_enhanced_code(code, text) == (enhanced, rest)


@pytest.mark.parametrize(("code", "outcome"), [(250, "DELIVERED"), (251, "DELIVERED"), (421, "TRANSIENT"),
                                               (451, "TRANSIENT"), (550, "PERMANENT"), (354, "PERMANENT")])
def test_outcome(code: int, outcome: str) -> None:
    assert outcome_of(code) == outcome


def test_choice_follows_weights_and_skips_zero() -> None:
    entries = [("ip-1", 2), ("ip-2", 1), ("ip-off", 0)]
    counts = Counter(choose_source(entries, f"tx-{i}/1") for i in range(30_000))
    assert set(counts) == {"ip-1", "ip-2"}
    assert 1.9 < counts["ip-1"] / counts["ip-2"] < 2.1


def test_choice_is_stable_per_attempt() -> None:
    entries = [("a", 1), ("b", 1), ("c", 1)]
    assert {choose_source(entries, "tx/3") for _ in range(10)} == {choose_source(entries, "tx/3")}


def test_all_zero_weights_has_no_source() -> None:
    with pytest.raises(NoEligibleSource):
        choose_source([("a", 0)], "tx/1")
