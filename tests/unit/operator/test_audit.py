"""`mailstream audit`: the options become GET /api/admin/audit's query, and its page a table or JSON (the command
against an in-memory transport here; against the running stack in tests/e2e/test_operator_cli.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from mailstream.operator import audit as audit_command
from mailstream.operator.client import EXIT_BAD_REQUEST, Api, Settings
from mailstream.operator.commands import NAMES, run

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
ENTRY = {
    "id": "a1",
    "at": "2026-12-02T11:59:00+00:00",
    "actor": "3f2a9c0d1e2b4a5c",
    "actor_tenant": "acme",
    "admin": False,
    "operation": "suspend",
    "route": "POST /api/admin/suspend",
    "scope": {"tenant": "acme", "campaign": "spring"},
    "reason": "too fast",
    "parameters": {},
    "result": "accepted",
    "status": 202,
    "problem": None,
    "affected": None,
    "command_ids": ["c1"],
    "request_id": "r1",
}


def test_the_options_become_the_query() -> None:
    got = audit_command.audit_params(
        NOW,
        since="2h",
        until=None,
        actor="acme",
        operation="suspend",
        scope="campaign=spring",
        result="refused",
        tenant=None,
        limit=10,
        cursor="42",
    )
    assert got["since"] == (NOW - timedelta(hours=2)).isoformat()
    assert (got["actor"], got["operation"], got["scope"], got["result"]) == (
        "acme",
        "suspend",
        "campaign=spring",
        "refused",
    )
    assert (got["limit"], got["cursor"], got["until"], got["tenant"]) == (10, "42", None, None)
    with pytest.raises(ValueError, match="accepted or refused"):
        audit_command.audit_params(
            NOW, since=None, until=None, actor=None, operation=None, scope=None, result="maybe", tenant=None,
            limit=1, cursor=None,
        )  # fmt: skip


@pytest.fixture
def api_calls(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        after = request.url.params.get("cursor")
        body: dict[str, Any] = (
            {"data": [ENTRY], "next_cursor": "7"} if after is None else {"data": [], "next_cursor": None}
        )
        return httpx.Response(200, json=body)

    def connect(_: Any) -> Api:
        return Api(Settings("http://api.test", "k"), transport=httpx.MockTransport(handler))

    monkeypatch.setattr(audit_command, "connect", connect)
    monkeypatch.setenv("COLUMNS", "200")  # rich's width: no cell folded over two lines
    return seen


def test_audit_prints_a_table_of_who_did_what(
    api_calls: list[httpx.Request], capsys: pytest.CaptureFixture[str]
) -> None:
    assert "audit" in NAMES
    assert run(["audit", "--operation", "suspend", "--scope", "campaign=spring", "--result", "accepted"]) == 0
    [request] = api_calls
    assert request.url.path == "/api/admin/audit"
    assert dict(request.url.params) == {
        "operation": "suspend",
        "scope": "campaign=spring",
        "result": "accepted",
        "limit": "50",
    }
    out, err = capsys.readouterr()
    for text in (
        "2026-12-02 11:59:00",
        "acme (3f2a9c0d1e2b4a5c)",
        "suspend",
        "tenant=acme campaign=spring",
        "too fast",
        "accepted 202",
    ):
        assert text in out, text
    assert "--cursor 7" in err


def test_audit_json_follows_every_page(api_calls: list[httpx.Request], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["audit", "--all", "--json"]) == 0
    assert [r.url.params.get("cursor") for r in api_calls] == [None, "7"]
    assert json.loads(capsys.readouterr().out) == {"data": [ENTRY], "next_cursor": None}


def test_a_bad_result_is_a_usage_error(api_calls: list[httpx.Request], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["audit", "--result", "maybe"]) == EXIT_BAD_REQUEST
    assert api_calls == []
    assert "accepted or refused" in capsys.readouterr().err
