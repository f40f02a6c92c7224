"""Durable reads (issue #9): a slow or dead ingest replica does not affect another. Each replica folds every
partition of mail.status into a view of its own (assigned partitions, no consumer group: a shared group would
give each replica half the statuses), so with one replica stopped (SIGSTOP, as a stalled process) and then
killed, the other still accepts mail and answers the status of every transaction, those accepted through the
stopped one included; restarted, the killed one catches up from its own offsets."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailstream.devtools.capture_sink import CaptureSink
from tests.infra.stack import ADMIN_KEY, Stack, _started, private_bootstrap, stack_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@contextmanager
def two_ingests(bootstrap: str, sink: CaptureSink, workdir: Path) -> Iterator[Stack]:
    with private_bootstrap(bootstrap, workdir) as own:
        yield from _started(Stack(stack_config(own, sink.address, workdir), workdir, replicas={"ingest": 2}))


def _client(stack: Stack, instance: str) -> httpx.Client:
    return httpx.Client(base_url=stack.api_of(instance), headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10.0)


def _submit(client: httpx.Client, tag: str, n: int) -> list[str]:
    request: dict[str, Any] = {
        "envelope_sender": f"bounces-{tag}@acme.test",
        "recipients": [{"email": f"r{i}-{tag}@example.com"} for i in range(n)],
        "metadata": {"tenant": "acme"},
        "content": "Subject: replicas\n\nhello\n",
    }
    answer = client.post("/api/inject/v1", json=request)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["success_count"] == n, body
    return [t["id"] for t in body["transactions"]]


def _all_delivered(client: httpx.Client, ids: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    pending = set(ids)
    while pending:
        for tx_id in sorted(pending):
            r = client.get(f"/api/transactions/{tx_id}")
            if r.status_code == 200 and r.json()["status"] == "delivered":
                pending.discard(tx_id)
        if pending:
            assert time.monotonic() < deadline, f"{len(pending)} of {len(ids)} not delivered, e.g. {min(pending)}"
            time.sleep(0.3)


def test_one_replica_stopped_then_killed_leaves_the_other_whole(
    kafka_bootstrap: str, sink: CaptureSink, tmp_path: Path
) -> None:
    with two_ingests(kafka_bootstrap, sink, tmp_path) as stack:
        first, second = stack.instances("ingest")
        tag = uuid.uuid4().hex[:8]
        with _client(stack, first) as one, _client(stack, second) as two:
            early = _submit(one, f"{tag}-a", 10) + _submit(two, f"{tag}-b", 10)
            _all_delivered(one, early)
            _all_delivered(two, early)  # each replica sees every transaction, whichever took it

            stalled = stack.procs[second]
            os.kill(stalled.pid, signal.SIGSTOP)
            try:
                late = _submit(one, f"{tag}-c", 10)
                _all_delivered(one, early + late)
                with pytest.raises(httpx.TimeoutException):
                    two.get("/healthz", timeout=1.0)  # it is stalled indeed
            finally:
                stack.kill(second)  # SIGKILL: a dead replica now
            later = _submit(one, f"{tag}-d", 10)
            _all_delivered(one, early + late + later)

        stack.start_service(second)  # from its own view's offsets
        with _client(stack, second) as two:
            _all_delivered(two, early + late + later)
