"""SMTP replies as values: split the enhanced status code out of the text, and judge the outcome."""

from __future__ import annotations

import re
from typing import Literal

Outcome = Literal["DELIVERED", "TRANSIENT", "PERMANENT"]
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")


def split_enhanced_code(code: int, text: str) -> tuple[str | None, str]:
    """(enhanced code, remaining text). The enhanced class must agree with the reply's first digit."""
    lines = [line.strip() for line in text.splitlines()] or [""]
    match = _ENHANCED.match(lines[0])
    if match is None or match.group(1) != str(code)[0]:
        return None, "\n".join(lines)
    enhanced = ".".join(match.groups())
    stripped = []
    for line in lines:
        m = _ENHANCED.match(line)
        stripped.append(line[m.end() :] if m and ".".join(m.groups()) == enhanced else line)
    return enhanced, "\n".join(stripped)


def outcome_of(code: int) -> Outcome:
    """2xx delivered, 4xx retry, anything else (5xx, nonsense) is permanent."""
    if 200 <= code < 300:
        return "DELIVERED"
    if 400 <= code < 500:
        return "TRANSIENT"
    return "PERMANENT"
