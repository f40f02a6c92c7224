"""The envelope sender (MAIL FROM) a message leaves by: its egress source's bounce address, else its own. Pure.

Bounces go to the envelope sender, so a source that sets one receives them at its own domain (and the
SPF check of MAIL FROM is the source's); the header From is the message's and never changes. A
pattern may carry the message's sender and transaction id, VERP-style
(`bounces+{local}={domain}@bounce.example.com`, `b-{id}@bounce.example.com`), so a bounce that comes
back can be tied to what it is about. The null reverse-path of a DSN stays null (RFC 5321 §4.5.5).
"""

from __future__ import annotations

from string import Formatter

FIELDS = ("local", "domain", "id")


def check_pattern(pattern: str) -> None:
    """ValueError unless `pattern` is `<local part>@<domain>`, placeholders only in the local part."""
    local, at, domain = pattern.rpartition("@")
    if not at or not local or not domain or "{" in domain or "}" in domain:
        raise ValueError(f"{pattern!r} must be local@domain, with placeholders in the local part only")
    try:
        parts = list(Formatter().parse(local))
    except ValueError as exc:
        raise ValueError(f"{pattern!r}: {exc}") from None
    for _, name, spec, conversion in parts:
        if name is not None and (name not in FIELDS or spec or conversion):
            raise ValueError(f"{pattern!r}: unknown placeholder {{{name}}}; known: " + ", ".join(FIELDS))


def envelope_sender(sender: str, transaction_id: str, *, pattern: str | None, from_email: str | None) -> str:
    """MAIL FROM for a message whose own envelope sender is `sender`: the source's `pattern` filled in, else
    its `from_email`, else `sender`; `""` (a DSN's null reverse-path) whatever the source says."""
    if not sender:
        return sender
    if pattern is not None:
        local, _, domain = sender.rpartition("@")
        return pattern.format_map({"local": local or sender, "domain": domain, "id": transaction_id})
    return from_email or sender
