"""The typer application the operator commands hang on, and what they share: the API connection, output."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mailstream.operator.client import Api, load_settings
from mailstream.operator.tables import Output

HELP = (
    "Operator commands over the ingest HTTP API (MAILSTREAM_URL, key in MAILSTREAM_API_KEY or "
    "~/.config/mailstream/cli.toml). Exit codes: 3 auth, 4 not found, 5 bad request, 6 unavailable."
)
app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, rich_markup_mode=None)

Json = Annotated[bool, typer.Option("--json", help="The API's JSON, for scripts.")]
Tenant = Annotated[str | None, typer.Option(help="Tenant (an admin key: any; a tenant's key: its own).")]
Campaign = Annotated[str | None, typer.Option(help="Campaign id.")]
Queue = Annotated[str | None, typer.Option(help="Scheduled queue name, e.g. campaign:tenant@domain.")]
Domain = Annotated[str | None, typer.Option(help="Recipient domain.")]


@app.callback()
def _root(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(help="Ingest API base URL (else MAILSTREAM_URL).")] = None,
) -> None:
    ctx.obj = {"url": url}


def connect(ctx: typer.Context) -> Api:
    root: Any = ctx.find_root().obj or {}
    return Api(load_settings(root.get("url")))


def output(as_json: bool) -> Output:
    return Output(as_json)


def scope_of(queue: str | None, tenant: str | None, campaign: str | None, domain: str | None) -> dict[str, str]:
    return {k: v for k, v in (("queue", queue), ("tenant", tenant), ("campaign", campaign), ("domain", domain)) if v}


def describe(scope: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in scope.items()) or "(no scope)"
