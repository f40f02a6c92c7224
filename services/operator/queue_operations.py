"""The one-off queue operations of POST /api/queue/operations: rebind (to a queue or a pool), retry now, purge and
set-priority, on a scope (--queue, --tenant, --campaign, --domain) or on messages (--id, repeated); `operation`
reads a result again by its id.

Each prints the API's QueueOperationResult: the messages and queues affected, the errors, when, and whether every
partition owning the messages answered within --wait (if not, `mailstream operation ID` reads it later). rebind and
purge ask before they act unless --yes (purge ends the mail; a rebind moves it); retry and set-priority do not.
suspend, resume, bounce and cancel keep their own routes (operations.py): those answer the control they set, which
`suspensions` lists and `resume` names.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mailstream.operator.app import Campaign, Domain, Json, Queue, Tenant, app, connect, describe, output, scope_of
from mailstream.operator.client import EXIT_BAD_REQUEST, ApiError
from mailstream.operator.operations import Yes, _confirm
from mailstream.operator.tables import Output, field, when

Ids = Annotated[list[str] | None, typer.Option("--id", help="A message (transaction) id; repeat it for several.")]
Reason = Annotated[str | None, typer.Option(help="Why (kept in the audit trail; a purge's in the final reason).")]
Wait = Annotated[float, typer.Option(help="Seconds to wait for every partition's answer (0 to 30).")]
WAIT = 20.0
SCOPE_FIELDS = ("queue_name", "tenant", "campaign", "domain")


def operation_body(
    operation: str,
    *,
    queue: str | None,
    tenant: str | None,
    campaign: str | None,
    domain: str | None,
    ids: list[str] | None,
    reason: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The QueueOperation request (pure): a scope or message ids, not both; the unset fields left out."""
    scope = scope_of(queue, tenant, campaign, domain)
    if bool(scope) == bool(ids):
        raise ApiError("name a scope (--queue, --tenant, --campaign, --domain) or --id, not both", EXIT_BAD_REQUEST)
    body: dict[str, Any] = {"operation": operation}
    if scope:
        body |= {("queue_name" if k == "queue" else k): v for k, v in scope.items()}
    else:
        body["message_ids"] = list(dict.fromkeys(ids or ()))
    if reason:
        body["reason"] = reason
    if metadata := {k: v for k, v in (metadata or {}).items() if v is not None}:
        body["metadata"] = metadata
    return body


def target_of(body: dict[str, Any]) -> str:
    """What the confirmation names: the scope, or how many messages."""
    if "message_ids" in body:
        n = len(body["message_ids"])
        return f"{n} message{'s' if n != 1 else ''}"
    return describe({("queue" if k == "queue_name" else k): v for k, v in body.items() if k in SCOPE_FIELDS})


def print_result(out: Output, answer: dict[str, Any]) -> None:
    """A QueueOperationResult as a table (each error on a row of its own), or the API's JSON."""
    if out.as_json:
        out.json(answer)
        return
    done = answer.get("done", True)
    out.pairs(
        [
            ("operation", answer.get("operation")),
            ("id", answer.get("id")),
            ("affected_messages", answer.get("affected_messages")),
            ("affected_queues", answer.get("affected_queues")),
            ("errors", len(answer.get("errors") or [])),
            ("timestamp", when(answer.get("timestamp"))),
            ("success", answer.get("success")),
            ("done", f"{done} ({answer.get('partitions_answered')}/{answer.get('partitions_expected')} partitions)"),
        ],
        "result",
    )
    errors = answer.get("errors") or []
    if errors:
        out.table([field("error")], [{"error": e} for e in errors], "errors")
    if not done:
        out.line(f"not every partition has answered yet: mailstream operation {answer.get('id')}")


def _operate(ctx: typer.Context, body: dict[str, Any], wait: float, as_json: bool) -> None:
    with connect(ctx) as api:
        answer = api.call("POST", "/api/queue/operations", params={"wait": wait}, body=body)
    print_result(output(as_json), answer)


@app.command()
def rebind(
    ctx: typer.Context,
    to_queue: Annotated[str | None, typer.Option(help="The queue to move to (same tenant and domain).")] = None,
    to_pool: Annotated[str | None, typer.Option(help="The egress pool to send through.")] = None,
    queue: Queue = None,
    tenant: Tenant = None,
    campaign: Campaign = None,
    domain: Domain = None,
    ids: Ids = None,
    reason: Reason = None,
    wait: Wait = WAIT,
    yes: Yes = False,
    as_json: Json = False,
) -> None:
    """Move queued mail to another scheduled queue and/or egress pool (its id and status stay)."""
    if to_queue is None and to_pool is None:
        raise ApiError("name where to: --to-queue and/or --to-pool", EXIT_BAD_REQUEST)
    body = operation_body(
        "rebind", queue=queue, tenant=tenant, campaign=campaign, domain=domain, ids=ids, reason=reason,
        metadata={"queue": to_queue, "egress_pool": to_pool},
    )  # fmt: skip
    where = " and ".join(f"{k} {v}" for k, v in (("queue", to_queue), ("pool", to_pool)) if v)
    _confirm(f"rebind {target_of(body)} to {where}", yes)
    _operate(ctx, body, wait, as_json)


@app.command()
def retry(
    ctx: typer.Context,
    queue: Queue = None,
    tenant: Tenant = None,
    campaign: Campaign = None,
    domain: Domain = None,
    ids: Ids = None,
    reason: Reason = None,
    wait: Wait = WAIT,
    as_json: Json = False,
) -> None:
    """Make deferred mail due now (the next attempt without waiting out its retry interval)."""
    body = operation_body("retry", queue=queue, tenant=tenant, campaign=campaign, domain=domain, ids=ids, reason=reason)
    _operate(ctx, body, wait, as_json)


@app.command()
def purge(
    ctx: typer.Context,
    queue: Queue = None,
    tenant: Tenant = None,
    campaign: Campaign = None,
    domain: Domain = None,
    ids: Ids = None,
    reason: Reason = None,
    wait: Wait = WAIT,
    yes: Yes = False,
    as_json: Json = False,
) -> None:
    """End queued mail now: cancelled, logged as an AdminBounce whose reason says purged; no DSN."""
    body = operation_body("purge", queue=queue, tenant=tenant, campaign=campaign, domain=domain, ids=ids, reason=reason)
    _confirm(f"purge every queued message of {target_of(body)}", yes)
    _operate(ctx, body, wait, as_json)


@app.command("set-priority")
def set_priority(
    ctx: typer.Context,
    priority: Annotated[int, typer.Argument(min=0, max=10, help="0 (lowest) to 10.")],
    queue: Queue = None,
    tenant: Tenant = None,
    campaign: Campaign = None,
    domain: Domain = None,
    ids: Ids = None,
    reason: Reason = None,
    wait: Wait = WAIT,
    as_json: Json = False,
) -> None:
    """Set the priority queued mail waits with (higher goes first)."""
    body = operation_body(
        "set_priority", queue=queue, tenant=tenant, campaign=campaign, domain=domain, ids=ids, reason=reason,
        metadata={"priority": priority},
    )  # fmt: skip
    _operate(ctx, body, wait, as_json)


@app.command()
def operation(
    ctx: typer.Context, operation_id: Annotated[str, typer.Argument(metavar="ID")], as_json: Json = False
) -> None:
    """A queue operation's result again, by its id (results are kept a day)."""
    with connect(ctx) as api:
        print_result(output(as_json), api.get(f"/api/queue/operations/{operation_id}"))
