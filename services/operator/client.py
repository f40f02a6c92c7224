"""The HTTP API as the CLI sees it: where it is, the key, and problems mapped to exit codes.

The key comes from MAILSTREAM_API_KEY or the config file and is sent, never printed: no flag takes it, so it
stays out of shell history and `ps`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8025"  # deploy/config/local.yaml's ingest port
CONFIG_PATH = Path("~/.config/mailstream/cli.toml")

# Exit codes a script can tell apart (click uses 1 for an abort and 2 for a bad command line).
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_BAD_REQUEST = 5
EXIT_UNAVAILABLE = 6
EXIT_OTHER = 7


class ApiError(Exception):
    """An answer other than success, or no answer: what to print and the exit code that says which."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def exit_code(status: int) -> int:
    if status in (401, 403):
        return EXIT_AUTH
    if status == 404:
        return EXIT_NOT_FOUND
    if status in (400, 409, 413, 422):
        return EXIT_BAD_REQUEST
    if status in (429, 502, 503, 504):
        return EXIT_UNAVAILABLE
    return EXIT_OTHER


def problem_message(status: int, body: Any) -> str:
    """An RFC 9457 problem as one line: title, detail, and each field the API named."""
    if not isinstance(body, dict):
        return f"HTTP {status}"
    text = f"{body.get('title') or 'HTTP'} ({status})"
    if body.get("detail"):
        text += f": {body['detail']}"
    for err in body.get("errors") or []:
        if isinstance(err, dict) and err.get("field") and f"{err['field']}:" not in text:
            text += f"\n  {err['field']}: {err.get('message', '')}"
    return text


@dataclass(frozen=True, slots=True)
class Settings:
    url: str
    api_key: str | None


def load_settings(url: str | None, env: Mapping[str, str] = os.environ) -> Settings:
    """--url, else MAILSTREAM_URL, else the file's `url`, else the local stack; the key from MAILSTREAM_API_KEY,
    else the file's `api_key` (or `api_key_file`). The file: MAILSTREAM_CLI_CONFIG, else CONFIG_PATH."""
    path = Path(env.get("MAILSTREAM_CLI_CONFIG") or CONFIG_PATH).expanduser()
    file: dict[str, Any] = {}
    if path.is_file():
        try:
            file = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise ApiError(f"{path}: {exc}", EXIT_BAD_REQUEST) from None
    key = env.get("MAILSTREAM_API_KEY") or file.get("api_key")
    if key is None and file.get("api_key_file"):
        key = Path(str(file["api_key_file"])).expanduser().read_text().strip()
    base = url or env.get("MAILSTREAM_URL") or file.get("url") or DEFAULT_URL
    return Settings(url=str(base).rstrip("/"), api_key=str(key) if key else None)


def query(params: Mapping[str, Any]) -> list[tuple[str, str | int | float | bool | None]]:
    """Query parameters without the unset ones; a list repeats its name, as FastAPI reads lists."""
    out: list[tuple[str, str | int | float | bool | None]] = []
    for name, value in params.items():
        values = value if isinstance(value, list | tuple) else [value]
        out += [(name, _text(v)) for v in values if v is not None and v != ""]
    return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Api:
    def __init__(self, settings: Settings, timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self.url = settings.url
        self._http = httpx.Client(base_url=settings.url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        """The answer's JSON (None for 204), or ApiError."""
        try:
            r = self._http.request(method, path, params=query(params or {}), json=body)
        except httpx.TransportError as exc:
            raise ApiError(f"cannot reach {self.url}: {exc}", EXIT_UNAVAILABLE) from None
        if r.status_code == 204:
            return None
        try:
            data = r.json()
        except ValueError:
            data = None
        if r.is_success:
            return data
        raise ApiError(problem_message(r.status_code, data), exit_code(r.status_code))

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params)

    def pages(self, path: str, items: str, params: dict[str, Any], limit: int | None) -> Iterator[dict[str, Any]]:
        """Every item of a cursor-paged listing, following `next_cursor` until it ends or `limit` items came."""
        seen = 0
        cursor = params.get("cursor")
        while True:
            page = self.call("GET", path, params={**params, "cursor": cursor})
            for item in page[items]:
                yield item
                seen += 1
                if limit is not None and seen >= limit:
                    return
            cursor = page.get("next_cursor")
            if not cursor:
                return
