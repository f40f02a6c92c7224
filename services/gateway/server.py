"""The gateway process: one asyncio server per configured listener, all feeding one submission path."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field

from mailstream.config.gateway import GatewayConfig, Listener
from mailstream.gateway.auth import Credentials, FailureLimiter
from mailstream.gateway.protocol import ConnectionLimits, GatewaySMTP
from mailstream.gateway.session import GatewayHandler, GatewayParts
from mailstream.observability.logs import get_logger

log = get_logger(__name__)


def tls_context(listener: Listener) -> ssl.SSLContext | None:
    """The listener's server context; a missing or unreadable certificate or key fails here, at start-up."""
    if listener.tls.mode == "none":
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(listener.tls.cert_file), str(listener.tls.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"listener {listener.name!r}: cannot load {listener.tls.cert_file} / {listener.tls.key_file}: {exc}"
        ) from None
    return context


@dataclass
class RunningListener:
    listener: Listener
    server: asyncio.Server
    limits: ConnectionLimits

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])


@dataclass
class Gateway:
    config: GatewayConfig
    parts: GatewayParts
    listeners: list[RunningListener] = field(default_factory=list)

    async def start(self) -> None:
        credentials = Credentials(self.config.users)
        failures = FailureLimiter(self.parts.clock, self.config.max_auth_failures, self.config.auth_failure_window)
        loop = asyncio.get_running_loop()
        for listener in self.config.listeners:
            context = tls_context(listener)
            handler = GatewayHandler(listener, self.parts)
            limits = ConnectionLimits(listener)

            def factory(
                listener: Listener = listener,
                handler: GatewayHandler = handler,
                limits: ConnectionLimits = limits,
                context: ssl.SSLContext | None = context,
            ) -> GatewaySMTP:
                return GatewaySMTP(
                    handler,
                    listener=listener,
                    hostname=self.config.hostname,
                    limits=limits,
                    credentials=credentials,
                    failures=failures,
                    failure_delay=self.config.auth_failure_delay.total_seconds(),
                    starttls=context if listener.tls.mode in ("starttls", "starttls_required") else None,
                )

            server = await loop.create_server(
                factory,
                listener.host,
                listener.port,
                reuse_port=True,
                ssl=context if listener.tls.mode == "implicit" else None,
            )
            self.listeners.append(RunningListener(listener, server, limits))
            log.info(
                "listening",
                listener=listener.name,
                mode=listener.mode,
                host=listener.host,
                port=self.listeners[-1].port,
                tls=listener.tls.mode,
            )

    async def stop(self, grace: float) -> None:
        """Stop accepting; idle sessions get 421 4.3.2; transactions in progress get up to `grace` seconds."""
        for running in self.listeners:
            running.limits.draining = True
            running.server.close()
        deadline = asyncio.get_running_loop().time() + grace
        while any(r.limits.open for r in self.listeners) and asyncio.get_running_loop().time() < deadline:
            for running in self.listeners:
                for protocol in list(running.limits.open):
                    protocol.drain()  # each session as soon as it is between transactions
            await asyncio.sleep(0.05)
        for running in self.listeners:
            for protocol in list(running.limits.open):
                if protocol.transport is not None:
                    protocol.transport.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(running.server.wait_closed(), 1.0)
