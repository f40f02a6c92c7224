"""A request body's JSON, refused where it could only fail later: nesting past `MAX_DEPTH`, integers longer than
`MAX_INT_DIGITS`, numbers no JSON peer can read (NaN, Infinity, 1e999) and strings holding a lone surrogate (the
`\\ud800` escape parses, but no UTF-8 encoder, Avro or Kafka, will take it). Pure: bytes in, value or errors out.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32  # an inject request's own structure needs 4 levels; the rest is the caller's data
MAX_INT_DIGITS = 40  # past 128 bits: no mail system's number, and Python refuses to print past 4,300 digits
MAX_ERRORS = 20


class JsonBodyError(ValueError):
    """Unusable JSON: `status` 400 when it cannot be parsed at all, 422 with `errors` [(field, message)] when
    parts of it cannot be used."""

    def __init__(self, status: int, message: str, errors: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.errors = status, errors or []


class _Unusable(str):
    """What the parser leaves where a number no one can use was written; the walk reports it with its place."""

    __slots__ = ()


def _int(text: str) -> int | _Unusable:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        return _Unusable(f"an integer of {digits} digits; at most {MAX_INT_DIGITS}")
    return int(text)


def _float(text: str) -> float | _Unusable:
    value = float(text)
    return value if math.isfinite(value) else _Unusable(f"number {text[:20]} is out of range")


def _constant(name: str) -> _Unusable:
    return _Unusable(f"{name} is not a JSON number")


def parse(raw: bytes | bytearray) -> Any:
    try:
        value = json.loads(raw, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:
        raise JsonBodyError(400, f"request body is nested more than {MAX_DEPTH} levels deep") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise JsonBodyError(400, f"request body is not JSON: {exc}") from None
    errors = problems(value)
    if errors:
        raise JsonBodyError(422, f"{errors[0][0]}: {errors[0][1]}", errors)
    return value


def problems(value: Any) -> list[tuple[str, str]]:
    """(field, message) for each unusable part of parsed JSON, at most MAX_ERRORS; iterative, so any depth."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack and len(found) < MAX_ERRORS:
        item, path, depth = stack.pop()
        if isinstance(item, _Unusable):
            found.append((path or "(body)", str(item)))
        elif isinstance(item, str):
            if _has_surrogate(item):
                found.append((path or "(body)", "holds a lone surrogate (\\ud800-\\udfff), which is not text"))
        elif isinstance(item, dict | list) and depth >= MAX_DEPTH:
            found.append((path or "(body)", f"nested more than {MAX_DEPTH} levels deep"))
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                if _has_surrogate(key):
                    found.append((f"{path}[{key!r}]", "a key holds a lone surrogate (\\ud800-\\udfff)"))
                    continue
                stack.append((child, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in reversed(list(enumerate(item))))
    return found


def _has_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
