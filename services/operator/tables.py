"""Output: aligned tables for people, JSON for scripts. The formatting helpers are pure."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

Row = dict[str, Any]


def age(seconds: float | None) -> str:
    """A duration as its two largest units: 45s, 3m12s, 2h05m, 4d03h."""
    if seconds is None:
        return "-"
    s = max(int(seconds), 0)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{s:02d}s"
    return f"{s}s"


def when(value: str | None) -> str:
    """An RFC 3339 time from the API as local-agnostic UTC text to the second."""
    if not value:
        return "-"
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return value
    return at.strftime("%Y-%m-%d %H:%M:%S")


def cell(value: Any) -> str:
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, list):
        return ",".join(cell(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k}={cell(v)}" for k, v in value.items())
    return str(value)


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    get: Callable[[Row], Any]
    justify: Literal["left", "right"] = "left"


def field(name: str, header: str | None = None, *, right: bool = False) -> Column:
    return Column(header or name, lambda r: r.get(name), "right" if right else "left")


def at(name: str, header: str | None = None) -> Column:
    return Column(header or name, lambda r: when(r.get(name)))


class Output:
    """Where results go: `as_json` prints the API's data as it came; otherwise rich tables on stdout."""

    def __init__(self, as_json: bool, console: Console | None = None) -> None:
        self.as_json = as_json
        self.console = console or Console(soft_wrap=False)

    def json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")

    def table(self, columns: Sequence[Column], rows: Iterable[Row], title: str | None = None) -> None:
        t = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)
        for c in columns:
            t.add_column(c.header, justify=c.justify, overflow="fold")
        count = 0
        for row in rows:
            t.add_row(*(cell(c.get(row)) for c in columns))
            count += 1
        if count == 0:
            self.console.print(f"{title + ': ' if title else ''}(none)")
        else:
            self.console.print(t)

    def pairs(self, values: Sequence[tuple[str, Any]], title: str | None = None) -> None:
        self.table(
            [Column("field", lambda r: r["k"]), Column("value", lambda r: r["v"])],
            [{"k": k, "v": v} for k, v in values],
            title,
        )

    def line(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False)
