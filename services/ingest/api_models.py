"""The HTTP API's contract: what each route answers (`response_model=`), every status it can give (`problems`) and
the bodies it takes (`json_body`), so that /openapi.json describes the service as it behaves. The routes build
their answers by hand (queue_report, webhook_api, inject); the schemathesis run (tests/e2e/test_api_fuzz.py)
holds them to these models.

Request bodies are read and parsed by hand (problems.read_json: hostile JSON is refused before pydantic sees
it), so FastAPI cannot see them: `json_body` declares them with `openapi_extra`, and `install` puts their models
and the Problem model in the document's components.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, WithJsonSchema
from pydantic.json_schema import models_json_schema

from mailstream.core.bounce_classify import BounceType
from mailstream.events.records import (
    MessageStatus,
    QueueAction,
    QueueSuspension,
    SmtpResponse,
    TransactionStatus,
    WebhookEventType,
    WebhookOutcome,
)
from mailstream.ingest.problems import PROBLEM_JSON

_COMPONENTS = "#/components/schemas/{model}"


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldError(Answer):
    field: str
    message: str


class Problem(Answer):
    """RFC 9457 problem details, as problems.Problem writes them."""

    type: Literal["about:blank"]
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None


class TransactionRef(Answer):
    id: str
    recipient: str
    queue: str
    status_url: str


class Refusal(Answer):
    """A recipient refused at submission (suppressed, the tenant's policy, a queue's state, its metadata),
    classified as stage 1 classifies every other end."""

    recipient: str
    error: str
    bounce_classification: str
    bounce_type: BounceType


class InjectAnswer(Answer):
    """KumoMTA's answer, plus one transaction per accepted recipient and each refusal classified."""

    success_count: int
    fail_count: int
    failed_recipients: list[str]
    errors: list[str]
    refusals: list[Refusal]
    transactions: list[TransactionRef]


class Transaction(TransactionStatus):
    """The transaction as a long-running operation (AIP-151): its status record, named, with `done`."""

    name: str
    done: bool
    last_response: SmtpResponse | None


class CancelAnswer(Answer):
    name: str
    cancel_requested: bool
    status: MessageStatus
    done: bool


class Scope(Answer):
    queue: str | None = None
    tenant: str | None = None
    campaign: str | None = None
    domain: str | None = None


class OperationResult(Answer):
    """QueueOperationResult (email-queue-model.md §2.3), with the operation's id and whether every partition that
    owns its messages has answered."""

    id: str
    success: bool
    operation: str
    affected_messages: int
    affected_queues: list[str]
    errors: list[str]
    timestamp: datetime
    done: bool
    partitions_answered: int
    partitions_expected: int


class CommandAnswer(Answer):
    """A queue command on its way to scheduler stage 1 (applied in order with the tenant's other work)."""

    id: str
    operation: QueueAction
    scope: Scope
    reason: str | None
    until: datetime | None
    timestamp: datetime


class SendWindowState(Answer):
    open: bool
    closes_at: datetime | None
    next_open: datetime | None


class SlidingWindowState(Answer):
    limit: int
    span_seconds: float
    used: int
    next_free: datetime | None


class ShapingState(Answer):
    """An adaptive-shaping action in force (`shaping.rules`): on an egress path, or on a tenant's (campaign's)
    scheduled queues for a domain."""

    id: str
    rule: str
    action: str
    path: str | None
    tenant: str | None
    campaign: str | None
    domain: str | None
    queue: str | None
    max_message_rate: str | None
    connection_limit: int | None
    reason: str
    since: datetime
    until: datetime | None


class ServerRow(Answer):
    uuid: str
    name: str
    daily_limit: int | None
    daily_used: int
    daily_remaining: int | None
    from_email: str | None
    day: str
    timezone: str
    resets_at: datetime | None
    send_window: SendWindowState | None
    sliding_window: SlidingWindowState | None
    as_of: datetime | None
    shaping: list[ShapingState]  # actions in force on the source's paths


class Servers(Answer):
    data: list[ServerRow]


class Totals(Answer):
    total_queued: int
    total_sending: int
    total_sent: int
    total_failed: int
    by_status: dict[str, int]


class CampaignRow(Totals):
    tenant: str | None
    campaign: str | None
    egress_pool: str


class Completion(Answer):
    at: datetime | None
    phrase: str
    sending_days: int
    backlog: int
    suspended_not_counted: int
    basis: str


class StatsReport(Totals):
    campaigns: list[CampaignRow]
    suspensions: list[QueueSuspension]
    estimated_completion: Completion
    as_of: datetime | None


class Stats(Answer):
    data: StatsReport


class Suspensions(Answer):
    data: list[QueueSuspension]
    shaping: list[ShapingState]  # adaptive shaping's actions in force: paths, and queues (also in data if suspended)


class WebhookEndpoint(Answer):
    """An endpoint; `created_at` and `created_by` only for those made by API (`source` "api")."""

    id: str
    name: str
    tenant: str | None
    url: str
    events: list[WebhookEventType]
    retry_for_seconds: float
    timeout_seconds: float
    created_at: datetime | None = None
    created_by: str | None = None
    source: Literal["api", "config"]
    attempts_url: str


class CreatedWebhook(WebhookEndpoint):
    secret: str  # shown once, here


class WebhookEndpoints(Answer):
    endpoints: list[WebhookEndpoint]


class WebhookAttempt(Answer):
    event_id: str
    event_type: WebhookEventType
    transaction_id: str
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: int
    attempted_at: datetime
    outcome: WebhookOutcome
    given_up: bool


class WebhookAttempts(Answer):
    endpoint_id: str
    attempts: list[WebhookAttempt]


class Health(Answer):
    status: Literal["ok"]


class Ready(Answer):
    status: Literal["ready"]


def _header(description: str, *, required: bool = True, integer: bool = False) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": "integer" if integer else "string"}}


_RETRY_AFTER = _header("seconds to wait before retrying", integer=True)
_ERRORS: dict[int, tuple[str, dict[str, Any]]] = {
    400: ("The body is not JSON, or a header is malformed", {}),
    401: (
        "No API key, or an unknown one",
        {"WWW-Authenticate": _header("the Bearer challenge")},
    ),
    403: ("This API key may not act on what the request names", {}),
    404: ("Nothing by that id is visible to this API key", {}),
    408: ("The body did not arrive in time", {}),
    409: ("The request conflicts with the current state", {}),
    413: ("The body (or what it expands to) is larger than allowed", {}),
    422: ("A field is invalid: `errors` names each", {}),
    429: ("This API key's rate limit or cap on requests in progress is reached", {"Retry-After": _RETRY_AFTER}),
    503: (
        "The event log is not accepting writes (nothing was accepted), or the replica is not ready",
        {"Retry-After": _RETRY_AFTER},
    ),
}


def problems(*codes: int | tuple[int, str], retry_after: tuple[int, ...] = ()) -> dict[int | str, dict[str, Any]]:
    """`responses=` for the error answers a route gives: each a Problem (application/problem+json). A code may
    come with the route's own description; `retry_after` adds an optional Retry-After to codes that have none."""
    out: dict[int | str, dict[str, Any]] = {}
    for item in codes:
        code, description = item if isinstance(item, tuple) else (item, _ERRORS[item][0])
        headers = dict(_ERRORS[code][1])
        if code in retry_after:
            headers["Retry-After"] = {**_RETRY_AFTER, "required": False}
        out[code] = {"description": description, "content": {PROBLEM_JSON: {"schema": _ref(Problem)}}}
        if headers:
            out[code]["headers"] = headers
    return out


_BODIES: list[type[BaseModel]] = [Problem]


def query(*names: str) -> dict[str, Any]:
    """`openapi_extra=` declaring string query parameters the route reads by hand."""
    return {"parameters": [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in names]}


# What parse_duration takes: "2h", "30 minutes", or a number of seconds.
DURATION = WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "number"}], "description": "'2h', or seconds"})


def json_body(model: type[BaseModel], *, required: bool = True, example: Any = None) -> dict[str, Any]:
    """`openapi_extra=` declaring a JSON body the route reads by hand, validated as `model`; `example`, a body
    that it accepts (the fuzzer's first case: one that gets past validation)."""
    if model not in _BODIES:
        _BODIES.append(model)
    media: dict[str, Any] = {"schema": _ref(model)}
    if example is not None:
        media["example"] = example
    return {"requestBody": {"required": required, "content": {"application/json": media}}}


INJECT_EXAMPLE = {
    "envelope_sender": "news@acme.test",
    "recipients": [{"email": "ann@example.test", "substitutions": {"name": "Ann"}}],
    "content": {"subject": "Hello {{ name }}", "text_body": "Hello {{ name }}, the spring catalogue is out."},
}
WEBHOOK_EXAMPLE = {"name": "outcomes", "url": "https://hooks.acme.test/mail", "events": ["delivered", "bounced"]}


def links(source: str, *targets: tuple[str, str, str]) -> dict[str, Any]:
    """OpenAPI links from an answer to the operations (path, method, path parameter) that take `source` (a
    runtime expression such as "$response.body#/id"): a client's next step, and the fuzzer's stateful runs."""
    return {
        f"{method}{path}".replace("/", "_").replace("{", "").replace("}", ""): {
            "operationRef": "#/paths/" + quote(path.replace("~", "~0").replace("/", "~1")) + f"/{method}",
            "parameters": {parameter: source},
        }
        for path, method, parameter in targets
    }


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _COMPONENTS.format(model=model.__name__)}


def install(app: FastAPI) -> None:
    """Make `app.openapi()` add the hand-read bodies' models, the bearer scheme, `security` on every operation
    that can answer 401, and what the listener answers before any route (http_guard): 503 past
    `ingest.max_connections`, 408 for a body slower than `ingest.body_timeout`."""

    listener = problems(
        (408, "The body did not arrive within ingest.body_timeout; nothing was done"),
        (503, "The replica has ingest.max_connections connections open"),
    )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
            _, defs = models_json_schema([(m, "validation") for m in _BODIES], ref_template=_COMPONENTS)
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in defs.get("$defs", {}).items():
                if name in schemas and schemas[name] != schema:
                    raise RuntimeError(f"two models named {name} in the OpenAPI document")
                schemas[name] = schema
            doc["components"]["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
            for operations in doc["paths"].values():
                for operation in operations.values():
                    responses = operation["responses"]
                    if "401" in responses:
                        operation["security"] = [{"apiKey": []}]
                    if "requestBody" in operation:
                        responses.setdefault("408", listener[408])
                    responses.setdefault("503", listener[503])
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
