"""Endpoints registered through ingest's API reach the webhooks service through mail.webhooks, and its attempts
come back through the API; a deleted endpoint stops. Ingest and the webhooks service run as processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.infra.stack import free_port
from tests.infra.webhooks import SECRET, Receiver, WebhooksProcess, per_transaction, wait_for, write_events

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def start_ingest(service: WebhooksProcess, tmp_path: Path, key: str, tenant: str) -> tuple[Any, str]:
    port = free_port()
    config = {
        **service.config(),
        "ingest": {
            "port": port,
            "message_id_domain": "mailstream.test",
            "status_db": str(tmp_path / "status.sqlite3"),
            "api_keys": [{"key": key, "tenant": tenant}],
        },
    }
    path = tmp_path / "ingest.yaml"
    path.write_text(yaml.safe_dump(config))
    log = (tmp_path / "ingest.log").open("ab")
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "mailstream.ingest", "--config", str(path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    log.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as client:
        while True:
            assert proc.poll() is None, (tmp_path / "ingest.log").read_text()
            try:
                if (await client.get(f"{base}/healthz")).status_code == 200:
                    return proc, base
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "ingest.log").read_text()
            await asyncio.sleep(0.2)


async def test_an_endpoint_registered_by_api_is_delivered_to_and_its_attempts_shown(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    tenant, key = f"t{uuid.uuid4().hex[:8]}", f"key-{uuid.uuid4().hex}"
    failures = 0

    async def fail_twice(_: Receiver, __: dict[str, Any]) -> int:
        nonlocal failures
        failures += 1
        return 503 if failures <= 2 else 200

    receiver = await Receiver(fail_twice).start()
    service = WebhooksProcess(kafka_bootstrap, tmp_path, [])
    await service.start()
    ingest, base = await start_ingest(service, tmp_path, key, tenant)
    try:
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}) as api:
            created = await api.post(
                "/api/webhooks", json={"name": "mine", "url": receiver.url, "secret": SECRET, "events": ["delivered"]}
            )
            assert created.status_code == 201, created.text
            ident = created.json()["id"]
            written = await write_events(kafka_bootstrap, tenant, 4)
            await wait_for(
                lambda: per_transaction(receiver) == dict.fromkeys(written, 1),
                60,
                "the delivered events at the API's endpoint",
                service.log,
            )
            assert all(r.signed for r in receiver.received)

            async def attempts() -> list[dict[str, Any]]:
                answer = await api.get(f"/api/webhooks/{ident}/attempts")
                assert answer.status_code == 200
                return list(answer.json()["attempts"])

            deadline = time.monotonic() + 30
            while len(shown := await attempts()) < 6:  # 2 failures + 4 deliveries
                assert time.monotonic() < deadline, shown
                await asyncio.sleep(0.2)
            assert (
                sorted((a["status_code"], a["outcome"]) for a in shown)
                == [(200, "DELIVERED")] * 4 + [(503, "RETRYING")] * 2
            )
            assert {a["transaction_id"] for a in shown} == set(written)
            assert all(a["given_up"] is False and a["duration_ms"] >= 0 for a in shown)

            assert (await api.delete(f"/api/webhooks/{ident}")).status_code == 204
            assert (await api.get(f"/api/webhooks/{ident}")).status_code == 404
        deadline = time.monotonic() + 30
        while "mailstream_webhook_endpoints 0.0" not in await service.metrics():  # the service let it go
            assert time.monotonic() < deadline, service.log()
            await asyncio.sleep(0.2)
    finally:
        ingest.terminate()
        ingest.wait(30)
        service.stop()
        await receiver.stop()
