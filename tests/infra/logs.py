"""Reading a service's structured (JSON lines) log as a test's witness."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def log_events(log: Path, **match: Any) -> list[dict[str, Any]]:
    """The JSON entries of `log` whose fields equal every `match` item, in order; other lines are skipped."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and all(entry.get(k) == v for k, v in match.items()):
            found.append(entry)
    return found
