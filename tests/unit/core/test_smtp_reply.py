"""SMTP reply splitting and outcomes."""

from __future__ import annotations

import pytest

from mailstream.core.smtp_reply import outcome_of, split_enhanced_code


@pytest.mark.parametrize(
    ("code", "text", "enhanced", "rest"),
    [
        (250, "2.0.0 OK queued", "2.0.0", "OK queued"),
        (550, "5.1.1 user unknown\n5.1.1 see https://example", "5.1.1", "user unknown\nsee https://example"),
        (451, "try later", None, "try later"),
        (550, "4.1.1 class disagrees with the code", None, "4.1.1 class disagrees with the code"),
        (421, "4.7.0", "4.7.0", ""),
        (250, "", None, ""),
    ],
)
def test_split_enhanced_code(code: int, text: str, enhanced: str | None, rest: str) -> None:
    assert split_enhanced_code(code, text) == (enhanced, rest)


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (250, "DELIVERED"),
        (251, "DELIVERED"),
        (421, "TRANSIENT"),
        (451, "TRANSIENT"),
        (550, "PERMANENT"),
        (354, "PERMANENT"),
    ],
)
def test_outcome(code: int, outcome: str) -> None:
    assert outcome_of(code) == outcome
