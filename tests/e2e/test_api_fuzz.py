"""The OpenAPI document is the HTTP API's contract: schemathesis fuzzes every operation of the live ingest service
(`python -m mailstream.ingest` on a real broker of its own), with an admin key and a tenant's, with data the
document allows and data it does not, and every answer must be one the document declares: no server error, no
status code, content type, body or header it does not describe.

Bounded for CI: MAILSTREAM_FUZZ_EXAMPLES (default 25) examples per operation, key and mode, derandomized so a
failure reproduces; raise it for the long form. The summary is printed (`pytest -s` shows it).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mailstream.ingest.api_models import INJECT_EXAMPLE
from tests.infra.api_fuzz import Known, fuzz
from tests.infra.stack import ACME_KEY, ADMIN_KEY, Stack, private_bootstrap, stack_config

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

EXAMPLES = int(os.environ.get("MAILSTREAM_FUZZ_EXAMPLES", "25"))


@pytest.mark.timeout(900)
def test_every_answer_is_one_the_openapi_document_declares(kafka_bootstrap: str, tmp_path: Path) -> None:
    # Ingest alone: the API is all it serves; nothing is delivered (the smarthost is never dialled). On a broker
    # of its own: the suspensions, bounces and suppressions it sets must not reach other tests' pipelines.
    with private_bootstrap(kafka_bootstrap, tmp_path / "kafka") as bootstrap:
        stack = Stack(stack_config(bootstrap, ("127.0.0.1", 9), tmp_path), tmp_path)
        try:
            stack.start_service("ingest")
            keys = {"admin": ADMIN_KEY, "tenant": ACME_KEY}
            report = fuzz(stack.api, keys, EXAMPLES, known=_a_transaction(stack))
        finally:
            stack.stop()
    print(report.summary())
    assert "Traceback" not in (tmp_path / "ingest.log").read_text(errors="replace"), stack.log_tail("ingest", 80)
    assert len(report.operations) >= 18, report.summary()  # every route of today's API is in the document
    assert report.calls >= 10 * len(report.operations), report.summary()
    assert report.server_errors == 0, report.summary()
    assert report.undocumented == 0, report.summary()
    assert not report.failures, report.summary()
    # The known transaction's answers were among those checked: its status, unchanged (304), and its cancel.
    assert report.statuses["GET /api/transactions/{tx_id}", 200] >= 2, report.summary()
    assert report.statuses["GET /api/transactions/{tx_id}", 304] >= 2, report.summary()
    assert report.statuses["POST /api/transactions/{tx_id}/cancel", 200] >= 2, report.summary()


def _a_transaction(stack: Stack) -> list[Known]:
    """Requests about a transaction the tenant made (the fuzzer's own ids are mostly unknown or too new)."""
    with stack.client(ACME_KEY) as client:
        answer = client.post("/api/inject/v1", json=INJECT_EXAMPLE)
        assert answer.status_code == 200, answer.text
        tx_id = answer.json()["transactions"][0]["id"]
        deadline = time.monotonic() + 30
        while (status := client.get(f"/api/transactions/{tx_id}")).status_code == 404:
            assert time.monotonic() < deadline, "the status view did not show the transaction"
            time.sleep(0.1)
    path = {"tx_id": tx_id}
    return [
        ("/api/transactions/{tx_id}", "GET", {"path_parameters": path}),
        (
            "/api/transactions/{tx_id}",
            "GET",
            {"path_parameters": path, "headers": {"If-None-Match": status.headers["etag"]}},
        ),
        ("/api/transactions/{tx_id}/cancel", "POST", {"path_parameters": path, "body": {"reason": "fuzzed"}}),
    ]
