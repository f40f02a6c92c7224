"""DKIM signing (RFC 6376, RFC 8463) with dkimpy, once per body, before the body is written.

Both doors sign here, so what is written to mail.bodies is what goes out: the body stays written once and
no delivery worker needs a key.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass

import dkim

from mailstream.config.dkim import DkimConfig, DkimKey

_PROBE = b"From: probe@example.invalid\r\nSubject: probe\r\n\r\nprobe\r\n"


class DkimKeyError(ValueError):
    """A configured key that cannot be read or cannot sign; the message names the key."""


@dataclass(frozen=True, slots=True)
class _Key:
    domain: str
    selector: bytes
    algorithm: bytes
    private: bytes
    tenant: str | None


def _load(key: DkimKey) -> _Key:
    name = f"{key.selector}._domainkey.{key.domain} ({key.key_file})"
    try:
        private = key.key_file.read_bytes()
    except OSError as exc:
        raise DkimKeyError(f"dkim key {name}: {exc.strerror or exc}") from None
    loaded = _Key(
        key.domain.lower().rstrip("."), key.selector.encode(), key.algorithm.encode(), private.strip(), key.tenant
    )
    try:  # a key that cannot sign is refused now, not at the first message
        dkim.sign(
            _PROBE,
            loaded.selector,
            loaded.domain.encode(),
            loaded.private,
            signature_algorithm=loaded.algorithm,
            include_headers=[b"from"],
        )
    except Exception as exc:  # dkimpy raises several kinds for a bad key (KeyFormatError, ValueError, ...)
        raise DkimKeyError(f"dkim key {name} cannot sign: {exc}") from None
    return loaded


def from_domain(message: bytes) -> str | None:
    """The domain of the From header's address, lower-case; None without a parseable one."""
    head = message.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    found = None
    for line in head.replace("\r\n ", " ").replace("\r\n\t", " ").split("\r\n"):
        name, colon, value = line.partition(":")
        if colon and name.strip().lower() == "from":
            found = value
            break
    if found is None:
        return None
    address = email.utils.parseaddr(found)[1]
    domain = address.rpartition("@")[2].strip().lower().rstrip(".")
    return domain or None


class DkimSigner:
    """Keys loaded and checked at start-up (DkimKeyError names a bad one)."""

    def __init__(self, config: DkimConfig) -> None:
        self._keys = [_load(k) for k in config.keys]
        self._headers = [h.lower().encode() for h in config.headers]
        self._oversign = {h.lower().encode() for h in config.oversign}

    def __bool__(self) -> bool:
        return bool(self._keys)

    def keys_for(self, domain: str, tenant: str | None) -> list[_Key]:
        matching = [k for k in self._keys if k.domain == domain]
        own = [k for k in matching if k.tenant is not None and k.tenant == tenant]
        return own or [k for k in matching if k.tenant is None]

    def _include(self, message: bytes) -> list[bytes]:
        head = message.split(b"\r\n\r\n", 1)[0].lower()
        present: dict[bytes, int] = {}
        for line in head.split(b"\r\n"):
            if line[:1] not in (b" ", b"\t") and b":" in line:
                name = line.split(b":", 1)[0].strip()
                present[name] = present.get(name, 0) + 1
        include = []
        for name in self._headers:
            include += [name] * present.get(name, 0)
            if name in self._oversign:  # one more than there are: nobody can add one unnoticed
                include.append(name)
        return include if b"from" in include else [b"from", *include]  # RFC 6376 5.4: From is always signed

    def sign(self, message: bytes, tenant: str | None) -> bytes:
        """The message with a DKIM-Signature per matching key prepended (the last key's on top)."""
        domain = from_domain(message)
        keys = self.keys_for(domain, tenant) if domain else []
        if not keys:
            return message
        include = self._include(message)
        signatures = b""
        for key in keys:
            signatures = (
                dkim.sign(
                    message,
                    key.selector,
                    key.domain.encode(),
                    key.private,
                    canonicalize=(b"relaxed", b"relaxed"),
                    signature_algorithm=key.algorithm,
                    include_headers=include,
                )
                + signatures
            )
        return signatures + message
