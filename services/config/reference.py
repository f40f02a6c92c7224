"""The configuration reference, rendered from the model.

    python -m mailstream.config.reference > docs/configuration.md

Each section of the file gets a heading and a table of its keys (type, unit, default, description),
all read from the pydantic fields, so the reference cannot drift from what `load_config` accepts;
`tests/unit/config/test_config_reference.py` fails when the committed file is stale.
"""

from __future__ import annotations

import socket
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from zoneinfo import ZoneInfo

import annotated_types
import yaml
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from mailstream.config import scheduling
from mailstream.config.model import Config
from mailstream.core.duration import format_duration
from mailstream.core.send_window import SendWindow
from mailstream.core.throttle import ThrottleSpec

_TYPE_NAMES: dict[Any, str] = {
    str: "string",
    int: "integer",
    bool: "boolean",
    float: "number",
    Path: "path",
    SecretStr: "secret string",
    IPv4Address: "IPv4 address",
    IPv6Address: "IPv6 address",
    timedelta: "[duration](#durations)",
    ThrottleSpec: "[rate](#rates)",
    SendWindow: "[send window](#send-windows)",
    ZoneInfo: "[time zone](#time-zones)",
}
_FACTORIES: dict[Callable[..., Any], str] = {socket.getfqdn: "this host's name (FQDN)"}

INTRO = """\
# Configuration reference

<!-- Generated from services/config by `python -m mailstream.config.reference > docs/configuration.md`;
     edit the field descriptions there, not this file (tests/unit/config/test_config_reference.py checks it). -->

Every service reads one YAML file, given with `--config FILE` (without one, the defaults below
apply). It is validated at start-up, before Kafka is contacted: an unknown key or a bad value stops
the service (exit status 2) with the path of each bad key. `deploy/config/local.yaml` is the local
stack's file and has a fuller example in its comments. The environment variable
`KAFKA_BOOTSTRAP_SERVERS` overrides `kafka.bootstrap_servers`, and `MAILSTREAM_<SECTION>__<KEY>[__<KEY>...]`
sets one key (`MAILSTREAM_SCHEDULER__WEB_HOST=0.0.0.0` sets `scheduler.web_host`; a value that starts with
`[` or `{` is a YAML list or mapping, `MAILSTREAM_INGEST__API_KEYS='[{key: ..., admin: true}]'`): how a
container takes its secrets and per-deployment keys beside a mounted file (`deploy/kubernetes/`).

A key written `a.b[]` is a list of mappings, each with the keys of its table; `tenants.<tenant>`
is a mapping from a tenant's name to its table. "Unset" means the key is absent (or `null`).

## Value formats

### Durations
`"20 minutes"`, `"1h"`, `"90s"`, `"7 days"`, `"1h30m"`: numbers with units `s`, `m`, `h`, `d`, `w`
(also spelt `sec`, `min`, `hour`, `day`, `week` and their plurals); a bare number is seconds.
Retry and expiry durations (`queues`) must be greater than zero.

### Rates
KumoMTA's throttle specs: `QUANTITY/PERIOD`, such as `"100/h"`, `"1,000/day"`, `"10/5min"`; a period
is `s`, `m`/`min`, `h`, `d` (optionally with a count). `,max_burst=N` caps how many may go back to
back after a quiet spell (default: all of `QUANTITY`); `local:` in front is accepted, as in KumoMTA.

### Send windows
A mapping `{start: "08:00", end: "18:00", timezone: Europe/Berlin, weekdays: Mon-Fri}` or the
string `"08:00-18:00 Europe/Berlin Mon-Fri"`; the time zone defaults to UTC and the weekdays to every
day (`Mon,Wed`, ranges such as `Mon-Fri`, which may wrap: `Fri-Mon`). `start` is inclusive, `end`
exclusive, in local time (DST-safe).

### Time zones
IANA names such as `UTC` or `Europe/Berlin`.
"""


@dataclass(frozen=True, slots=True)
class Section:
    """One table of the reference: a model and where it sits in the file."""

    key: str  # "egress.sources[]"; "" for the whole file
    model: type[BaseModel]
    field: FieldInfo | None  # how the parent holds it (None for the whole file)


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """(type, metadata) without Optional and Annotated layers."""
    metadata: list[Any] = []
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation, *extra = get_args(annotation)
            for item in extra:  # Field(ge=1) inside an Annotated stays a FieldInfo that holds the constraints
                metadata.extend(item.metadata if isinstance(item, FieldInfo) else [item])
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return Union[tuple(args)], metadata  # noqa: UP007  (a runtime union of the remaining types)
            annotation = args[0]
        else:
            return annotation, metadata


def _model_of(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """("", M), ("[]", M) or (".<name>", M) when a field holds a model, a list of them or a mapping to them."""
    base, _ = _unwrap(annotation)
    if isinstance(base, type) and issubclass(base, BaseModel):
        return "", base
    args = get_args(base)
    if get_origin(base) is list and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return "[]", args[0]
    if get_origin(base) is dict and isinstance(args[1], type) and issubclass(args[1], BaseModel):
        return ".<tenant>", args[1]
    return None


def sections(model: type[BaseModel] = Config, key: str = "", field: FieldInfo | None = None) -> Iterator[Section]:
    """Every table, depth first in field order."""
    yield Section(key, model, field)
    for name, info in model.model_fields.items():
        nested = _model_of(info.annotation)
        if nested is not None:
            suffix, inner = nested
            yield from sections(inner, f"{key}.{name}{suffix}" if key else f"{name}{suffix}", info)


def fields() -> Iterator[tuple[str, FieldInfo]]:
    """(dotted key, field) of every key the file may hold, sections included."""
    for section in sections():
        for name, info in section.model.model_fields.items():
            yield (f"{section.key}.{name}" if section.key else name), info


def unit(info: FieldInfo) -> str:
    extra = info.json_schema_extra
    found = extra.get("unit") if isinstance(extra, dict) else None
    return str(found) if found is not None else ""


def _constraints(metadata: list[Any], *, text: bool) -> str:
    low = next((m.ge for m in metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in metadata if isinstance(m, annotated_types.Le)), None)
    length = next((m.min_length for m in metadata if isinstance(m, annotated_types.MinLen)), None)
    if length is not None:
        return f", at least {length} characters" if text else f", at least {length}"
    if low is not None and high is not None:
        return f", {low}–{high}"
    if low is not None:
        return f" ≥ {low}"
    return ""


def type_name(info: FieldInfo) -> str:
    base, metadata = _unwrap(info.annotation)
    metadata = [*info.metadata, *metadata]
    if get_origin(base) is Literal:
        return "one of " + ", ".join(f"`{arg}`" for arg in get_args(base))
    if get_origin(base) in (Union, types.UnionType):
        return " or ".join(_TYPE_NAMES.get(arg, getattr(arg, "__name__", str(arg))) for arg in get_args(base))
    if get_origin(base) is list:
        item, _ = _unwrap(get_args(base)[0])
        if get_origin(item) is Literal:
            return "list, each one of " + ", ".join(f"`{arg}`" for arg in get_args(item))
        return f"list of {_TYPE_NAMES.get(item, item.__name__)}s"
    if base is timedelta and any(getattr(m, "func", None) is scheduling._positive_duration for m in metadata):
        return "[duration](#durations) > 0"
    name = _TYPE_NAMES.get(base, getattr(base, "__name__", str(base)))
    return name + _constraints(metadata, text=base in (str, SecretStr))


def _value(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, timedelta):
        return f"`{format_duration(value)}`"
    if isinstance(value, ZoneInfo):
        return f"`{value.key}`"
    if isinstance(value, BaseModel | list | dict):
        dumped = _dump(value)
        return f"`{yaml.safe_dump(dumped, default_flow_style=True, width=1000).strip()}`"
    return f"`{value}`"


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_defaults=True)
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


def default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        return _FACTORIES.get(info.default_factory, "computed at start-up")
    return _value(info.default)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _doc(model: type[BaseModel]) -> str:
    own = model.__dict__.get("__doc__")  # a model without a docstring of its own would show its base's
    return " ".join(own.split()) if own else ""


def _render_section(section: Section) -> list[str]:
    assert section.field is not None
    depth = 2 + section.key.count(".")
    lines = ["", f"{'#' * min(depth, 6)} `{section.key}`", ""]
    # A top-level section is named by its field ("the HTTP API"); a nested one by its model.
    top = section.key.isidentifier()
    texts = (section.field.description or "", _doc(section.model))
    about = [text for text in (texts if top else texts[::-1]) if text]
    if section.key.endswith("[]"):
        if section.field.is_required():
            least = next((m.min_length for m in section.field.metadata if isinstance(m, annotated_types.MinLen)), 0)
            about.append(f"Required: at least {least}." if least else "Required.")
        else:
            value = section.field.default
            about.append(f"Default: {_value(value)}." if value else "Default: none.")
    lines.append(" ".join(about))
    rows = [(name, info) for name, info in section.model.model_fields.items() if _model_of(info.annotation) is None]
    if rows:
        lines += ["", "| Key | Type | Unit | Default | Description |", "| --- | --- | --- | --- | --- |"]
        lines += [
            f"| `{name}` | {_cell(type_name(info))} | {_cell(unit(info))} | {_cell(default(info))} | "
            f"{_cell(info.description or '')} |"
            for name, info in rows
        ]
    return lines


def render() -> str:
    lines = [INTRO.rstrip("\n")]
    for section in sections():
        if section.key:
            lines += _render_section(section)
    return "\n".join(lines) + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
