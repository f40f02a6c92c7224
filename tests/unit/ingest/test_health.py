"""/healthz, /readyz (ready once the status view has caught up) and Prometheus /metrics."""

from __future__ import annotations

import httpx

from tests.infra.ingest_app import IngestApp, problem


async def test_healthz_answers_without_a_key(ingest: IngestApp) -> None:
    async with ingest.client(None) as anyone:
        response = await anyone.get("/healthz")
    assert response.json() == {"status": "ok"}


async def test_readyz_waits_for_the_status_view(ingest: IngestApp) -> None:
    async with ingest.client(None) as anyone:
        catching_up = await anyone.get("/readyz")
        ingest.statuses.caught_up.set()
        ready = await anyone.get("/readyz")
    assert problem(catching_up, 503)["detail"] == "transaction status view is catching up"
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


async def test_metrics_are_prometheus_text(ingest: IngestApp, admin: httpx.AsyncClient) -> None:
    await admin.post(
        "/api/inject/v1",
        json={"envelope_sender": "s@acme.test", "recipients": [{"email": "x@"}], "content": "Subject: s\n\nt\n"},
    )
    response = await admin.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    assert 'mailstream_ingest_requests_total{outcome="accepted"}' in response.text
    assert 'mailstream_ingest_recipients_total{result="failed"}' in response.text
