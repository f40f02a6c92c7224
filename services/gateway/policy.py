"""Who may send what through a listener (pure): envelope addresses, sender domains, relay policy."""

from __future__ import annotations

from dataclasses import dataclass

import idna

from mailstream.config.gateway import DOMAIN, IngressDomain, SmtpUser
from mailstream.gateway.replies import reply
from mailstream.intake.tenant_policy import TenantPolicies, domain_allowed


class Refused(Exception):
    """The command is answered with `reply` and the session goes on."""

    def __init__(self, reply_text: str) -> None:
        super().__init__(reply_text)
        self.reply = reply_text


def address_domain(address: str, *, smtputf8: bool) -> str:
    """The domain of `local@domain` in lower-case ASCII (A-labels); Refused when it is not an address."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or len(address) > 254 or len(local) > 64:
        raise Refused(reply(553, "5.1.3", f"<{address}> is not a valid address"))
    if not address.isascii() and not smtputf8:
        raise Refused(reply(553, "5.6.7", "non-ASCII address needs SMTPUTF8 (RFC 6531)"))
    if any(c in local for c in "\r\n\0 \t<>"):
        raise Refused(reply(553, "5.1.3", f"<{address}> is not a valid address"))
    try:
        ascii_domain = (
            idna.encode(domain.rstrip(".").lower(), uts46=True).decode()
            if not domain.isascii()
            else domain.rstrip(".").lower()
        )
    except idna.IDNAError:
        raise Refused(reply(553, "5.1.3", f"<{address}> has an invalid domain")) from None
    if domain.startswith("[") or not DOMAIN.match(ascii_domain):
        raise Refused(reply(553, "5.1.3", f"<{address}> has an invalid domain"))
    return ascii_domain


def check_sender(user: SmtpUser, sender: str, *, smtputf8: bool, policies: TenantPolicies) -> None:
    """A submission sender (MAIL FROM, or an address of the From header): held to the tenant's sender domains
    (`tenants.<t>.sender_domains`, as the HTTP API is) and to the user's own, which may narrow them."""
    if sender == "":
        raise Refused(reply(550, "5.7.1", "a submission client may not use the null sender"))
    domain = address_domain(sender, smtputf8=smtputf8)
    refused = policies.sender_refusal(user.tenant, sender)
    if refused is None and not domain_allowed(domain, user.sender_domains):
        refused = f"user {user.username!r} may not send as <{sender}>"
    if refused is not None:
        raise Refused(reply(550, "5.7.1", refused))


@dataclass(frozen=True, slots=True)
class Destination:
    """Where one accepted recipient's message is queued: the routing metadata the HTTP API would take."""

    tenant: str
    metadata: dict[str, str]


class RelayPolicy:
    def __init__(self, domains: list[IngressDomain]) -> None:
        self._domains = {d.domain: d for d in domains}

    def ingress(self, recipient: str, *, smtputf8: bool) -> Destination:
        """An ingress recipient: only configured domains, never an open relay."""
        domain = address_domain(recipient, smtputf8=smtputf8)
        found = self._domains.get(domain)
        if found is None:
            raise Refused(
                reply(550, "5.7.1", f"relay denied: <{recipient}> is not a domain this server receives mail for")
            )
        meta = {"campaign": found.campaign, "routing_domain": found.routing_domain}
        return Destination(found.tenant, {k: v for k, v in meta.items() if v})

    @staticmethod
    def submission(user: SmtpUser, recipient: str, *, smtputf8: bool) -> Destination:
        address_domain(recipient, smtputf8=smtputf8)
        return Destination(user.tenant, {})
