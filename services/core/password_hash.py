"""Password hashes for SMTP AUTH: scrypt (RFC 7914, in the standard library), so the configuration never
holds a password. The text form is `$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<hash>` (base64, no padding).

API keys are hashed with plain SHA-256 instead (`api_key_sha256`): they are random tokens of 256 bits, which no
dictionary holds, so salt and work factor would buy nothing and cost every request a KDF."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

_FORM = re.compile(r"^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$")
DEFAULT_LN, DEFAULT_R, DEFAULT_P = 14, 8, 1  # 16 MiB and ~40 ms per check: costly to guess offline


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _derive(password: str, salt: bytes, ln: int, r: int, p: int, length: int) -> bytes:
    n = 1 << ln
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=256 * n * r + (1 << 20))


def hash_password(password: str, *, ln: int = DEFAULT_LN, salt: bytes | None = None) -> str:
    salt = os.urandom(16) if salt is None else salt
    digest = _derive(password, salt, ln, DEFAULT_R, DEFAULT_P, 32)
    return f"$scrypt$ln={ln},r={DEFAULT_R},p={DEFAULT_P}${_b64(salt)}${_b64(digest)}"


def is_password_hash(text: str) -> bool:
    found = _FORM.match(text)
    return found is not None and 1 <= int(found[1]) <= 20


def verify_password(password: str, encoded: str) -> bool:
    """False for a wrong password and for a malformed hash alike; the comparison takes constant time."""
    found = _FORM.match(encoded)
    if found is None or not 1 <= int(found[1]) <= 20:
        return False
    expected = _unb64(found[5])
    actual = _derive(password, _unb64(found[4]), int(found[1]), int(found[2]), int(found[3]), len(expected))
    return hmac.compare_digest(actual, expected)


def api_key_sha256(key: str) -> str:
    """The hex SHA-256 of an API key, as `ingest.api_keys[].key_sha256` holds it."""
    return hashlib.sha256(key.encode()).hexdigest()
