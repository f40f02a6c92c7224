"""`mailstream servers` and `mailstream suspensions` show adaptive shaping's actions in force: the `shaping` each
source has in GET /api/queue/servers, and the `shaping` list of GET /api/admin/suspensions (an in-memory transport
here, answering as those routes do)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from mailstream.operator import reads
from mailstream.operator.client import Api, Settings
from mailstream.operator.commands import run

ACTION = {
    "id": "a1",
    "rule": "gmail-421",
    "action": "limit_path",
    "path": "mail2->gmail.com",
    "tenant": None,
    "campaign": None,
    "domain": None,
    "queue": None,
    "max_message_rate": "10/m",
    "connection_limit": 2,
    "reason": "421 4.7.0 try later",
    "since": "2026-12-03T10:00:00+00:00",
    "until": "2026-12-03T11:30:00+00:00",
}
SERVER = {"name": "mail2", "daily_used": 5, "daily_limit": 100, "daily_remaining": 95, "day": "2026-12-03"}
CONTROL = {"state": "suspended", "tenant": "acme", "campaign": "spring", "reason": "complaints"}


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the two routes answer; a test changes it."""
    answers: dict[str, Any] = {
        "/api/queue/servers": {"data": [{**SERVER, "shaping": [ACTION]}, {**SERVER, "name": "mail3", "shaping": []}]},
        "/api/admin/suspensions": {"data": [CONTROL], "shaping": [{**ACTION, "action": "suspend_tenant"}]},
    }

    def connect(_: Any) -> Api:
        transport = httpx.MockTransport(lambda r: httpx.Response(200, json=answers[r.url.path]))
        return Api(Settings("http://api.test", "k"), transport=transport)

    monkeypatch.setattr(reads, "connect", connect)
    monkeypatch.setenv("COLUMNS", "250")  # rich's width: no cell folded over two lines
    return answers


def test_servers_counts_each_sources_actions_and_lists_them(
    api: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["servers"]) == 0
    out = capsys.readouterr().out
    assert "adaptive shaping in force" in out
    [row] = [line for line in out.splitlines() if "mail2->gmail.com" in line]
    for text in ("mail2", "limit_path", "gmail-421", "10/m", "2", "421 4.7.0 try later", "2026-12-03 11:30:00"):
        assert text in row, text
    api["/api/queue/servers"]["data"][0]["shaping"] = []
    assert run(["servers"]) == 0
    assert "adaptive shaping" not in capsys.readouterr().out  # nothing in force: no table


def test_suspensions_lists_the_controls_then_the_shaping_actions(
    api: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["suspensions"]) == 0
    out = capsys.readouterr().out
    controls, shaping = out.split("adaptive shaping in force")
    assert "complaints" in controls
    assert "suspend_tenant" in shaping
    assert "421 4.7.0 try later" in shaping
    assert run(["suspensions", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == api["/api/admin/suspensions"]
    api["/api/admin/suspensions"]["shaping"] = []
    assert run(["suspensions"]) == 0
    assert "adaptive shaping in force: (none)" in capsys.readouterr().out
