"""RFC 5322 §2.1.1's 998 octets a line, its line end not counted."""

from __future__ import annotations

from mailstream.core.line_length import MAX_LINE_OCTETS, Overlong, overlong_line, overlong_lines


def test_998_octets_pass_and_999_do_not_whatever_the_line_end() -> None:
    for end in (b"\r\n", b"\n", b""):
        assert overlong_line(b"a" * MAX_LINE_OCTETS + end) is None
        assert overlong_line(b"a" * (MAX_LINE_OCTETS + 1) + end) == Overlong(1, 999, 0, 999)


def test_lines_are_numbered_and_each_long_one_found() -> None:
    data = b"Subject: x\r\n\r\n" + b"b" * 1200 + b"\r\nshort\r\n" + b"c" * 999 + b"\r\n"
    found = list(overlong_lines(data))
    assert [(f.number, f.octets) for f in found] == [(3, 1200), (5, 999)]
    assert data[found[1].start : found[1].end] == b"c" * 999


def test_octets_are_counted_not_characters() -> None:
    assert overlong_line(("é" * 499).encode()) is None  # 998 octets
    line = overlong_line(("é" * 500).encode())
    assert line is not None
    assert line.octets == 1000


def test_the_description_names_the_line_and_the_limit() -> None:
    line = overlong_line(b"h: v\n\n" + b"z" * 1000)
    assert line is not None
    assert line.describe("body line").startswith("body line 3 is 1000 octets long; RFC 5322 allows at most 998")
