"""Runs one delivery task per endpoint: started when an endpoint appears, stopped when it goes, restarted when it
changes or fails (after a pause, so a broken one does not spin)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from prometheus_client import Gauge

from mailstream.events.records import WebhookEndpoint
from mailstream.observability.logs import get_logger
from mailstream.webhooks.events import same_delivery

log = get_logger(__name__)
ENDPOINTS = Gauge("mailstream_webhook_endpoints", "Endpoints this process delivers to")
RESTART_AFTER = 5.0  # seconds after a delivery task failed

Run = Callable[[WebhookEndpoint], Coroutine[Any, Any, None]]


class Supervisor:
    def __init__(self, run: Run) -> None:
        self._run = run
        self._tasks: dict[str, tuple[WebhookEndpoint, asyncio.Task[None]]] = {}

    async def reconcile(self, wanted: dict[str, WebhookEndpoint]) -> None:
        for ident, (endpoint, _) in list(self._tasks.items()):
            if ident not in wanted or not same_delivery(endpoint, wanted[ident]):
                await self._stop(ident)
        for ident, endpoint in wanted.items():
            if ident not in self._tasks:
                self._tasks[ident] = (endpoint, asyncio.create_task(self._keep(endpoint), name=f"webhook-{ident}"))
                log.info("endpoint_started", endpoint=ident, url=endpoint.url, tenant=endpoint.tenant)
        ENDPOINTS.set(len(self._tasks))

    async def _keep(self, endpoint: WebhookEndpoint) -> None:
        while True:
            try:
                await self._run(endpoint)
            except Exception as exc:  # the endpoint's own trouble: the others go on, this one starts again
                log.error("endpoint_failed", endpoint=endpoint.id, error=repr(exc))
            await asyncio.sleep(RESTART_AFTER)

    async def _stop(self, ident: str) -> None:
        _, task = self._tasks.pop(ident)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info("endpoint_stopped", endpoint=ident)

    async def stop_all(self) -> None:
        for ident in list(self._tasks):
            await self._stop(ident)
