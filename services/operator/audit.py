"""`mailstream audit`: the audit trail (GET /api/admin/audit), newest first, with its filters."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from mailstream.operator.app import Json, Tenant, app, connect, output
from mailstream.operator.client import EXIT_BAD_REQUEST, ApiError
from mailstream.operator.options import time_param
from mailstream.operator.tables import Column, Row, at, field

AUDIT_COLUMNS = [
    at("at"),
    Column("actor", lambda r: "admin" if r.get("admin") else f"{r.get('actor_tenant') or '-'} ({r.get('actor')})"),
    field("operation"),
    Column("scope", lambda r: " ".join(f"{k}={v}" for k, v in (r.get("scope") or {}).items())),
    field("reason"),
    Column("result", lambda r: f"{r.get('result')} {r.get('status')}"),
    field("affected", right=True),
    field("problem"),
]


def audit_params(
    now: datetime,
    *,
    since: str | None,
    until: str | None,
    actor: str | None,
    operation: str | None,
    scope: str | None,
    result: str | None,
    tenant: str | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    """The query of GET /api/admin/audit from the options (times as RFC 3339 or a span ago: 2h, 1d)."""
    if result is not None and result not in ("accepted", "refused"):
        raise ValueError("--result is accepted or refused")
    return {
        "since": time_param(since, now),
        "until": time_param(until, now),
        "actor": actor,
        "operation": operation,
        "scope": scope,
        "result": result,
        "tenant": tenant,
        "limit": limit,
        "cursor": cursor,
    }


Opt = Annotated[str | None, typer.Option()]


@app.command()
def audit(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="RFC 3339 time, or a span ago: 2h, 1d.")] = None,
    until: Opt = None,
    actor: Annotated[str | None, typer.Option(help="A key id, or a tenant.")] = None,
    operation: Annotated[str | None, typer.Option(help="suspend, resume, bounce, cancel, ...")] = None,
    scope: Annotated[str | None, typer.Option(help="In a scope: field=value, e.g. campaign=spring.")] = None,
    result: Annotated[str | None, typer.Option(help="accepted or refused.")] = None,
    tenant: Tenant = None,
    limit: Annotated[int, typer.Option(help="Entries per page.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="Start at this page (`next_cursor` of the one before).")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow the cursor through every page.")] = False,
    as_json: Json = False,
) -> None:
    """Who did what to which queues, and the result: every operation and control made through the API."""
    try:
        params = audit_params(
            datetime.now(UTC),
            since=since,
            until=until,
            actor=actor,
            operation=operation,
            scope=scope,
            result=result,
            tenant=tenant,
            limit=limit,
            cursor=cursor,
        )
    except ValueError as exc:
        raise ApiError(str(exc), EXIT_BAD_REQUEST) from None
    with connect(ctx) as api:
        if all_pages:
            found, after = list(api.pages("/api/admin/audit", "data", params, None)), None
        else:
            page = api.call("GET", "/api/admin/audit", params=params)
            found, after = page["data"], page.get("next_cursor")
    out = output(as_json)
    if out.as_json:
        out.json({"data": found, "next_cursor": after})
        return
    rows: list[Row] = found
    out.table(AUDIT_COLUMNS, rows, "audit")
    if after:
        print(f"more: --cursor {after}  (or --all)", file=sys.stderr)
