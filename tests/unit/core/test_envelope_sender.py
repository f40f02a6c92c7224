"""The envelope sender a source gives its mail: its pattern, else its from_email, else the message's own."""

from __future__ import annotations

import pytest

from mailstream.core.envelope_sender import check_pattern, envelope_sender


@pytest.mark.parametrize(
    ("pattern", "from_email", "expected"),
    [
        (None, None, "news@tenant.test"),
        (None, "bounces@mail1.test", "bounces@mail1.test"),
        ("bounces+{local}={domain}@b.mail1.test", "ignored@mail1.test", "bounces+news=tenant.test@b.mail1.test"),
        ("b-{id}@b.mail1.test", None, "b-tx-42@b.mail1.test"),
        ("fixed@b.mail1.test", None, "fixed@b.mail1.test"),
    ],
)
def test_the_source_decides_the_envelope_sender(pattern: str | None, from_email: str | None, expected: str) -> None:
    assert envelope_sender("news@tenant.test", "tx-42", pattern=pattern, from_email=from_email) == expected


@pytest.mark.parametrize(("pattern", "from_email"), [("b-{id}@b.test", None), (None, "bounces@b.test")])
def test_a_null_reverse_path_stays_null(pattern: str | None, from_email: str | None) -> None:
    assert envelope_sender("", "tx-1", pattern=pattern, from_email=from_email) == ""


@pytest.mark.parametrize(
    "pattern",
    ["no-at-sign", "@b.test", "x@", "x@{domain}", "{sender}@b.test", "{local!r}@b.test", "{local:>9}@b.test", "{@b.t"],
)
def test_a_bad_pattern_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match=r"must be local@domain|unknown placeholder|\{@b\.t"):
        check_pattern(pattern)


def test_a_good_pattern_passes() -> None:
    check_pattern("bounces+{local}={domain}+{id}@b.test")
