"""API keys bind a caller to one tenant; an admin key may act for any tenant.

Keys are kept as their SHA-256 only (the file may give the hash, `key_sha256`, or the key itself): a presented
token is hashed once and compared with every key's hash in constant time. A fast hash is right for keys, unlike
passwords: they are long random tokens, so there is nothing to guess offline, and a slow KDF on every request
would cap the API's throughput.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from mailstream.config.model import ApiKey
from mailstream.ingest.problems import Problem


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str | None  # None only for admins
    admin: bool
    key_id: str = ""  # names the API key without revealing it (the scope of its Idempotency-Keys)

    def may_see(self, tenant: str | None) -> bool:
        return self.admin or tenant == self.tenant


def key_id(key: ApiKey) -> str:
    """A name for the key that does not reveal it (logs, the scope of its Idempotency-Keys and limits): the same
    whether the file holds the key or its hash."""
    return key.sha256()[:16]


class KeyRing:
    def __init__(self, keys: list[ApiKey]) -> None:
        self._keys = [(bytes.fromhex(k.sha256()), Principal(k.tenant, k.admin, key_id(k))) for k in keys]

    def authenticate(self, authorization: str | None) -> Principal:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Problem(
                401,
                "Unauthorized",
                "send 'Authorization: Bearer <api key>'",
                headers={"WWW-Authenticate": 'Bearer realm="mailstream"'},
            )
        presented = hashlib.sha256(token.strip().encode()).digest()
        found = None
        for digest, principal in self._keys:  # compare with every key: timing says nothing
            if hmac.compare_digest(digest, presented):
                found = principal
        if found is None:
            raise Problem(
                401,
                "Unauthorized",
                "unknown API key",
                headers={"WWW-Authenticate": 'Bearer realm="mailstream", error="invalid_token"'},
            )
        return found
