"""The read commands: queues, messages, inspect, stats, servers, suspensions."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from mailstream.operator.app import Campaign, Json, Queue, Tenant, app, connect, output
from mailstream.operator.client import EXIT_BAD_REQUEST, Api, ApiError
from mailstream.operator.options import split_list, time_param
from mailstream.operator.tables import Column, Row, age, at, field, when

LIVE = ["scheduled", "ready", "in_delivery", "suspended", "deferred"]  # not final: still in a queue

MESSAGE_COLUMNS = [
    field("id"),
    field("status"),
    field("queue_name", "queue"),
    field("recipient"),
    field("num_attempts", "tries", right=True),
    at("created_at", "created"),
    at("next_attempt_at", "next attempt"),
    Column("last reply", lambda r: (r.get("smtp_response") or {}).get("message") or r.get("last_bounce_reason")),
]


def covers(suspension: Row, row: Row) -> str | None:
    """How a control applies to a (tenant, campaign) row: "whole", "part" (it names a queue or domain in it),
    or None."""
    for name in ("tenant", "campaign"):
        if suspension.get(name) is not None and suspension[name] != row.get(name):
            return None
    return "part" if suspension.get("queue") or suspension.get("domain") else "whole"


def queue_rows(stats: Row, metrics_of: Any) -> list[Row]:
    """The stats' (tenant, campaign, pool) rows with the control in force and the oldest live message's age."""
    rows = []
    for c in stats["campaigns"]:
        state = "active"
        for s in stats["suspensions"]:
            applies = covers(s, c)
            if applies == "whole":
                state = str(s.get("state", "suspended"))
                break
            if applies == "part":
                state = f"part {s.get('state', 'suspended')}"
        m = metrics_of(c.get("tenant"), c.get("campaign"))
        depth = sum(n for status, n in c["by_status"].items() if status in LIVE)
        rows.append({**c, "state": state, "depth": depth, "oldest_age": m.get("oldest_message_age")})
    return rows


@app.command()
def queues(ctx: typer.Context, tenant: Tenant = None, as_json: Json = False) -> None:
    """Scheduled queues (by tenant, campaign and pool) with their state, depth and oldest message's age."""
    with connect(ctx) as api:
        stats = api.get("/api/queue/stats", tenant=tenant)["data"]
        rows = queue_rows(stats, lambda t, c: api.get("/api/queue/metrics", tenant_id=t, campaign_id=c))
    out = output(as_json)
    if out.as_json:
        out.json({"queues": rows, "suspensions": stats["suspensions"]})
        return
    cols = [field("tenant"), field("campaign"), field("egress_pool", "pool"), field("state"),
            field("depth", right=True), Column("oldest", lambda r: age(r["oldest_age"]) if r["depth"] else "-"),
            field("total_sending", "sending", right=True), field("total_sent", "sent", right=True),
            field("total_failed", "failed", right=True)]  # fmt: skip
    out.table(cols, rows, "queues")
    _suspension_table(out, stats["suspensions"])


def _suspension_table(out: Any, rows: list[Row]) -> None:
    cols = [field("state"), field("queue"), field("tenant"), field("campaign"), field("domain"), field("reason"),
            at("since"), at("until"), field("issued_by", "by")]  # fmt: skip
    out.table(cols, rows, "controls in force")


SHAPING_COLUMNS = [field("action"), field("rule"), field("path"), field("tenant"), field("campaign"), field("domain"),
                   field("max_message_rate", "rate"), field("connection_limit", "conns", right=True),
                   field("reason"), at("since"), at("until")]  # fmt: skip


@app.command()
def suspensions(ctx: typer.Context, tenant: Tenant = None, as_json: Json = False) -> None:
    """The suspensions, drains and bounces in force, and the adaptive-shaping actions (shaping.rules) in force."""
    with connect(ctx) as api:
        answer = api.get("/api/admin/suspensions", tenant=tenant)
    out = output(as_json)
    if out.as_json:
        out.json(answer)
        return
    _suspension_table(out, answer["data"])
    out.table(SHAPING_COLUMNS, answer.get("shaping") or [], "adaptive shaping in force")


Many = Annotated[list[str] | None, typer.Option(help="Repeat it or separate by commas.")]
Opt = Annotated[str | None, typer.Option()]
Count = Annotated[int | None, typer.Option()]


@app.command()
def messages(
    ctx: typer.Context,
    status: Many = None,
    queue_state: Many = None,
    domain: Many = None,
    sender: Opt = None,
    recipient: Opt = None,
    routing_domain: Opt = None,
    campaign: Campaign = None,
    tenant: Tenant = None,
    pool: Opt = None,
    queue: Queue = None,
    created_after: Annotated[str | None, typer.Option(help="RFC 3339 time, or a span ago: 2h, 1d.")] = None,
    created_before: Opt = None,
    scheduled_after: Opt = None,
    scheduled_before: Opt = None,
    search: Annotated[str | None, typer.Option(help="Full text over recipient, sender and subject.")] = None,
    tag: Many = None,
    min_attempts: Count = None,
    max_attempts: Count = None,
    bounce_type: Annotated[str | None, typer.Option(help="hard, soft, block, ...")] = None,
    min_size: Count = None,
    max_size: Count = None,
    priority: Count = None,
    sort: Annotated[str, typer.Option(help="Any sort field of GET /api/messages.")] = "created_at",
    desc: Annotated[bool, typer.Option("--desc/--asc", help="Order (newest first by default).")] = True,
    limit: Annotated[int, typer.Option(help="Messages per page.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="Start at this page (`next_cursor` of the one before).")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow the cursor through every page.")] = False,
    as_json: Json = False,
) -> None:
    """Search messages with every filter of GET /api/messages."""
    now = datetime.now(UTC)
    try:
        params: dict[str, Any] = {
            "status": split_list(status), "queue_state": split_list(queue_state), "domains": split_list(domain),
            "sender": sender, "recipient": recipient, "routing_domain": routing_domain, "campaign_id": campaign,
            "tenant_id": tenant, "pool_name": pool, "queue_name": queue,
            "created_after": time_param(created_after, now), "created_before": time_param(created_before, now),
            "scheduled_after": time_param(scheduled_after, now),
            "scheduled_before": time_param(scheduled_before, now),
            "search_query": search, "tags": split_list(tag), "min_attempts": min_attempts,
            "max_attempts": max_attempts, "bounce_type": bounce_type, "min_size_bytes": min_size,
            "max_size_bytes": max_size, "priority": priority, "sort_by": sort,
            "sort_order": "desc" if desc else "asc", "limit": limit, "cursor": cursor,
        }  # fmt: skip
    except ValueError as exc:
        raise ApiError(str(exc), EXIT_BAD_REQUEST) from None
    with connect(ctx) as api:
        if all_pages:
            found, after = list(api.pages("/api/messages", "messages", params, None)), None
        else:
            page = api.call("GET", "/api/messages", params=params)
            found, after = page["messages"], page.get("next_cursor")
    out = output(as_json)
    if out.as_json:
        out.json({"messages": found, "next_cursor": after})
        return
    out.table(MESSAGE_COLUMNS, found)
    if after:
        print(f"more: --cursor {after}  (or --all)", file=sys.stderr)


@app.command()
def inspect(
    ctx: typer.Context, message_id: Annotated[str, typer.Argument(metavar="ID")], as_json: Json = False
) -> None:
    """One message with its attempts (or, before the read model has it, the transaction's status)."""
    with connect(ctx) as api:
        data, kind = _message_or_status(api, message_id)
    out = output(as_json)
    if out.as_json:
        out.json(data)
        return
    attempts = data.pop("attempts", []) if kind == "message" else []
    scalars = [(k, when(v) if k.endswith("_at") else v) for k, v in data.items() if not isinstance(v, list)]
    out.pairs(scalars, f"{kind} {message_id}")
    cols = [field("attempt", "#", right=True), field("outcome"), Column("code", lambda r: r["smtp_response"]["code"]),
            Column("reply", lambda r: r["smtp_response"]["message"]), field("egress_source", "source"),
            field("peer_address", "peer"), at("completed_at", "at")]  # fmt: skip
    if kind == "message":
        out.table(cols, attempts, "attempts")


def _message_or_status(api: Api, ident: str) -> tuple[dict[str, Any], str]:
    try:
        return dict(api.get(f"/api/messages/{ident}")), "message"
    except ApiError as exc:
        if exc.code != 4:
            raise
        try:
            return dict(api.get(f"/api/transactions/{ident}")), "transaction"
        except ApiError:
            raise exc from None


@app.command()
def stats(
    ctx: typer.Context, tenant: Tenant = None, campaign: Campaign = None, queue: Queue = None, as_json: Json = False
) -> None:
    """Queue metrics and domain health for the system, a tenant, a campaign or a queue."""
    with connect(ctx) as api:
        m = api.get("/api/queue/metrics", tenant_id=tenant, campaign_id=campaign, queue_name=queue)
    out = output(as_json)
    if out.as_json:
        out.json(m)
        return
    ages = ("average_queue_time", "average_delivery_time", "oldest_message_age", "newest_message_age")
    out.pairs([(k, age(v) if k in ages else v) for k, v in m.items() if k != "domain_health_scores"], "metrics")
    cols = [field("domain"), field("score", right=True), field("bounce_rate", "bounce", right=True),
            field("deferral_rate", "deferral", right=True),
            Column("delivery time", lambda r: age(r.get("average_delivery_time")), "right"),
            at("last_successful_delivery", "last success")]  # fmt: skip
    out.table(cols, m["domain_health_scores"].values(), "domain health")


@app.command()
def servers(ctx: typer.Context, as_json: Json = False) -> None:
    """Egress sources: today's use of their daily limits, send windows, sliding windows, shaping actions in force."""
    with connect(ctx) as api:
        rows = api.get("/api/queue/servers")["data"]
    out = output(as_json)
    if out.as_json:
        out.json(rows)
        return
    cols = [field("name"), field("daily_used", "used", right=True), field("daily_limit", "limit", right=True),
            field("daily_remaining", "left", right=True), field("day"), at("resets_at", "resets"),
            Column("window", lambda r: _window(r.get("send_window"))),
            Column("sliding", lambda r: _sliding(r.get("sliding_window"))),
            Column("shaping", lambda r: len(r.get("shaping") or []), "right")]  # fmt: skip
    out.table(cols, rows, "servers")
    shaped = [{"source": r["name"], **action} for r in rows for action in r.get("shaping") or []]
    if shaped:  # the actions on each source's paths
        out.table([field("source"), *SHAPING_COLUMNS], shaped, "adaptive shaping in force")


def _window(w: Row | None) -> str:
    if not w:
        return "-"
    return f"open until {when(w.get('closes_at'))}" if w.get("open") else f"closed until {when(w.get('next_open'))}"


def _sliding(w: Row | None) -> str:
    return f"{w['used']}/{w['limit']} per {age(w['span_seconds'])}" if w else "-"
