"""The `X-Mailstream-Signature` header: HMAC-SHA256 of "<timestamp>.<body>" under the endpoint's secret.

Signing the timestamp with the body lets a receiver refuse a replayed request (an old timestamp) as well
as a forged one; `verify` is what a receiver written in Python can call as it is.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Mailstream-Signature"
TIMESTAMP_HEADER = "X-Mailstream-Timestamp"
TOLERANCE_SECONDS = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The header's value: "sha256=<hex digest>"."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(
    secret: str, header: str, timestamp: str, body: bytes, now: float, tolerance: float = TOLERANCE_SECONDS
) -> bool:
    """Whether `header` signs `body` at `timestamp` (the two headers as received), within `tolerance` seconds
    of `now` (Unix time). Compares in constant time."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, int(timestamp), body), header.strip())
