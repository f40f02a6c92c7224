"""RFC 9457 problem details: every error the API gives is JSON that names what was wrong."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from mailstream.ingest.json_body import JsonBodyError, parse

PROBLEM_JSON = "application/problem+json"
_REQUIRED: Any = object()


class Problem(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.errors = errors or []
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"type": "about:blank", "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if self.errors:
            body["errors"] = self.errors
        return JSONResponse(body, status_code=self.status, media_type=PROBLEM_JSON, headers=self.headers)


def field_path(loc: tuple[int | str, ...]) -> str:
    """('recipients', 0, 'email') -> 'recipients[0].email'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(body)"


def invalid(errors: list[tuple[str, str]]) -> Problem:
    """422 naming each (field, message), the first in the detail."""
    return Problem(
        422, "Invalid request", f"{errors[0][0]}: {errors[0][1]}", [{"field": f, "message": m} for f, m in errors]
    )


def from_validation_error(exc: ValidationError) -> Problem:
    return invalid([(field_path(tuple(e["loc"])), e["msg"]) for e in exc.errors()])


def from_request_validation(errors: Any) -> Problem:
    """FastAPI's own check of path and query parameters (`?wait=soon`): the field is named without its place."""
    return invalid(
        [(field_path(tuple(e["loc"])[1:] if e["loc"][0] in _PLACES else tuple(e["loc"])), e["msg"]) for e in errors]
    )


_PLACES = ("path", "query", "header", "cookie", "body")


async def read_json(request: Request, limit: int, *, empty: Any = _REQUIRED) -> Any:
    """The request's JSON body (read_body, parse_body); `empty` is returned for an empty body, if given."""
    return parse_body(await read_body(request, limit), empty=empty)


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused with 413 past `limit` bytes (checked while reading, whatever Content-Length
    claims)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(413, "Payload too large", f"request body exceeds {limit} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise Problem(413, "Payload too large", f"request body exceeds {limit} bytes")
    return bytes(raw)


def parse_body(raw: bytes, *, empty: Any = _REQUIRED) -> Any:
    """400 if `raw` is not JSON, 422 naming the place of what JSON allows but nothing can use (json_body)."""
    if not raw and empty is not _REQUIRED:
        return empty
    try:
        return parse(raw)
    except JsonBodyError as exc:
        if exc.status == 400:
            raise Problem(400, "Malformed JSON", str(exc)) from None
        raise invalid(exc.errors) from None
