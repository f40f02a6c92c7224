"""Configuration of scheduling: egress sources and pools, path shaping, queue rules and tenant limits.

Values users type (throttle specs, send windows, durations) are parsed here, at start-up, into the
frozen value types of `mailstream.core`, so a bad value fails before Kafka is contacted and the
error names its key. Descriptions and units: see `mailstream.config.model`.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from datetime import timedelta
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainValidator,
    SecretStr,
    field_validator,
    model_validator,
)

from mailstream.core.duration import format_duration, parse_duration
from mailstream.core.egress_path import EgressPath
from mailstream.core.envelope_sender import check_pattern
from mailstream.core.send_window import SendWindow
from mailstream.core.throttle import ThrottleSpec
from mailstream.events.topics import MESSAGE_LIFETIME


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


def _positive_duration(value: Any) -> timedelta:
    parsed = value if isinstance(value, timedelta) else parse_duration(value)
    if parsed <= timedelta(0):
        raise ValueError(f"duration {value!r} must be positive")
    return parsed


def _throttle(value: Any) -> ThrottleSpec:
    if isinstance(value, ThrottleSpec):
        return value
    if not isinstance(value, str):
        raise ValueError(f"throttle {value!r} must be a string such as '100/h' or '10/s,max_burst=1'")
    return ThrottleSpec.parse(value)


def _window(value: Any) -> SendWindow:
    """A window as a mapping {start, end, timezone, weekdays} or a string 'HH:MM-HH:MM [tz] [days]'."""
    if isinstance(value, SendWindow):
        return value
    if isinstance(value, str):
        parts = value.split()
        if not parts or "-" not in parts[0]:
            raise ValueError(f"send window {value!r}: expected 'HH:MM-HH:MM [timezone] [Mon-Fri]'")
        start, end = parts[0].split("-", 1)
        return SendWindow.parse(start, end, parts[1] if len(parts) > 1 else "UTC", parts[2] if len(parts) > 2 else None)
    if isinstance(value, Mapping):
        unknown = set(value) - {"start", "end", "timezone", "weekdays"}
        if unknown or "start" not in value or "end" not in value:
            raise ValueError(
                f"send window needs start and end, and may have timezone and weekdays (got {sorted(value)})"
            )
        return SendWindow.parse(
            str(value["start"]), str(value["end"]), str(value.get("timezone", "UTC")), value.get("weekdays")
        )
    raise ValueError(f"send window {value!r} must be a mapping or a string")


def _zone(value: Any) -> ZoneInfo:
    if isinstance(value, ZoneInfo):
        return value
    try:
        return ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r} (use an IANA name such as 'Europe/Berlin')") from None


PositiveDuration = Annotated[timedelta, BeforeValidator(_positive_duration)]


def _outlived_by_its_body(value: timedelta) -> timedelta:
    if value > MESSAGE_LIFETIME:
        raise ValueError(
            f"{format_duration(value)} is longer than a message may live: mail.bodies keeps bodies "
            f"{format_duration(MESSAGE_LIFETIME + timedelta(days=1))}, so at most {format_duration(MESSAGE_LIFETIME)}"
        )
    return value


MaxAge = Annotated[timedelta, BeforeValidator(_positive_duration), AfterValidator(_outlived_by_its_body)]
Throttle = Annotated[ThrottleSpec, PlainValidator(_throttle)]
Window = Annotated[SendWindow, PlainValidator(_window)]
Zone = Annotated[ZoneInfo, PlainValidator(_zone)]
Port = Annotated[int, Field(ge=1, le=65535)]
Count = Annotated[int, Field(ge=1)]
Priority = Annotated[int, Field(ge=0, le=10)]
UNSPECIFIED = "unspecified"
TCP_PORT: dict[str, JsonValue] = {"unit": "TCP port"}
HEALTH_HOST = (
    "Address of `/healthz` and Prometheus `/metrics`; in a container `0.0.0.0` (or `::`), since probes "
    "and scrapes come to the pod's address."
)
MESSAGES_PER_DAY: dict[str, JsonValue] = {"unit": "messages per day"}
PRIORITY: dict[str, JsonValue] = {"unit": "level (higher goes first)"}

# Said once for the queue defaults and the queue rules (where unset means: inherited).
_EGRESS_POOL = "The egress pool the queue's mail leaves by (`egress.pools`)."
_RETRY_INTERVAL = (
    "Delay before the first retry of a deferred message; each further retry waits twice as long "
    "(KumoMTA's formula, with jitter)."
)
_MAX_RETRY_INTERVAL = "Longest delay between two retries; unset: no cap."
_MAX_AGE = (
    "A message not delivered this long after it was accepted expires (its own `expires_at` comes first); at most "
    "9 days, a day short of how long `mail.bodies` keeps its body."
)
_MAX_MESSAGE_RATE = "Rate at which the queue's messages go on to egress, e.g. `100/h`; unset: no limit."
_PRIORITY = "Priority of the queue's messages that name none (`metadata.priority`)."
_SEND_WINDOW = "When the queue's messages may go on to egress; unset: at any time."


class SlidingWindowLimit(Section):
    """At most `limit` sends in any `span` (the campaign-queue document's "2 per 30 minutes")."""

    # Stage 2 keeps the instant of each send still in the window in one state record (and publishes them):
    # 50,000 take about 450 KB of the topics' 1 MiB. Larger budgets are what daily_limit and rates are for.
    limit: Annotated[int, Field(ge=1, le=50_000)] = Field(
        description="Sends allowed in any span of `span` (at most 50,000; use `daily_limit` or a rate for more).",
        json_schema_extra={"unit": "messages"},
    )
    span: PositiveDuration = Field(description="Length of the sliding window.")


TlsPolicy = Literal["opportunistic", "required", "disabled"]
_TLS_POLICY = (
    "`opportunistic`: STARTTLS when offered, any certificate; `required`: STARTTLS with a certificate verified "
    "against the MX host name (`delivery.tls_ca_file`, else the system's CAs), else nothing is sent "
    "(`451 4.7.5`, deferred); `disabled`: never STARTTLS."
)


class Relay(Section):
    """An SMTP server a source sends through (a smarthost with credentials) instead of the MX."""

    host: str = Field(description="Host name or address of the relay.")
    port: Port = Field(587, description="Port of the relay.", json_schema_extra=TCP_PORT)
    username: str | None = Field(None, description="SMTP AUTH login, with `password`; unset: no AUTH.")
    password: SecretStr | None = Field(None, description="SMTP AUTH password, with `username`.")
    starttls: Literal["opportunistic", "required", "disabled"] | None = Field(
        None,
        description="As `delivery.starttls`, for this relay; unset: the path's (`egress.paths[].starttls`, the "
        "source's, `delivery.starttls`). With credentials TLS is "
        "always required and the certificate verified (`ca_file`) before AUTH: a relay that does not offer "
        "STARTTLS, or whose certificate does not verify, gets neither the credentials nor the mail (`451 4.7.10`, "
        "`451 4.7.5`; the attempt is deferred).",
    )
    tls: Literal["starttls", "implicit"] = Field(
        "starttls",
        description="`starttls`: plain TCP, then STARTTLS as `starttls` says; `implicit`: TLS from the first byte "
        "(SMTPS, RFC 8314, usually port 465), `starttls` then unused. Either way a relay with credentials must "
        "present a certificate that verifies (`ca_file`) and names `host`.",
    )
    ca_file: Path | None = Field(
        None,
        description="PEM file of the CAs a relay with credentials must have its certificate from (it must also "
        "name `host`); unset: the system's CA store. Read at start-up.",
    )

    @model_validator(mode="after")
    def _credentials_pair(self) -> Relay:
        if (self.username is None) != (self.password is None):
            raise ValueError("a relay's username and password go together")
        if self.username is not None and self.starttls == "disabled":
            raise ValueError("a relay with credentials needs TLS: its starttls cannot be disabled")
        if self.ca_file is not None:
            try:
                ssl.create_default_context(cafile=str(self.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"ca_file {str(self.ca_file)!r}: no CA certificates read from it ({exc})") from None
        return self


class EgressSource(Section):
    """One identity mail leaves by: a local address (and name), or a relay."""

    name: str = Field(description="Name that pools and path rules use.")
    source_address: IPv4Address | IPv6Address | None = Field(
        None, description="Local address connections are bound to; unset: the kernel's choice."
    )
    ehlo_domain: str | None = Field(None, description="Name to greet with (EHLO); unset: `delivery.ehlo_domain`.")
    starttls: TlsPolicy | None = Field(
        None,
        description=f"TLS policy of the source's paths that no path rule sets: {_TLS_POLICY} "
        "Unset: `delivery.starttls`.",
    )
    relay: Relay | None = Field(
        None, description="Unset: the source sends to `delivery.smarthost`, else to the routing domain's MX hosts."
    )
    from_email: str | None = Field(
        None,
        description="The source's bounce address: the envelope sender (MAIL FROM) of the mail it sends, instead of "
        "the message's (a DSN's null sender stays null; the header From is untouched); also shown by "
        "`GET /api/queue/servers`. Unset: the message's own envelope sender.",
    )
    envelope_sender: str | None = Field(
        None,
        description="Pattern of the envelope sender instead of `from_email`: `local@domain` whose local part may "
        "hold `{local}` and `{domain}` (of the message's envelope sender) and `{id}` (its transaction id), e.g. "
        "`bounces+{local}={domain}@bounce.example.com`.",
    )
    daily_limit: Count | None = Field(
        None,
        description="Messages the source may send in one day of `egress.daily_reset_timezone`; unset: no limit.",
        json_schema_extra=MESSAGES_PER_DAY,
    )
    sliding_window: SlidingWindowLimit | None = Field(None, description="Unset: no limit over a sliding window.")
    send_window: Window | None = Field(None, description="When the source may send; unset: at any time.")

    @field_validator("name")
    @classmethod
    def _names_a_path(cls, name: str) -> str:
        EgressPath(name, "site")  # refuses a name that could not be parsed back out of an egress path
        return name

    @field_validator("envelope_sender")
    @classmethod
    def _a_sender_pattern(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            check_pattern(pattern)
        return pattern

    @field_validator("from_email")
    @classmethod
    def _an_address(cls, address: str | None) -> str | None:
        if address is not None:
            check_pattern(address.replace("{", "{{").replace("}", "}}"))  # local@domain, nothing to fill in
        return address


class PoolEntry(Section):
    """A source in a pool."""

    name: str = Field(description="Name of an egress source (`egress.sources`).")
    weight: Annotated[int, Field(ge=0)] = Field(
        1,
        description="The source's share of the pool's mail under `round_robin`; 0: never chosen (under either policy).",
        json_schema_extra={"unit": "relative share"},
    )


class EgressPool(Section):
    """Sources that share a queue's mail, and how one is chosen for each message."""

    name: str = Field(description="Name that queue settings use (`egress_pool`).")
    entries: list[PoolEntry] = Field(min_length=1, description="The pool's sources.")
    policy: Literal["round_robin", "most_remaining"] = Field(
        "round_robin",
        description="`round_robin`: KumoMTA's weighted round robin (one rotation per destination "
        "domain); `most_remaining`: the source with the most daily capacity left (the campaign-queue document's "
        "choice).",
    )


class PathShape(Section):
    """Egress path (source -> site) parameters, as `make_egress_path` names them; unset: no limit."""

    max_message_rate: Throttle | None = Field(None, description="Rate of messages sent on the path, e.g. `100/h`.")
    max_connection_rate: Throttle | None = Field(
        None, description="Rate of new connections opened on the path, e.g. `10/min`."
    )
    connection_limit: Count | None = Field(
        None, description="Connections open on the path at once.", json_schema_extra={"unit": "connections"}
    )
    max_deliveries_per_connection: Count | None = Field(
        None, description="Messages one connection carries before it is closed.", json_schema_extra={"unit": "messages"}
    )


class PathRule(PathShape):
    """Shaping for a site name or a domain, optionally only for one source (SHAPE_BY_DOMAIN / SHAPE_BY_SOURCE)."""

    site: str | None = Field(
        None,
        description="The site the rule shapes: a relay's or the smarthost's `host:port`, else the MX site of "
        "the routing domain (`scheduler.mx_sites`, e.g. `(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com`), "
        "else the routing domain itself.",
    )
    site_pattern: str | None = Field(
        None,
        description="A glob the site must match (case-insensitive; `*` any text, `?` one character), e.g. "
        "`*.google.com` for every site of Google's MX hosts; an exact `site` rule comes before it, it before a "
        "`domain` rule, and of several patterns the first in the file.",
    )
    domain: str | None = Field(None, description="The routing domain the rule shapes, whichever site it goes to.")
    source: str | None = Field(None, description="Only for this egress source; unset: for every source.")
    starttls: TlsPolicy | None = Field(
        None,
        description="TLS policy of the paths the rule matches (the (site or domain, source) rule's first): "
        f"{_TLS_POLICY} Unset: the source's `starttls`, else `delivery.starttls`; a relay's own `starttls` first.",
    )

    @model_validator(mode="after")
    def _names_a_destination(self) -> PathRule:
        if sum(v is not None for v in (self.site, self.site_pattern, self.domain)) != 1:
            raise ValueError("a path rule names exactly one of site, site_pattern or domain")
        return self


class EgressConfig(Section):
    """Where mail leaves from: sources, the pools that group them, and shaping per egress path."""

    sources: list[EgressSource] = Field(
        [EgressSource(name=UNSPECIFIED)],
        description="The egress sources; the default is one source, "
        f"`{UNSPECIFIED}`, with the kernel's choice of address.",
    )
    pools: list[EgressPool] = Field(
        [EgressPool(name=UNSPECIFIED, entries=[PoolEntry(name=UNSPECIFIED)])],
        description=f"The egress pools; the default is one pool, `{UNSPECIFIED}`, of the default source.",
    )
    paths: list[PathRule] = Field(
        [],
        description="Shaping rules: defaults, then the site's rule (else the first matching site pattern's, else "
        "the domain's), then the (site, source) rule (likewise).",
    )
    path_defaults: PathShape = Field(PathShape(), description="Shaping of every egress path a rule does not change.")
    daily_reset_timezone: Zone = Field(
        ZoneInfo("UTC"),
        description="Time zone whose midnight starts a new day for daily limits (sources' and tenants').",
    )

    @model_validator(mode="after")
    def _names_resolve(self) -> EgressConfig:
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError("egress source names must be unique")
        pool_names = [p.name for p in self.pools]
        if len(set(pool_names)) != len(pool_names):
            raise ValueError("egress pool names must be unique")
        for pool in self.pools:
            for entry in pool.entries:
                if entry.name not in names:
                    raise ValueError(f"pool {pool.name!r} names unknown egress source {entry.name!r}")
        for i, rule in enumerate(self.paths):
            if rule.source is not None and rule.source not in names:
                raise ValueError(f"paths.{i}.source names unknown egress source {rule.source!r}")
        return self

    def source(self, name: str) -> EgressSource:
        return next(s for s in self.sources if s.name == name)

    def pool(self, name: str) -> EgressPool:
        return next(p for p in self.pools if p.name == name)


class QueueSettings(Section):
    """Per scheduled queue settings (`make_queue_config`); in a rule, unset means "inherit"."""

    egress_pool: str | None = Field(None, description=_EGRESS_POOL)
    retry_interval: PositiveDuration | None = Field(None, description=_RETRY_INTERVAL)
    max_retry_interval: PositiveDuration | None = Field(None, description=_MAX_RETRY_INTERVAL)
    max_age: MaxAge | None = Field(None, description=_MAX_AGE)
    max_message_rate: Throttle | None = Field(None, description=_MAX_MESSAGE_RATE)
    priority: Priority | None = Field(None, description=_PRIORITY, json_schema_extra=PRIORITY)
    send_window: Window | None = Field(None, description=_SEND_WINDOW)


class QueueRule(QueueSettings):
    """Settings for the queues that match every given field (tenant, campaign, domain, routing_domain)."""

    tenant: str | None = Field(None, description="Only queues of this tenant; unset: any.")
    campaign: str | None = Field(None, description="Only queues of this campaign; unset: any.")
    domain: str | None = Field(None, description="Only queues of this recipient domain; unset: any.")
    routing_domain: str | None = Field(None, description="Only queues of this routing domain; unset: any.")


class QueueDefaults(Section):
    """Settings of every scheduled queue, and the rules that change them for some."""

    egress_pool: str = Field(UNSPECIFIED, description=_EGRESS_POOL)
    retry_interval: PositiveDuration = Field(timedelta(minutes=20), description=_RETRY_INTERVAL)
    max_retry_interval: PositiveDuration | None = Field(None, description=_MAX_RETRY_INTERVAL)
    max_age: MaxAge = Field(timedelta(days=7), description=_MAX_AGE)
    max_message_rate: Throttle | None = Field(None, description=_MAX_MESSAGE_RATE)
    priority: Priority = Field(5, description=_PRIORITY, json_schema_extra=PRIORITY)
    send_window: Window | None = Field(None, description=_SEND_WINDOW)
    rules: list[QueueRule] = Field(
        [],
        description="Settings for some queues: every rule that matches a queue applies, the more specific "
        "(more match fields given) over the less, file order breaking ties.",
    )


class TenantLimits(Section):
    """Limits over all of a tenant's queues; owned by one scheduler partition (the tenant's)."""

    max_message_rate: Throttle | None = Field(
        None, description="Rate of the tenant's messages going on to egress, over all its queues; unset: no limit."
    )
    daily_limit: Count | None = Field(
        None,
        description="Messages of the tenant that go on to egress in one day of `egress.daily_reset_timezone`; "
        "unset: no limit.",
        json_schema_extra=MESSAGES_PER_DAY,
    )
    send_window: Window | None = Field(
        None, description="When the tenant's messages may go on to egress; unset: at any time."
    )
