"""A tenant key's request held to its tenant's rights (`tenants.<t>`, `intake.tenant_policy`) before anything is
written: another tenant named, a sender domain it may not use, or steering metadata it may not set, is a 403
naming the field. Admin keys are held to nothing here."""

from __future__ import annotations

from collections.abc import Sequence

from mailstream.ingest.auth import Principal
from mailstream.ingest.inject_request import Content, InjectRequest
from mailstream.ingest.message_builder import GeneratedMessage, RecipientFailure
from mailstream.ingest.problems import Problem
from mailstream.intake.tenant_policy import TenantPolicies


def forbidden(errors: list[tuple[str, str]], detail: str | None = None) -> Problem:
    """403 naming each (field, message), the first in the detail unless one is given."""
    detail = detail or f"{errors[0][0]}: {errors[0][1]}"
    return Problem(403, "Forbidden", detail, [{"field": f, "message": m} for f, m in errors])


def acting_tenant(who: Principal, named: str | None, field: str = "tenant") -> str | None:
    """The tenant a request acts on or reads: the one an admin names (None: every tenant), a tenant key's own.
    A tenant key naming another is a 403 on `field`; checked before the request's scope is audited, so no tenant's
    key writes an audit entry about another's tenant."""
    if who.admin:
        return named
    if named is not None and named != who.tenant:
        raise forbidden(
            [(field, "not the tenant of this API key")], f"{field}: {named!r} is not the tenant of this API key"
        )
    return who.tenant


def check_request(request: InjectRequest, who: Principal, policies: TenantPolicies) -> None:
    """The envelope sender and the steering metadata of the request and of each recipient."""
    if who.admin or who.tenant is None:
        return
    errors = []
    refused = policies.sender_refusal(who.tenant, request.envelope_sender)
    if refused is not None:
        errors.append(("envelope_sender", refused))
    errors += [(f"metadata.{key}", why) for key, why in policies.steering_refusals(who.tenant, request.metadata)]
    for i, recipient in enumerate(request.recipients):
        steering = policies.steering_refusals(who.tenant, recipient.metadata)
        errors += [(f"recipients[{i}].metadata.{key}", why) for key, why in steering]
    if errors:
        raise forbidden(errors)


def check_from(
    request: InjectRequest,
    messages: Sequence[GeneratedMessage | RecipientFailure],
    who: Principal,
    policies: TenantPolicies,
) -> None:
    """The From addresses of the built messages (a template may make them differ per recipient)."""
    if who.admin or who.tenant is None:
        return
    for message in messages:
        if isinstance(message, GeneratedMessage):
            refused = policies.from_refusal(who.tenant, message.headers.get("From"))
            if refused is not None:
                raise forbidden([(_from_field(request.content), refused)])


def _from_field(content: str | Content) -> str:
    if isinstance(content, str):
        return "content"
    if content.from_ is not None:
        return "content.from"
    named = [name for name in content.headers if name.lower() == "from"]
    return f"content.headers.{named[0]}" if named else "content"
