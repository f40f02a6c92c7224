"""The dashboard's static page as ingest serves it: its security headers, no inline script or style for the CSP to
need 'unsafe-inline', text from the API never parsed as HTML, and every API route it calls one the API has.
(The page in a real browser against the running stack: tests/e2e/test_dashboard.py.)"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

from fastapi import FastAPI

from mailstream.core.clock import ManualClock
from mailstream.ingest.dashboard import CSP, FILES
from mailstream.ingest.operation_view import OperationView
from mailstream.ingest.operations_api import operations_router
from mailstream.ingest.read_model.api import read_model_router
from mailstream.ingest.read_model.store import MessageStore
from tests.infra.ingest_app import T0, IngestApp

UI = resources.files("mailstream.ingest").joinpath("ui")


def text(name: str) -> str:
    return UI.joinpath(name).read_text(encoding="utf-8")


async def test_the_page_and_its_assets_are_served_with_the_security_headers(ingest: IngestApp) -> None:
    async with ingest.client(key=None) as client:  # the page holds no data: it loads without a key
        moved = await client.get("/ui")
        assert moved.status_code == 308
        assert moved.headers["location"] == "/ui/"
        for path, media in (("/ui/", "text/html"), ("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css")):
            answer = await client.get(path)
            assert answer.status_code == 200, path
            assert answer.headers["content-type"].startswith(media)
            assert answer.headers["content-security-policy"] == CSP
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["x-frame-options"] == "DENY"
        outside = await client.get("/ui/%2e%2e/__init__.py")  # only the named files, never a path into the package
        assert outside.status_code == 404
        nothing = await client.get("/ui/secrets.txt")
        assert nothing.status_code == 404
        assert nothing.headers["content-type"] == "application/problem+json"
        data = await client.get("/api/queue/stats")
        assert data.status_code == 401  # what the page shows comes from the API, with the API's own auth


def test_the_policy_allows_this_origin_only_and_nothing_inline() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == directives["style-src"] == directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in CSP


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.links: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        self.inline += [f"{tag} {a}" for a in names if a == "style" or a.startswith("on")]
        if tag == "style":
            self.inline.append("<style>")
        if tag == "script":
            self._in_script = True
            if not names.get("src"):
                self.inline.append("<script> without src")
        self.links += [v for a, v in attrs if a in ("src", "href") and v]

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("script text")


def test_the_markup_has_no_inline_script_style_or_handler_and_links_only_its_own_files() -> None:
    markup = _Markup()
    markup.feed(text("index.html"))
    assert markup.inline == []
    assert sorted(markup.links) == ["/ui/app.css", "/ui/app.js"]
    assert {name for name in FILES if name} == {"app.js", "app.css"}


def test_the_script_never_turns_text_into_markup_or_code() -> None:
    script = text("app.js")
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert banned not in script, banned
    assert "sessionStorage" in script
    assert "localStorage" not in script  # the key goes when the tab closes


def test_every_route_the_page_calls_is_one_the_api_has(ingest: IngestApp, tmp_path: Path) -> None:
    reads = FastAPI()
    reads.include_router(read_model_router(ingest.config, MessageStore(tmp_path / "m.sqlite3"), ManualClock(T0)))
    reads.include_router(
        operations_router(
            ingest.config, ingest.capacity, ingest.statuses, OperationView(), ingest.clock, ingest.auditor
        )
    )
    paths = {**ingest.app.openapi()["paths"], **reads.openapi()["paths"]}
    script = text("app.js")
    called = set(re.findall(r'"(/api/[a-z0-9/_.-]+)"', script))
    called |= {re.sub(r"\$\{[^}]+\}", "{x}", p) for p in re.findall(r"`(/api/[^`]+)`", script)}
    templated = {re.sub(r"\{[^}]+\}", "{x}", p) for p in paths}
    assert called, "no API path found in app.js"
    assert called - templated == set()
    assert "/api/queue/operations" in called  # rebind, retry, cancel, purge, set_priority: offered when listed
