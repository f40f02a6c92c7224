"""The queue controls (suspend, resume, bounce) and cancel, on their own routes, and the suppression lists; the
one-off operations of POST /api/queue/operations (rebind, retry, purge, set-priority) are in queue_operations.

Each of these asks before it acts unless --yes; what it prints is the API's answer (the control set, its id and
scope).
"""

from __future__ import annotations

from typing import Annotated

import typer

from mailstream.operator.app import Campaign, Domain, Json, Queue, Tenant, app, connect, describe, output, scope_of
from mailstream.operator.client import EXIT_BAD_REQUEST, ApiError
from mailstream.operator.tables import at, field

Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
Reason = Annotated[str | None, typer.Option(help="Why (kept with the control and shown in suspensions).")]
Duration = Annotated[str | None, typer.Option(help="How long it lasts: 2h, 30 minutes, or seconds.")]


def _confirm(what: str, yes: bool) -> None:
    if not yes:
        typer.confirm(f"{what}?", abort=True, err=True)


def _scope(queue: str | None, tenant: str | None, campaign: str | None, domain: str | None) -> dict[str, str]:
    scope = scope_of(queue, tenant, campaign, domain)
    if not scope:
        raise ApiError("name at least one of --queue, --tenant, --campaign, --domain", EXIT_BAD_REQUEST)
    return scope


def _answer(as_json: bool, answer: dict[str, object]) -> None:
    out = output(as_json)
    if out.as_json:
        out.json(answer)
    else:
        out.pairs(list(answer.items()))


@app.command()
def suspend(
    ctx: typer.Context,
    queue: Queue = None,
    tenant: Tenant = None,
    campaign: Campaign = None,
    domain: Domain = None,
    reason: Reason = None,
    duration: Duration = None,
    yes: Yes = False,
    as_json: Json = False,
) -> None:
    """Hold a scope's mail (it stays queued) until resumed or the duration ends."""
    scope = _scope(queue, tenant, campaign, domain)
    _confirm(f"suspend {describe(scope)}", yes)
    body = {**scope, "reason": reason, "duration": duration}
    with connect(ctx) as api:
        _answer(as_json, api.call("POST", "/api/admin/suspend", body={k: v for k, v in body.items() if v}))


@app.command()
def resume(
    ctx: typer.Context,
    queue: Queue = None,
    tenant: Tenant = None,
    campaign: Campaign = None,
    domain: Domain = None,
    yes: Yes = False,
    as_json: Json = False,
) -> None:
    """Lift the suspension (or drain) on exactly this scope."""
    scope = _scope(queue, tenant, campaign, domain)
    _confirm(f"resume {describe(scope)}", yes)
    with connect(ctx) as api:
        _answer(as_json, api.call("DELETE", "/api/admin/suspend", body=scope))


@app.command()
def bounce(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option(help="Why (required, as KumoMTA requires it).")],
    queue: Queue = None,
    tenant: Tenant = None,
    campaign: Campaign = None,
    domain: Domain = None,
    duration: Annotated[str | None, typer.Option(help="Also bounce what arrives for this long.")] = None,
    yes: Yes = False,
    as_json: Json = False,
) -> None:
    """Fail every message of a scope now (AdminBounce), and what arrives for --duration."""
    scope = _scope(queue, tenant, campaign, domain)
    _confirm(f"bounce every message of {describe(scope)}", yes)
    body = {**scope, "reason": reason, **({"duration": duration} if duration else {})}
    with connect(ctx) as api:
        _answer(as_json, api.call("POST", "/api/admin/bounce", body=body))


@app.command()
def cancel(
    ctx: typer.Context,
    transaction_id: Annotated[str, typer.Argument(metavar="ID")],
    reason: Reason = None,
    yes: Yes = False,
    as_json: Json = False,
) -> None:
    """Cancel one transaction (nothing happens to one already final)."""
    _confirm(f"cancel {transaction_id}", yes)
    with connect(ctx) as api:
        body = {"reason": reason} if reason else {}
        _answer(as_json, api.call("POST", f"/api/transactions/{transaction_id}/cancel", body=body))


suppressions = typer.Typer(help="A tenant's suppression list: list, add, remove.", no_args_is_help=True)
app.add_typer(suppressions, name="suppressions")
SUPPRESSION_COLUMNS = [field("address"), field("tenant"), field("source"), field("reason"), at("created_at", "since"),
                       at("expires_at", "expires"), field("created_by", "by")]  # fmt: skip


@suppressions.command("list")
def list_(
    ctx: typer.Context,
    tenant: Tenant = None,
    search: Annotated[str | None, typer.Option(help="Part of the address.")] = None,
    domain: Domain = None,
    source: Annotated[str | None, typer.Option(help="bounce, complaint or api.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many (default: all).")] = None,
    as_json: Json = False,
) -> None:
    """Entries in force, by address."""
    params = {"tenant": tenant, "search": search, "domain": domain, "source": source}
    with connect(ctx) as api:
        rows = list(api.pages("/api/suppressions", "suppressions", params, limit))
    out = output(as_json)
    out.json(rows) if out.as_json else out.table(SUPPRESSION_COLUMNS, rows, "suppressions")


@suppressions.command()
def add(
    ctx: typer.Context,
    addresses: Annotated[list[str], typer.Argument(metavar="ADDRESS...")],
    tenant: Tenant = None,
    reason: Reason = None,
    expires_at: Annotated[str | None, typer.Option(help="RFC 3339 time it ends (default: until removed).")] = None,
    as_json: Json = False,
) -> None:
    """Add addresses (applied by the scheduler within moments)."""
    entry = {k: v for k, v in (("reason", reason), ("expires_at", expires_at)) if v}
    body: dict[str, object] = {"entries": [{"address": a, **entry} for a in addresses]}
    if tenant:
        body["tenant"] = tenant
    with connect(ctx) as api:
        rows = api.call("POST", "/api/suppressions", body=body)["accepted"]
    out = output(as_json)
    out.json(rows) if out.as_json else out.table(SUPPRESSION_COLUMNS, rows, "accepted")


@suppressions.command()
def remove(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(metavar="ADDRESS")],
    tenant: Tenant = None,
    yes: Yes = False,
) -> None:
    """Take an address off the list."""
    _confirm(f"remove {address} from {tenant or 'the'} suppression list", yes)
    with connect(ctx) as api:
        api.call("DELETE", f"/api/suppressions/{address}", params={"tenant": tenant})
    output(False).line(f"removed {address}")
