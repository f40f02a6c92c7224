"""The webhooks section: the service's consumer groups, its retry schedule and the endpoints named in the file.

Endpoints registered through the API (`POST /api/webhooks`) live on `mail.webhooks` instead; both kinds are
delivered alike.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr, model_validator

from mailstream.config.outbound import OutboundPolicy
from mailstream.config.scheduling import HEALTH_HOST, TCP_PORT, PositiveDuration, Section
from mailstream.core.address_policy import AddressPolicy, literal_address

Port = Annotated[int, Field(ge=1, le=65535)]
EventType = Literal["delivered", "deferred", "bounced", "expired", "cancelled", "rejected", "suppressed", "feedback"]
EVENT_TYPES: tuple[EventType, ...] = (
    "delivered",
    "deferred",
    "bounced",
    "expired",
    "cancelled",
    "rejected",
    "suppressed",
    "feedback",
)
MAX_RETRY_FOR = timedelta(days=7)  # mail.events keeps 30 days; a week of retries is already more than anyone waits


def check_url(url: str) -> str:
    """An http(s) URL with a host; ValueError otherwise (the API answers 422 with it)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http or https URL with a host")
    if parts.username or parts.password:
        raise ValueError("the URL must not carry credentials: the signature authenticates the sender")
    try:
        parts.port  # noqa: B018 (parsing it is the check)
    except ValueError:
        raise ValueError(f"{url!r} has a bad port") from None
    return url


def url_refusal(url: str, policy: AddressPolicy) -> str | None:
    """Why `policy` denies the address an (already checked) URL names as its host; None if it allows it, or if the
    host is a name: that is checked against what it resolves to, on every connection (webhooks.http_post)."""
    parts = urlsplit(url)
    address = literal_address(parts.hostname or "")
    if address is None:
        return None
    why = policy.refusal(str(address), parts.port or (443 if parts.scheme == "https" else 80))
    return None if why is None else f"its host {address} ({why}) is denied by webhooks.outbound"


def check_retry_for(value: timedelta) -> timedelta:
    if value > MAX_RETRY_FOR:
        raise ValueError(f"retry_for is longer than {MAX_RETRY_FOR.days} days")
    return value


def check_timeout(value: timedelta) -> timedelta:
    if value > timedelta(minutes=5):
        raise ValueError("timeout is longer than 5 minutes")
    return value


Url = Annotated[str, AfterValidator(check_url)]
RetryFor = Annotated[PositiveDuration, AfterValidator(check_retry_for)]
Timeout = Annotated[PositiveDuration, AfterValidator(check_timeout)]


class EndpointConfig(Section):
    """An endpoint the events of one tenant (or of all) are POSTed to."""

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Names the endpoint; its id is `config-<name>`, its consumer group "
        "`<app_id>-config-<name>` (renaming it starts it afresh, from the newest events).",
    )
    tenant: str | None = Field(None, description="Whose mail it hears of; unset: every tenant's.")
    url: Url = Field(description="The http or https URL events are POSTed to (redirects are not followed).")
    secret: SecretStr = Field(min_length=16, description="Key of the `X-Mailstream-Signature` HMAC-SHA256.")
    events: list[EventType] = Field(
        min_length=1,
        description="Event types to send (README, Webhooks: the records each stands for); "
        "`suppressed` and `feedback` are accepted, but nothing produces them yet.",
    )
    retry_for: RetryFor = Field(
        timedelta(hours=24),
        description="How long an event is retried after its first "
        "failed attempt; then it is given up (recorded as `GIVEN_UP`) and the next is sent.",
    )
    timeout: Timeout = Field(
        timedelta(seconds=10), description="Time allowed for one request, from connecting to the end of the answer."
    )

    @property
    def id(self) -> str:
        """Its endpoint id, beside the API's (which never start with `config-`)."""
        return f"config-{self.name}"


class WebhooksConfig(Section):
    """Its consumer groups, retry schedule and health port, the endpoints named in the file, and how many attempts
    ingest shows."""

    app_id: str = Field(
        "mailstream-webhooks",
        description="Prefix of the consumer groups on `mail.events`, one per "
        "endpoint (`<app_id>-<endpoint id>`): replicas with the same `app_id` share each endpoint's "
        "partitions.",
    )
    web_host: str = Field("127.0.0.1", description=HEALTH_HOST)
    web_port: Port = Field(
        6069,
        description="Port of `/healthz` and Prometheus `/metrics`, on `web_host` (`--web-port` overrides it).",
        json_schema_extra=TCP_PORT,
    )
    retry_interval: PositiveDuration = Field(
        timedelta(seconds=10),
        description="Wait after an event's first failed attempt; it doubles after each "
        "further failure, jittered down by up to half.",
    )
    max_retry_interval: PositiveDuration = Field(
        timedelta(minutes=10), description="Longest wait between two attempts of one event."
    )
    attempts_kept: Annotated[int, Field(ge=1, le=10_000)] = Field(
        100,
        description="Attempts per endpoint that ingest keeps for `GET /api/webhooks/{id}/attempts` (the newest).",
        json_schema_extra={"unit": "attempts"},
    )
    endpoints: list[EndpointConfig] = Field(
        [], description="Endpoints defined here; the API lists them but cannot delete them."
    )
    outbound: OutboundPolicy = Field(
        OutboundPolicy(),
        description="Which addresses endpoints may be at: an API registration naming a denied address is refused "
        "(422), and each connection goes only to an allowed address of those the URL's host resolves to (a "
        "name that resolves to a denied one is a failed attempt). Proxies named in the environment are not used.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> WebhooksConfig:
        names = [e.name for e in self.endpoints]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise ValueError(f"two webhook endpoints are named {duplicate!r}")
        policy = self.outbound.policy()
        for endpoint in self.endpoints:
            why = url_refusal(endpoint.url, policy)
            if why is not None:
                raise ValueError(f"webhook endpoint {endpoint.name!r}: {why} (allow it in webhooks.outbound.allow)")
        return self
