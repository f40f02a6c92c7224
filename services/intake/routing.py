"""Reading tenant, campaign, queue and scheduling from a recipient's metadata (pure)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mailstream.core.queue_name import QueueNameError, scheduled_queue

# Metadata keys that steer the message rather than ride along with it.
RESERVED = ("tenant", "campaign", "routing_domain", "queue", "priority", "send_at", "expires_at")


class RoutingError(ValueError):
    """Metadata that cannot steer a message; the text names the key, `field` is its path (metadata.<key>)."""

    def __init__(self, message: str, field: str = "metadata") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Routing:
    queue: str
    tenant: str | None
    campaign: str | None
    routing_domain: str | None
    priority: int | None  # None: not named; the scheduler applies the queue's configured priority
    send_at: datetime | None
    expires_at: datetime | None
    extra: dict[str, str]


def _text(meta: Mapping[str, Any], key: str) -> str | None:
    value = meta.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RoutingError(f"metadata.{key} must be a string", f"metadata.{key}")
    return value


def _time(meta: Mapping[str, Any], key: str, latest: datetime | None = None) -> datetime | None:
    value = _text(meta, key)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise RoutingError(f"metadata.{key} must be an RFC 3339 time, got {value[:40]!r}", f"metadata.{key}") from None
    if parsed.tzinfo is None:
        raise RoutingError(f"metadata.{key} needs a UTC offset, got {value[:40]!r}", f"metadata.{key}")
    try:
        when = parsed.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59-01:00 is a valid text of a time past datetime's last day in UTC
        raise RoutingError(f"metadata.{key} {value!r} is beyond the calendar in UTC", f"metadata.{key}") from None
    if latest is not None and when > latest:
        raise RoutingError(
            f"metadata.{key} {value!r} is later than a message may live: {latest.isoformat()} at the latest "
            "(its body is kept no longer)",
            f"metadata.{key}",
        )
    return when


def _priority(meta: Mapping[str, Any]) -> int | None:
    priority = meta.get("priority")
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 10
    ):
        raise RoutingError("metadata.priority must be an integer from 0 to 10", "metadata.priority")
    return priority


def check_steering(meta: Mapping[str, Any], latest: datetime | None = None) -> None:
    """resolve_routing's checks that need neither a recipient nor a key, for metadata every recipient shares:
    wrong there, it is wrong for all of them, so the whole request can be refused before anything is written."""
    for key in ("tenant", "campaign", "routing_domain", "queue"):
        _text(meta, key)
    _priority(meta)
    _time(meta, "send_at", latest)
    _time(meta, "expires_at", latest)


def resolve_routing(
    meta: Mapping[str, Any], domain: str, *, bound_tenant: str | None, latest: datetime | None = None
) -> Routing:
    """`bound_tenant` is the tenant of the API key; None for an admin key, which may name any tenant. `latest`:
    the last instant `send_at` and `expires_at` may name (acceptance + `events.topics.MESSAGE_LIFETIME`)."""
    tenant = _text(meta, "tenant")
    if bound_tenant is not None:
        if tenant is not None and tenant != bound_tenant:
            raise RoutingError(f"metadata.tenant {tenant!r} is not the tenant of this API key", "metadata.tenant")
        tenant = bound_tenant
    priority = _priority(meta)
    campaign = _text(meta, "campaign")
    routing_domain = _text(meta, "routing_domain")
    try:
        queue = scheduled_queue(
            domain,
            tenant=tenant,
            campaign=campaign,
            routing_domain=routing_domain,
            explicit=_text(meta, "queue"),
        )
    except QueueNameError as exc:
        raise RoutingError(f"metadata: {exc}") from None
    extra = {
        k: v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), sort_keys=True)
        for k, v in meta.items()
        if k not in RESERVED
    }
    return Routing(
        queue=queue,
        tenant=tenant,
        campaign=campaign,
        routing_domain=routing_domain.lower() if routing_domain else None,
        priority=priority,
        send_at=_time(meta, "send_at", latest),
        expires_at=_time(meta, "expires_at", latest),
        extra=extra,
    )
