"""RFC 5322 §2.1.1 (and RFC 5321 §4.5.3.1.6): a line of a message is at most 998 octets, its CRLF not counted.
Pure.

A longer line is refused where the message comes in rather than accepted and bounced by the next server (most
refuse it: "500 Line too long"); mailstream does not fold it as Postfix's client does, which changes the
content under the sender's DKIM signature (docs/design-decisions.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

MAX_LINE_OCTETS = 998
_OVERLONG = re.compile(rb"[^\r\n]{%d,}" % (MAX_LINE_OCTETS + 1))  # a CR or LF anywhere ends a line


@dataclass(frozen=True, slots=True)
class Overlong:
    number: int  # of the line, from 1
    octets: int
    start: int  # offsets of the line in the data
    end: int

    def describe(self, what: str = "line") -> str:
        return (
            f"{what} {self.number} is {self.octets} octets long; RFC 5322 allows at most {MAX_LINE_OCTETS} "
            "(fold long header fields; encode a body with long lines as quoted-printable or base64)"
        )


def overlong_lines(data: bytes) -> Iterator[Overlong]:
    """Each line of `data` longer than the limit, in order; lines are numbered by their LF (or CRLF) ends."""
    counted, number = 0, 1
    for found in _OVERLONG.finditer(data):
        number += data.count(b"\n", counted, found.start())
        counted = found.start()
        yield Overlong(number, found.end() - found.start(), found.start(), found.end())


def overlong_line(data: bytes) -> Overlong | None:
    """The first line of `data` longer than the limit, if any."""
    return next(overlong_lines(data), None)
