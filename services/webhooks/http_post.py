"""The one seam to HTTP: httpx is imported here. One client per endpoint, so a slow endpoint's connections are
its own; every failure (refused, reset, timed out, not 2xx, denied) comes back as an `Answer`, never an exception.

Every connection goes to an address `webhooks.outbound` allows, among those the URL's host resolves to at that
moment: the check and the connection see the same address, so a name pointed at loopback or the cluster's
network after it was registered (DNS rebinding) reaches nothing there. TLS still verifies the URL's host name.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpcore
import httpx
from prometheus_client import Counter

from mailstream.core.address_policy import AddressPolicy
from mailstream.observability.logs import get_logger

USER_AGENT = "mailstream-webhooks/0.1"
CONNECTIONS = 32  # requests in flight to one endpoint; more wait their turn before their timeout starts
log = get_logger(__name__)
DENIED = Counter(
    "mailstream_webhook_denied_connections_total",
    "POSTs not sent because every address of the endpoint's host is denied by webhooks.outbound",
)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None  # None: no HTTP answer
    error: str | None  # None: a 2xx answer
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None


class Denied(Exception):
    """No address of the host may be connected to: nothing was sent."""


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()  # what httpcore uses on asyncio

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve: {exc}") from None
        allowed: list[str] = []
        denied: list[str] = []
        for address in dict.fromkeys(str(info[4][0]) for info in infos):  # each once, in the resolver's order
            why = self._policy.refusal(address, port)
            if why is None:
                allowed.append(address)
            else:
                denied.append(f"{address} ({why})")
        if not allowed:
            DENIED.inc()
            log.warning("webhook_address_denied", host=host, port=port, addresses=denied)
            raise Denied(f"not connected: {host} is at {', '.join(denied)}, denied by webhooks.outbound")
        failed: httpcore.ConnectError | None = None
        for address in allowed:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failed = exc
        assert failed is not None
        raise failed

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise Denied("not connected: an endpoint is never a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _CheckedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: AddressPolicy, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        # httpx takes no network backend: its pool is made again as httpx makes it (no proxy), with ours
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_CheckedBackend(policy),
        )


class HttpPoster:
    def __init__(self, timeout: float, policy: AddressPolicy) -> None:
        self._timeout = timeout
        self._slots = asyncio.Semaphore(CONNECTIONS)
        limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
        self._client = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            transport=_CheckedTransport(policy, limits),
            trust_env=False,  # a proxy from the environment would be connected to instead, unchecked
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
        except Denied as exc:
            return Answer(None, str(exc), time.monotonic() - started)
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
