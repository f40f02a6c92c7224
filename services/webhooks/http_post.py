"""The one seam to HTTP: httpx is imported here. One client per endpoint, so a slow endpoint's connections are
its own; every failure (refused, reset, timed out, not 2xx) comes back as an `Answer`, never an exception."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

USER_AGENT = "mailstream-webhooks/0.1"
CONNECTIONS = 32  # requests in flight to one endpoint; more wait their turn before their timeout starts


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None  # None: no HTTP answer
    error: str | None  # None: a 2xx answer
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None


class HttpPoster:
    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._slots = asyncio.Semaphore(CONNECTIONS)
        self._client = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS),
        )

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        async with self._slots:
            return await self._post(url, body, headers)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout):  # httpx's timeouts are per read, not for the whole answer
                response = await self._client.post(url, content=body, headers=headers)
        except TimeoutError:
            return Answer(None, f"no answer within {self._timeout:g}s", time.monotonic() - started)
        except httpx.HTTPError as exc:
            return Answer(
                None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, time.monotonic() - started
            )
        seconds = time.monotonic() - started
        if 200 <= response.status_code < 300:
            return Answer(response.status_code, None, seconds)
        return Answer(response.status_code, f"HTTP {response.status_code}", seconds)

    async def close(self) -> None:
        await self._client.aclose()
