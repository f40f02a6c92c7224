"""SMTP AUTH: credentials checked against the configured hashes, and guessing made slow and bounded."""

from __future__ import annotations

import hashlib
import hmac
from collections import deque
from datetime import timedelta

from mailstream.config.gateway import SmtpUser
from mailstream.core.clock import Clock
from mailstream.core.password_hash import verify_password

_UNKNOWN_USER_HASH = "$scrypt$ln=14,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


class Credentials:
    def __init__(self, users: list[SmtpUser]) -> None:
        self._users = {u.username: u for u in users}
        # A relay opens many sessions with one password: the scrypt check (~40 ms) is paid once per
        # (user, password). The key is a keyed digest, so the cache holds no password.
        self._key = hashlib.sha256(b"".join(u.password_hash.encode() for u in users)).digest()
        self._verified: dict[bytes, str] = {}

    def check(self, username: str, password: str) -> SmtpUser | None:
        """The user, or None; unknown users cost as much as wrong passwords. Blocking: run it off the loop."""
        user = self._users.get(username)
        token = hmac.new(self._key, f"{username}\0{password}".encode(errors="surrogateescape"), "sha256").digest()
        if user is not None and self._verified.get(token) == user.password_hash:
            return user
        ok = verify_password(password, user.password_hash if user else _UNKNOWN_USER_HASH) and user is not None
        if not ok or user is None:
            return None
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[token] = user.password_hash
        return user


class FailureLimiter:
    """At most `limit` failed AUTH attempts per client address within `window`."""

    def __init__(self, clock: Clock, limit: int, window: timedelta) -> None:
        self._clock = clock
        self._limit = limit
        self._window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        times = self._failures.setdefault(client, deque())
        horizon = self._clock().timestamp() - self._window.total_seconds()
        while times and times[0] <= horizon:
            times.popleft()
        return times

    def blocked(self, client: str) -> bool:
        blocked = len(self._recent(client)) >= self._limit
        if not self._failures[client]:
            del self._failures[client]
        return blocked

    def failed(self, client: str) -> None:
        self._recent(client).append(self._clock().timestamp())
        if len(self._failures) > 100_000:  # a spray of addresses must not grow this without bound
            for stale in [c for c, t in self._failures.items() if not t]:
                del self._failures[stale]
