"""SMTP replies with enhanced status codes (RFC 2034, RFC 3463) on every one that takes one (pure)."""

from __future__ import annotations

import re

# The code a reply gets when whoever wrote it gave none: aiosmtpd's own replies mostly come without one.
DEFAULT_ENHANCED = {
    211: "2.0.0",
    214: "2.0.0",
    221: "2.0.0",
    235: "2.7.0",
    250: "2.0.0",
    251: "2.1.5",
    252: "2.5.0",
    421: "4.3.2",
    450: "4.2.0",
    451: "4.3.0",
    452: "4.3.1",
    454: "4.7.0",
    455: "4.5.4",
    500: "5.5.2",
    501: "5.5.4",
    502: "5.5.1",
    503: "5.5.1",
    504: "5.5.4",
    530: "5.7.0",
    534: "5.7.9",
    535: "5.7.8",
    538: "5.7.11",
    550: "5.0.0",
    551: "5.1.6",
    552: "5.3.4",
    553: "5.1.3",
    554: "5.0.0",
    555: "5.5.4",
}
_HAS_ENHANCED = re.compile(rb"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}(?: |$)")
_CODE = re.compile(rb"^([245]\d\d)([ -])")
# Not given one (RFC 2034 section 3): the greeting, and continuation replies that are not results.
_EXEMPT = (b"220", b"354", b"334")


def with_enhanced(reply: bytes) -> bytes:
    """One reply line, an enhanced code added after the basic code when it lacks one."""
    if reply[:3] in _EXEMPT or _HAS_ENHANCED.match(reply):
        return reply
    found = _CODE.match(reply)
    if found is None:
        return reply
    code = int(found[1])
    enhanced = DEFAULT_ENHANCED.get(code, f"{code // 100}.0.0").encode()
    rest = reply[4:]
    return found[1] + found[2] + enhanced + (b" " + rest if rest else b"")


def reply(code: int, enhanced: str, text: str) -> str:
    return f"{code} {enhanced} {text}"


_PRINTABLE = re.compile(r"[^\x20-\x7e]")


def verbatim(code: int, enhanced: str | None, text: str) -> str:
    """A remote server's reply passed on to our client: one line, printable ASCII, its codes kept."""
    first = _PRINTABLE.sub("?", text.splitlines()[0] if text else "")[:400]
    return reply(code, enhanced or DEFAULT_ENHANCED.get(code, f"{code // 100}.0.0"), first)
