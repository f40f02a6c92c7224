"""`mailstream rebind | retry | purge | set-priority | operation`: the options become POST /api/queue/operations'
QueueOperation, and its QueueOperationResult a table or JSON (against an in-memory transport here; against the
running stack in tests/e2e/test_operator_cli.py)."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest

from mailstream.operator import queue_operations as ops
from mailstream.operator.client import EXIT_BAD_REQUEST, EXIT_NOT_FOUND, Api, ApiError, Settings
from mailstream.operator.commands import NAMES, run

RESULT = {
    "id": "0f3c",
    "success": False,
    "operation": "rebind",
    "affected_messages": 3,
    "affected_queues": ["spring:acme@example.com", "warm:acme@example.com"],
    "errors": ["tx-9 is already delivered"],
    "timestamp": "2026-12-03T10:00:00+00:00",
    "done": True,
    "partitions_answered": 1,
    "partitions_expected": 1,
}


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """The requests the commands make; each answered with RESULT (GET of an unknown id: 404)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET" and not request.url.path.endswith("/0f3c"):
            return httpx.Response(404, json={"type": "about:blank", "title": "Not found", "status": 404})
        return httpx.Response(200, json=RESULT)

    def connect(_: Any) -> Api:
        return Api(Settings("http://api.test", "k"), transport=httpx.MockTransport(handler))

    monkeypatch.setattr(ops, "connect", connect)
    monkeypatch.setenv("COLUMNS", "200")  # rich's width: no cell folded over two lines
    return seen


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


def test_a_scope_or_ids_become_the_operations_request() -> None:
    scoped = ops.operation_body(
        "rebind", queue="spring:acme@example.com", tenant="acme", campaign=None, domain=None, ids=None,
        reason="warm up", metadata={"queue": None, "egress_pool": "warm"},
    )  # fmt: skip
    assert scoped == {
        "operation": "rebind",
        "queue_name": "spring:acme@example.com",
        "tenant": "acme",
        "reason": "warm up",
        "metadata": {"egress_pool": "warm"},
    }
    by_id = ops.operation_body("retry", queue=None, tenant=None, campaign=None, domain=None, ids=["a", "b", "a"])
    assert by_id == {"operation": "retry", "message_ids": ["a", "b"]}
    assert ops.target_of(by_id) == "2 messages"
    assert ops.target_of(scoped) == "queue=spring:acme@example.com tenant=acme"
    for tenant, ids in ((None, None), ("acme", ["a"])):
        with pytest.raises(ApiError, match=r"a scope .* or --id, not both") as caught:
            ops.operation_body("purge", queue=None, tenant=tenant, campaign=None, domain=None, ids=ids)
        assert caught.value.code == EXIT_BAD_REQUEST


def test_rebind_posts_the_operation_and_prints_the_result_table(
    answers: list[httpx.Request], capsys: pytest.CaptureFixture[str]
) -> None:
    assert {"rebind", "retry", "purge", "set-priority", "operation"} <= set(NAMES)
    argv = ["rebind", "--campaign", "spring", "--tenant", "acme", "--to-pool", "warm", "--to-queue", "warm:acme@x.test"]
    assert run([*argv, "--reason", "warm up", "--yes"]) == 0
    [request] = answers
    assert (request.method, request.url.path, request.url.params["wait"]) == ("POST", "/api/queue/operations", "20.0")
    assert body_of(request) == {
        "operation": "rebind",
        "tenant": "acme",
        "campaign": "spring",
        "reason": "warm up",
        "metadata": {"queue": "warm:acme@x.test", "egress_pool": "warm"},
    }
    out = capsys.readouterr().out
    for text in (
        "affected_messages",
        "3",
        "spring:acme@example.com,warm:acme@example.com",
        "2026-12-03 10:00:00",
        "tx-9 is already delivered",
        "True (1/1 partitions)",
    ):
        assert text in out, text


def test_retry_and_set_priority_act_on_ids_without_asking(
    answers: list[httpx.Request], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["retry", "--id", "tx-1", "--id", "tx-2", "--wait", "5"]) == 0
    assert run(["set-priority", "9", "--id", "tx-1", "--json"]) == 0
    retry, priority = answers
    assert body_of(retry) == {"operation": "retry", "message_ids": ["tx-1", "tx-2"]}
    assert retry.url.params["wait"] == "5.0"
    assert body_of(priority) == {"operation": "set_priority", "message_ids": ["tx-1"], "metadata": {"priority": 9}}
    assert '"affected_messages": 3' in capsys.readouterr().out  # the JSON after the first one's table
    assert run(["set-priority", "11", "--id", "tx-1"]) == 2  # out of range: a usage error before any request
    assert len(answers) == 2


def test_set_priority_json_is_the_apis_answer(answers: list[httpx.Request], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["set-priority", "0", "--domain", "example.com", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == RESULT
    assert body_of(answers[0])["domain"] == "example.com"


def test_purge_and_rebind_ask_first_and_do_nothing_unconfirmed(
    answers: list[httpx.Request], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n\n"))  # the operator says no, then just presses enter
    assert run(["purge", "--campaign", "spring"]) == 1
    assert run(["rebind", "--id", "tx-1", "--to-pool", "warm"]) == 1
    assert answers == []
    err = capsys.readouterr().err
    assert "purge every queued message of campaign=spring?" in err
    assert "rebind 1 message to pool warm?" in err
    assert run(["purge", "--campaign", "spring", "--reason", "sent twice", "--yes"]) == 0
    assert body_of(answers[0]) == {"operation": "purge", "campaign": "spring", "reason": "sent twice"}


def test_bad_command_lines_are_usage_errors_without_a_request(
    answers: list[httpx.Request], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["rebind", "--campaign", "spring", "--yes"]) == EXIT_BAD_REQUEST  # where to?
    assert run(["retry"]) == EXIT_BAD_REQUEST
    assert run(["purge", "--tenant", "acme", "--id", "tx-1", "--yes"]) == EXIT_BAD_REQUEST
    assert answers == []
    assert "--to-queue and/or --to-pool" in capsys.readouterr().err


def test_a_result_not_yet_complete_says_how_to_read_it_later(
    answers: list[httpx.Request], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(RESULT, "done", False)
    monkeypatch.setitem(RESULT, "partitions_answered", 0)
    assert run(["retry", "--tenant", "acme"]) == 0
    assert "mailstream operation 0f3c" in capsys.readouterr().out
    assert run(["operation", "0f3c", "--json"]) == 0
    assert answers[-1].url.path == "/api/queue/operations/0f3c"
    assert json.loads(capsys.readouterr().out)["done"] is False
    assert run(["operation", "nope"]) == EXIT_NOT_FOUND
