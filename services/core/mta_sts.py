"""MTA-STS (RFC 8461): the `_mta-sts` TXT record, the policy file, and which MX hosts a policy allows. Pure.

A policy that does not parse is no policy (§3.2: the sender acts as if there were none); unknown
keys are ignored, as the RFC asks, so a later version's additions do not break this one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Mode = Literal["enforce", "testing", "none"]
MAX_AGE_LIMIT = 31_557_600  # one year (§3.2)
_MODES: dict[str, Mode] = {"enforce": "enforce", "testing": "testing", "none": "none"}
_ID = re.compile(r"[A-Za-z0-9]{1,32}")


class PolicyError(ValueError):
    """The policy file is not a valid STSv1 policy."""


@dataclass(frozen=True, slots=True)
class Policy:
    mode: Mode
    mx: tuple[str, ...]  # patterns, lower case, without a trailing dot
    max_age: int  # seconds

    def permits(self, host: str) -> bool:
        """Whether an MX host (its name, as the MX record gives it) matches one of the policy's patterns."""
        return any(mx_matches(pattern, host) for pattern in self.mx)


def txt_id(records: list[str]) -> str | None:
    """The policy id of a domain's `_mta-sts` TXT records: exactly one must start `v=STSv1` (§3.1), else
    there is no policy (None)."""
    found = [r for r in records if re.match(r"v=STSv1\s*(;|$)", r)]
    if len(found) != 1:
        return None
    fields = dict(_pairs(found[0]))
    ident = fields.get("id")
    return ident if ident is not None and _ID.fullmatch(ident) else None


def _pairs(record: str) -> list[tuple[str, str]]:
    out = []
    for part in record.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            out.append((key.strip(), value.strip()))
    return out


def parse_policy(text: str) -> Policy:
    """The policy of a `.well-known/mta-sts.txt` body: `key: value` lines (LF or CRLF); `version` STSv1,
    `mode`, `max_age` and, unless the mode is `none`, at least one `mx`."""
    fields: dict[str, str] = {}
    mx: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise PolicyError(f"not a key: value line: {line[:80]!r}")
        key, value = key.strip(), value.strip()
        if key == "mx":
            mx.append(value.lower().rstrip("."))
        else:
            fields.setdefault(key, value)  # the first of a repeated key counts
    if fields.get("version") != "STSv1":
        raise PolicyError(f"version {fields.get('version')!r} is not STSv1")
    mode = _MODES.get(fields.get("mode", ""))
    if mode is None:
        raise PolicyError(f"mode {fields.get('mode')!r} is not enforce, testing or none")
    age = fields.get("max_age", "")
    if not age.isdigit() or len(age) > 10:
        raise PolicyError(f"max_age {age!r} is not a number of seconds")
    if mode != "none" and not mx:
        raise PolicyError(f"a policy in {mode} mode names no mx")
    for pattern in mx:
        if not _valid_pattern(pattern):
            raise PolicyError(f"mx {pattern!r} is not a host name or *.name")
    return Policy(mode, tuple(mx), min(int(age), MAX_AGE_LIMIT))


def _valid_pattern(pattern: str) -> bool:
    labels = pattern.removeprefix("*.").split(".")
    return all(re.fullmatch(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?", label) for label in labels)


def mx_matches(pattern: str, host: str) -> bool:
    """`mail.example.com` matches itself; `*.example.com` matches exactly one more label on the left
    (`mx1.example.com`, not `example.com` nor `a.b.example.com`), case-insensitively (§4.1)."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == pattern[2:]
    return host == pattern
