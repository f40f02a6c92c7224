"""The table cells and durations the CLI prints (pure)."""

from __future__ import annotations

import pytest
from rich.console import Console

from mailstream.operator.tables import Output, age, cell, field, when


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (-3, "0s"), (45.9, "45s"), (192, "3m12s"), (7500, "2h05m"), (4 * 86400 + 3 * 3600 + 59, "4d03h")],
)
def test_age_shows_the_two_largest_units(seconds: float | None, text: str) -> None:
    assert age(seconds) == text


def test_when_is_utc_text_to_the_second_and_leaves_the_unreadable_alone() -> None:
    assert when("2026-12-02T07:20:36.123+00:00") == "2026-12-02 07:20:36"
    assert when(None) == "-"
    assert when("soon") == "soon"


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "-"), ("", "-"), ([], "-"), (True, "yes"), (0.25, "0.25"), (12345.6, "12,346"), (["a", "b"], "a,b"),
     ({"x": 1, "y": None}, "x=1 y=-"), (7, "7")],
)  # fmt: skip
def test_cell_text(value: object, text: str) -> None:
    assert cell(value) == text


def test_a_table_aligns_its_columns_and_says_when_it_is_empty() -> None:
    console = Console(record=True, width=80)
    out = Output(False, console)
    out.table([field("name"), field("n", right=True)], [{"name": "a", "n": 5}, {"name": "long", "n": 123}], "t")
    out.table([field("name")], [], "nothing")
    text = console.export_text()
    assert "name    n" in text
    assert "a       5" in text
    assert "long  123" in text
    assert "nothing: (none)" in text
