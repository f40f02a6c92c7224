"""The trace header that ties a report coming back by mail to the transaction it is about. Pure.

KumoMTA's supplemental trace header (`X-KumoRef` by default): base64 of a small JSON object. Ours holds the
transaction id, its tenant and the recipient, with KumoMTA's `"_@_": "\\_/"` marker so a header that merely
decodes to JSON is not taken for one. Bounces (RFC 3464, the returned message or its headers) and
complaints (RFC 5965, the original headers) quote it back, and the report parser reads it from there.

It is added at intake, before DKIM signing and before the body is written once: so it is in the stored body,
signable, and identical on every attempt. A per-recipient header makes each recipient's body distinct (a
shared body is written once only when no trace header is asked for).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

DEFAULT_NAME = "X-KumoRef"
MARKER = ("_@_", "\\_/")
_FIELD_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # RFC 5322 ftext, short enough to fold nowhere
_TX_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True)
class TraceRef:
    transaction_id: str
    tenant: str | None
    recipient: str | None


def check_name(name: str) -> str:
    """ValueError unless `name` is a header field name (printable ASCII, no colon, at most 76 characters)."""
    if not _FIELD_NAME.match(name):
        raise ValueError(f"{name!r} is not a header field name (printable ASCII without ':', 1 to 76 characters)")
    return name


def encode(ref: TraceRef) -> str:
    payload = {MARKER[0]: MARKER[1], "id": ref.transaction_id, "tenant": ref.tenant, "recipient": ref.recipient}
    return base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode("ascii")


def decode(value: str) -> TraceRef | None:
    """The reference a header value holds; None for anything that is not one of ours (never an exception)."""
    try:
        payload = json.loads(base64.b64decode("".join(value.split()), validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict) or payload.get(MARKER[0]) != MARKER[1]:
        return None
    tx_id, tenant, recipient = payload.get("id"), payload.get("tenant"), payload.get("recipient")
    if not isinstance(tx_id, str) or not _TX_ID.match(tx_id):
        return None
    return TraceRef(
        tx_id, tenant if isinstance(tenant, str) else None, recipient if isinstance(recipient, str) else None
    )


def with_header(data: bytes, name: str, ref: TraceRef) -> bytes:
    """The message with `name: <encoded ref>` as its first header field (DKIM signs after this, and its
    DKIM-Signature goes before it)."""
    return f"{name}: {encode(ref)}\r\n".encode("ascii") + data
