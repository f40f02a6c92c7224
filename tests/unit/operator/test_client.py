"""The HTTP client's pure parts and its error mapping, against an in-memory transport."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from mailstream.operator.client import (
    DEFAULT_URL,
    EXIT_AUTH,
    EXIT_BAD_REQUEST,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    Api,
    ApiError,
    Settings,
    exit_code,
    load_settings,
    problem_message,
    query,
)


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, EXIT_AUTH), (403, EXIT_AUTH), (404, EXIT_NOT_FOUND), (400, EXIT_BAD_REQUEST), (422, EXIT_BAD_REQUEST),
     (503, EXIT_UNAVAILABLE)],
)  # fmt: skip
def test_exit_codes_tell_the_kinds_of_failure_apart(status: int, code: int) -> None:
    assert exit_code(status) == code


def test_a_problem_prints_title_detail_and_the_fields() -> None:
    body = {
        "title": "Invalid request",
        "status": 422,
        "detail": "bad",
        "errors": [{"field": "limit", "message": "big"}],
    }
    assert problem_message(422, body) == "Invalid request (422): bad\n  limit: big"
    assert problem_message(502, "<html>") == "HTTP 502"


def test_query_drops_unset_values_and_repeats_lists() -> None:
    got = query({"status": ["a", "b"], "sender": None, "search": "", "limit": 5, "all": True})
    assert got == [("status", "a"), ("status", "b"), ("limit", "5"), ("all", "true")]


def test_settings_come_from_flag_env_then_file(tmp_path: Path) -> None:
    file = tmp_path / "cli.toml"
    file.write_text('url = "http://file:1/"\napi_key = "from-file"\n')
    env = {"MAILSTREAM_CLI_CONFIG": str(file)}
    assert load_settings(None, env) == Settings("http://file:1", "from-file")
    env |= {"MAILSTREAM_URL": "http://env:2", "MAILSTREAM_API_KEY": "from-env"}
    assert load_settings(None, env) == Settings("http://env:2", "from-env")
    assert load_settings("http://flag:3", env).url == "http://flag:3"
    assert load_settings(None, {"MAILSTREAM_CLI_CONFIG": str(tmp_path / "none.toml")}) == Settings(DEFAULT_URL, None)


def test_a_key_file_named_in_the_config_is_read(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("secret-key\n")
    (tmp_path / "cli.toml").write_text(f'api_key_file = "{tmp_path / "key"}"\n')
    assert load_settings(None, {"MAILSTREAM_CLI_CONFIG": str(tmp_path / "cli.toml")}).api_key == "secret-key"


def _api(handler: Any) -> Api:
    return Api(Settings("http://api.test", "k"), transport=httpx.MockTransport(handler))


def test_pages_follow_the_cursor_to_the_end_or_the_limit() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer k"
        cursor = request.url.params.get("cursor")
        seen.append(cursor)
        pages = {None: ([1, 2], "c2"), "c2": ([3, 4], "c3"), "c3": ([5], None)}
        items, after = pages[cursor]
        return httpx.Response(200, json={"messages": [{"n": n} for n in items], "next_cursor": after})

    with _api(handler) as api:
        assert [m["n"] for m in api.pages("/api/messages", "messages", {}, None)] == [1, 2, 3, 4, 5]
        assert [m["n"] for m in api.pages("/api/messages", "messages", {}, 3)] == [1, 2, 3]
    assert seen == [None, "c2", "c3", None, "c2"]


def test_an_error_answer_becomes_api_error_with_its_code() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"type": "about:blank", "title": "Not found", "status": 404, "detail": "no x"})

    with _api(handler) as api, pytest.raises(ApiError, match=r"Not found \(404\): no x") as err:
        api.get("/api/messages/x")
    assert err.value.code == EXIT_NOT_FOUND


def test_no_answer_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with _api(handler) as api, pytest.raises(ApiError, match=r"cannot reach http://api\.test") as err:
        api.get("/api/queue/servers")
    assert err.value.code == EXIT_UNAVAILABLE
