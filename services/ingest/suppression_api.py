"""Suppression lists by API: GET, POST /api/suppressions and DELETE /api/suppressions/{address}.

A tenant's key reads and changes its own list only (naming another tenant is 403; another's entry is simply not
on its list: 404). An admin key names the tenant (`tenant`); without one it lists every tenant's entries and adds
to or removes from the list of mail routed without a tenant. A change is a request to scheduler stage 1, keyed by
the entry's owner (`suppression_owner`), which applies it in order with the bounces and publishes the result on
mail.suppressions; so it is answered 202 and visible to GET once applied (normally within a second).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from mailstream.config.model import Config
from mailstream.core.clock import Clock
from mailstream.core.suppression import InvalidAddress, entry_key, normalise, parse_entry_key
from mailstream.events.producer import EventSink
from mailstream.events.records import ADMIN_ISSUER, Suppression, SuppressionRemoved, SuppressionSource
from mailstream.events.topics import QUEUE_COMMANDS, suppression_owner
from mailstream.ingest import api_models as api
from mailstream.ingest.audit import Auditor
from mailstream.ingest.auth import KeyRing, Principal
from mailstream.ingest.problems import Problem, from_validation_error, invalid, read_json
from mailstream.ingest.tenant_rights import acting_tenant
from mailstream.intake.submission import DirectWriter
from mailstream.intake.suppression_view import SuppressionView

MAX_BODY = 512 * 1024
MAX_ENTRIES = 1000  # per request
MAX_PAGE = 1000
DEFAULT_REASON = "added through the API"


def _address(value: str) -> str:
    return normalise(value)  # InvalidAddress is a ValueError: pydantic names the field


def _tenant(value: str) -> str:
    if any(c in value for c in ":@!") or any(c.isspace() for c in value):
        raise ValueError("a tenant name has no ':', '@', '!' or spaces")
    return value


Address = Annotated[str, Field(min_length=3, max_length=300), AfterValidator(_address)]
TenantName = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_tenant)]


class NewEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: Address
    reason: str = Field(DEFAULT_REASON, min_length=1, max_length=500)
    expires_at: datetime | None = Field(None, description="RFC 3339, with a time zone; unset: until removed.")


class AddSuppressions(BaseModel):
    """One or many addresses for one tenant's list (`tenant`: admins only; a tenant's key adds to its own)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"entries": [{"address": "ann@example.com", "reason": "unsubscribed"}]},
                {"entries": [{"address": "bob@example.com", "expires_at": "2100-01-01T00:00:00Z"}]},
            ]
        },
    )
    tenant: TenantName | None = None
    entries: list[NewEntry] = Field(min_length=1, max_length=MAX_ENTRIES)


class SuppressionPage(BaseModel):
    suppressions: list[Suppression]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: this was the last.")


class Added(BaseModel):
    accepted: list[Suppression] = Field(description="The entries as stage 1 will apply them.")


_NAMED_ANOTHER = "A tenant's key named another tenant"
_LOADING = "The event log is not accepting writes, or the suppression list is still being read"


def _expiry(expires_at: datetime | None, now: datetime, field: str) -> datetime | None:
    """The expiry in UTC; 422 when it has no time zone, is not in the future or is past datetime's range in UTC."""
    if expires_at is None:
        return None
    why = None
    if expires_at.tzinfo is None:
        why = "has no time zone"
    elif expires_at <= now:
        why = "is not in the future"
    else:
        try:
            return expires_at.astimezone(UTC)
        except OverflowError:
            why = "is past the last representable instant"
    raise invalid([(field, f"{expires_at.isoformat()} {why}")])


def _issuer(who: Principal) -> str:
    return ADMIN_ISSUER if who.admin else f"tenant:{who.tenant}"


def _check_tenant(tenant: str | None) -> str | None:
    try:
        return None if tenant is None else _tenant(tenant)
    except ValueError as exc:
        raise invalid([("tenant", str(exc))]) from None


def _loaded(view: SuppressionView) -> None:
    if not view.caught_up.is_set():
        raise Problem(503, "Not ready", "the suppression list is still being read", headers={"Retry-After": "1"})


def suppression_router(
    config: Config, view: SuppressionView, producer: EventSink, clock: Clock, auditor: Auditor | None = None
) -> APIRouter:
    keys = KeyRing(config.ingest.api_keys)
    audited = auditor or Auditor(DirectWriter(producer), clock)
    router = APIRouter()

    def principal(request: Request) -> Principal:
        return keys.authenticate(request.headers.get("authorization"))

    @router.get(
        "/api/suppressions",
        response_model=SuppressionPage,
        responses=api.problems(401, (403, _NAMED_ANOTHER), 422, (503, _LOADING)),
        summary="List a suppression list's entries in force, by address",
    )
    async def listing(
        request: Request,
        tenant: Annotated[str | None, Query(max_length=255)] = None,
        search: Annotated[str | None, Query(min_length=1, max_length=300, description="Part of the address")] = None,
        domain: Annotated[str | None, Query(min_length=1, max_length=255, description="The whole domain")] = None,
        source: SuppressionSource | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        cursor: Annotated[str | None, Query(max_length=600, description="`next_cursor` of the page before")] = None,
    ) -> SuppressionPage:
        who = principal(request)
        whose = acting_tenant(who, _check_tenant(tenant))
        _loaded(view)
        after: tuple[str, str] | None = None
        if cursor is not None:
            try:
                cursor_tenant, cursor_address = parse_entry_key(cursor)
            except ValueError:
                raise invalid([("cursor", "not a cursor this listing gave")]) from None
            after = (cursor_tenant or "", cursor_address)
        found: list[Suppression] = []
        more = False
        every_tenant = who.admin and tenant is None
        entries = view.entries(
            whose, clock(), every_tenant=every_tenant, search=search, domain=domain, source=source, after=after
        )
        for entry in entries:
            if len(found) == limit:
                more = True
                break
            found.append(entry)
        last = found[-1] if found else None
        return SuppressionPage(
            suppressions=found, next_cursor=entry_key(last.tenant, last.address) if more and last else None
        )

    @router.post(
        "/api/suppressions",
        status_code=202,
        response_model=Added,
        responses=api.problems(400, 401, (403, _NAMED_ANOTHER), 413, 422, 503),
        openapi_extra=api.json_body(AddSuppressions),
        summary="Add one or many addresses to a suppression list",
    )
    async def add(request: Request) -> Added:
        async with audited.action(request, "suppression.add") as act:
            who = act.who = principal(request)
            try:
                wanted = AddSuppressions.model_validate(await read_json(request, MAX_BODY))
            except ValidationError as exc:
                raise from_validation_error(exc) from None
            tenant = acting_tenant(who, wanted.tenant)
            now = clock()
            expiries = [
                _expiry(new.expires_at, now, f"entries[{i}].expires_at") for i, new in enumerate(wanted.entries)
            ]
            entries = {  # one entry per address: the last given wins, as it would on the list
                new.address: Suppression(
                    address=new.address,
                    tenant=tenant,
                    reason=new.reason,
                    source="api",
                    created_at=now,
                    expires_at=expires_at,
                    created_by=_issuer(who),
                )
                for new, expires_at in zip(wanted.entries, expiries, strict=True)
            }
            act.name(tenant=tenant, address=",".join(entries)[:1000])
            act.affected = len(entries)
            await act.write(
                [(QUEUE_COMMANDS, suppression_owner(tenant, e.address), e) for e in entries.values()], status=202
            )
            return Added(accepted=list(entries.values()))

    @router.delete(
        "/api/suppressions/{address}",
        status_code=204,
        response_class=Response,
        responses=api.problems(
            401, (403, _NAMED_ANOTHER), (404, "The address is not on the list this key sees"), 422, (503, _LOADING)
        ),
        summary="Take an address off a suppression list",
    )
    async def remove(
        address: str, request: Request, tenant: Annotated[str | None, Query(max_length=255)] = None
    ) -> Response:
        async with audited.action(request, "suppression.remove") as act:
            who = act.who = principal(request)
            whose = acting_tenant(who, _check_tenant(tenant))  # the list it acts on; before the scope is noted
            act.name(tenant=whose, address=address[:300])
            try:
                normal = normalise(address)
            except InvalidAddress as exc:
                raise invalid([("address", str(exc))]) from None
            _loaded(view)
            now = clock()
            if view.entry(whose, normal, now) is None:
                raise Problem(404, "Not found", f"{normal} is not on the suppression list of this API key")
            removed = SuppressionRemoved(address=normal, tenant=whose, removed_at=now, removed_by=_issuer(who))
            act.name(tenant=whose, address=normal)
            act.affected = 1
            await act.write([(QUEUE_COMMANDS, suppression_owner(whose, normal), removed)], status=204)
            return Response(status_code=204)

    return router
