"""Configuration of scheduling: egress sources and pools, path shaping, queue rules and tenant limits.

Values users type (throttle specs, send windows, durations) are parsed here, at start-up, into the
frozen value types of `mailstream.core`, so a bad value fails before Kafka is contacted and the
error names its key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, SecretStr, model_validator

from mailstream.core.duration import parse_duration
from mailstream.core.send_window import SendWindow
from mailstream.core.throttle import ThrottleSpec


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
        return SendWindow.parse(start, end, parts[1] if len(parts) > 1 else "UTC",
                                parts[2] if len(parts) > 2 else None)
    if isinstance(value, Mapping):
        unknown = set(value) - {"start", "end", "timezone", "weekdays"}
        if unknown or "start" not in value or "end" not in value:
            raise ValueError("send window needs start and end, and may have timezone and weekdays "
                             f"(got {sorted(value)})")
        return SendWindow.parse(str(value["start"]), str(value["end"]), str(value.get("timezone", "UTC")),
                                value.get("weekdays"))
    raise ValueError(f"send window {value!r} must be a mapping or a string")


def _zone(value: Any) -> ZoneInfo:
    if isinstance(value, ZoneInfo):
        return value
    try:
        return ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r} (use an IANA name such as 'Europe/Berlin')") from None


PositiveDuration = Annotated[timedelta, BeforeValidator(_positive_duration)]
Throttle = Annotated[ThrottleSpec, PlainValidator(_throttle)]
Window = Annotated[SendWindow, PlainValidator(_window)]
Zone = Annotated[ZoneInfo, PlainValidator(_zone)]
Port = Annotated[int, Field(ge=1, le=65535)]
Count = Annotated[int, Field(ge=1)]
Priority = Annotated[int, Field(ge=0, le=10)]
UNSPECIFIED = "unspecified"


class SlidingWindowLimit(Section):
    """At most `limit` sends in any `span` (the campaign-queue document's "2 per 30 minutes")."""

    limit: Count
    span: PositiveDuration


class Relay(Section):
    """An SMTP server a source sends through (a smarthost with credentials) instead of the MX."""

    host: str
    port: Port = 587
    username: str | None = None
    password: SecretStr | None = None
    starttls: Literal["opportunistic", "required", "disabled"] | None = None  # unset: delivery.starttls

    @model_validator(mode="after")
    def _credentials_pair(self) -> Relay:
        if (self.username is None) != (self.password is None):
            raise ValueError("a relay's username and password go together")
        return self


class EgressSource(Section):
    name: str
    source_address: IPv4Address | IPv6Address | None = None
    ehlo_domain: str | None = None
    relay: Relay | None = None
    from_email: str | None = None
    daily_limit: Count | None = None
    sliding_window: SlidingWindowLimit | None = None
    send_window: Window | None = None


class PoolEntry(Section):
    name: str
    weight: Annotated[int, Field(ge=0)] = 1


class EgressPool(Section):
    name: str
    entries: list[PoolEntry] = Field(min_length=1)
    # round_robin: KumoMTA's weighted round robin; most_remaining: the campaign-queue document's choice
    # of the source with the most daily capacity left.
    policy: Literal["round_robin", "most_remaining"] = "round_robin"


class PathShape(Section):
    """Egress path (source -> site) parameters, as `make_egress_path` names them."""

    max_message_rate: Throttle | None = None
    max_connection_rate: Throttle | None = None
    connection_limit: Count | None = None
    max_deliveries_per_connection: Count | None = None


class PathRule(PathShape):
    """Shaping for a site name or a domain, optionally only for one source (SHAPE_BY_DOMAIN / SHAPE_BY_SOURCE)."""

    site: str | None = None
    domain: str | None = None
    source: str | None = None

    @model_validator(mode="after")
    def _names_a_destination(self) -> PathRule:
        if (self.site is None) == (self.domain is None):
            raise ValueError("a path rule names exactly one of site or domain")
        return self


class EgressConfig(Section):
    sources: list[EgressSource] = [EgressSource(name=UNSPECIFIED)]
    pools: list[EgressPool] = [EgressPool(name=UNSPECIFIED, entries=[PoolEntry(name=UNSPECIFIED)])]
    paths: list[PathRule] = []
    path_defaults: PathShape = PathShape()
    daily_reset_timezone: Zone = ZoneInfo("UTC")

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

    egress_pool: str | None = None
    retry_interval: PositiveDuration | None = None
    max_retry_interval: PositiveDuration | None = None
    max_age: PositiveDuration | None = None
    max_message_rate: Throttle | None = None
    priority: Priority | None = None
    send_window: Window | None = None


class QueueRule(QueueSettings):
    """Settings for the queues that match every given field (tenant, campaign, domain, routing_domain)."""

    tenant: str | None = None
    campaign: str | None = None
    domain: str | None = None
    routing_domain: str | None = None


class QueueDefaults(Section):
    egress_pool: str = UNSPECIFIED
    retry_interval: PositiveDuration = timedelta(minutes=20)
    max_retry_interval: PositiveDuration | None = None
    max_age: PositiveDuration = timedelta(days=7)
    max_message_rate: Throttle | None = None
    priority: Priority = 5
    send_window: Window | None = None
    rules: list[QueueRule] = []


class TenantLimits(Section):
    """Limits over all of a tenant's queues; owned by one scheduler partition (the tenant's)."""

    max_message_rate: Throttle | None = None
    daily_limit: Count | None = None
    send_window: Window | None = None
