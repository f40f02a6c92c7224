"""`mailstream COMMAND ...` for the operator commands: runs the typer app and turns API errors into exit codes."""

from __future__ import annotations

import sys

import typer

from mailstream.operator import audit, events, operations, queue_operations, reads  # noqa: F401 - each registers its commands
from mailstream.operator.app import app
from mailstream.operator.client import ApiError

NAMES = (
    "queues", "messages", "inspect", "stats", "servers", "suspensions",
    "suspend", "resume", "bounce", "cancel", "rebind", "retry", "purge", "set-priority", "operation",
    "suppressions", "events", "audit",
)  # fmt: skip


def run(argv: list[str]) -> int:
    try:
        app(args=argv, prog_name="mailstream")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except ApiError as exc:
        print(f"mailstream: {exc}", file=sys.stderr)
        return exc.code
    except typer.Abort:
        return 1
    return 0
