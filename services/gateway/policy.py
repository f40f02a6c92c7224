"""Who may send what through a listener (pure): envelope addresses, sender domains, relay policy."""

from __future__ import annotations

from dataclasses import dataclass

import idna

from mailstream.config.gateway import DOMAIN, IngressDomain, SmtpUser
from mailstream.gateway.replies import reply


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


def check_sender(user: SmtpUser, sender: str, *, smtputf8: bool) -> None:
    """A submission sender: the user's tenant may be restricted to some sender domains."""
    if sender == "":
        raise Refused(reply(550, "5.7.1", "a submission client may not use the null sender"))
    domain = address_domain(sender, smtputf8=smtputf8)
    if user.sender_domains and domain not in user.sender_domains:
        raise Refused(reply(550, "5.7.1", f"tenant {user.tenant!r} may not send as <{sender}>"))


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
