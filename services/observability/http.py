"""A tiny /healthz + /metrics server for services that have no HTTP API of their own."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


async def serve_health(
    host: str, port: int, healthy: Callable[[], bool], status: Callable[[], str] = lambda: "starting"
) -> web.AppRunner:
    """`status` names what is wrong while `healthy` is False ("starting", "degraded", ...)."""

    async def healthz(_: web.Request) -> web.Response:
        ok = healthy()
        return web.json_response({"status": "ok" if ok else status()}, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
