"""The whole pipeline reports to a webhook: an endpoint registered through the API hears, signed, that one
recipient was delivered, one bounced (550 at the sink) and one deferred (451), with the transaction ids the
inject answer gave, and its attempts show through the API."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from tests.infra.stack import ACME_KEY, Stack
from tests.infra.webhooks import SECRET, Receiver, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def test_outcomes_reach_a_registered_endpoint(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:8]
    receiver = await Receiver().start()
    async with httpx.AsyncClient(
        base_url=stack.api, headers={"Authorization": f"Bearer {ACME_KEY}"}, timeout=30
    ) as api:
        created = await api.post(
            "/api/webhooks",
            json={
                "name": f"e2e-{tag}",
                "url": receiver.url,
                "secret": SECRET,
                "events": ["delivered", "bounced", "deferred"],
            },
        )
        assert created.status_code == 201, created.text
        ident = created.json()["id"]
        try:
            recipients = [f"ok-{tag}@example.com", f"bounce-{tag}@example.com", f"defer-{tag}@example.com"]
            injected = await api.post(
                "/api/inject/v1",
                json={
                    "envelope_sender": f"bounces-{tag}@acme.test",
                    "recipients": [{"email": r} for r in recipients],
                    "metadata": {"campaign": "hooks"},
                    "content": {"from": {"email": "news@acme.test"}, "subject": "hi", "text_body": "hello"},
                },
            )
            assert injected.status_code == 200, injected.text
            ids = {t["recipient"]: t["id"] for t in injected.json()["transactions"]}
            ours = set(ids.values())  # acme mail of earlier scenarios may still be finishing

            def heard() -> dict[str, str]:
                return {r.transaction_id: r.type for r in receiver.accepted() if r.transaction_id in ours}

            await wait_for(
                lambda: len(heard()) == 3,
                90,
                "the three outcomes",
                lambda: "\n".join(stack.log_tail(s) for s in stack.procs),
            )
            assert heard() == {
                ids[recipients[0]]: "delivered",
                ids[recipients[1]]: "bounced",
                ids[recipients[2]]: "deferred",
            }
            assert all(r.signed for r in receiver.received)

            async def attempts() -> set[tuple[str, str, str]]:
                shown = (await api.get(f"/api/webhooks/{ident}/attempts")).json()["attempts"]
                return {
                    (a["transaction_id"], a["event_type"], a["outcome"]) for a in shown if a["transaction_id"] in ours
                }

            deadline = time.monotonic() + 30
            while len(await attempts()) < 3:
                assert time.monotonic() < deadline, await attempts()
                await asyncio.sleep(0.2)
            assert await attempts() == {
                (ids[recipients[0]], "delivered", "DELIVERED"),
                (ids[recipients[1]], "bounced", "DELIVERED"),
                (ids[recipients[2]], "deferred", "DELIVERED"),
            }
        finally:
            assert (await api.delete(f"/api/webhooks/{ident}")).status_code == 204
            await receiver.stop()
