"""The SMTP gateway's section: its listeners, who may submit, which domains it receives mail for."""

from __future__ import annotations

import re
import socket
from datetime import timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from mailstream.config.scheduling import HEALTH_HOST, TCP_PORT, Section
from mailstream.core.duration import parse_duration
from mailstream.core.password_hash import is_password_hash
from mailstream.core.trace_header import check_name

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Port = Annotated[int, Field(ge=1, le=65535)]
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _domain(text: str) -> str:
    lowered = text.strip().lower().rstrip(".")
    if not DOMAIN.match(lowered):
        raise ValueError(f"{text!r} is not a domain name")
    return lowered


DomainName = Annotated[str, BeforeValidator(_domain)]


class ListenerTls(Section):
    """How a listener encrypts: STARTTLS offered or required, or implicit TLS from the first byte."""

    mode: Literal["none", "starttls", "starttls_required", "implicit"] = Field(
        "none",
        description="`none`: plaintext only; `starttls`: STARTTLS offered; `starttls_required`: every "
        "command but EHLO/HELO/NOOP/QUIT/STARTTLS answered 530 until the client has started TLS; `implicit`: TLS "
        "from the first byte (a port-465 style listener).",
    )
    cert_file: Path | None = Field(None, description="PEM certificate chain (required unless mode is `none`).")
    key_file: Path | None = Field(None, description="PEM private key of the certificate.")

    @model_validator(mode="after")
    def _files(self) -> ListenerTls:
        if self.mode != "none" and (self.cert_file is None or self.key_file is None):
            raise ValueError(f"tls mode {self.mode!r} needs cert_file and key_file")
        return self


class Listener(Section):
    """One SMTP listener: where, in which mode, and its limits."""

    name: str = Field(min_length=1, max_length=64, description="Names the listener in logs and metrics.")
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: Port = Field(
        description="Port to listen on; several gateway processes may share it (SO_REUSEPORT).",
        json_schema_extra=TCP_PORT,
    )
    mode: Literal["submission", "ingress"] = Field(
        description="`submission`: authenticated clients of a tenant send to anyone (RFC 6409); `ingress`: other "
        "MTAs send to the domains in `gateway.ingress_domains` only, without AUTH."
    )
    tls: ListenerTls = Field(ListenerTls(), description="TLS on this listener.")
    proxy_protocol: bool = Field(
        False,
        description="Expect a PROXY protocol header (v1 or v2, as HAProxy and cloud load balancers send) "
        "before the greeting, and take the client address from it for limits, AUTH throttling and `Received:`. "
        "Only behind a load balancer that always sends one: anyone else could claim any address.",
    )
    allow_auth_without_tls: bool = Field(
        False,
        description="Offer AUTH before TLS. Only for a loopback listener in development: credentials would "
        "otherwise cross the network in clear.",
    )
    max_message_size: Annotated[int, Field(ge=1024)] = Field(
        25 * 1024 * 1024,
        description="Advertised as SIZE; a larger message is answered 552 5.3.4.",
        json_schema_extra={"unit": "bytes"},
    )
    max_recipients: Annotated[int, Field(ge=1, le=100_000)] = Field(
        100,
        description="Recipients per SMTP transaction; the next RCPT is answered 452 4.5.3.",
        json_schema_extra={"unit": "recipients"},
    )
    idle_timeout: Duration = Field(
        timedelta(minutes=5), description="A session that sends nothing for this long is closed (421 4.4.2)."
    )
    max_connections: Annotated[int, Field(ge=1)] = Field(
        1000,
        description="Sessions open at once on this listener in one process; more are answered 421 4.7.0 and closed.",
        json_schema_extra={"unit": "connections"},
    )
    max_connections_per_client: Annotated[int, Field(ge=1)] = Field(
        50, description="Sessions open at once from one client address.", json_schema_extra={"unit": "connections"}
    )

    @model_validator(mode="after")
    def _plaintext_auth_only_on_loopback(self) -> Listener:
        if self.allow_auth_without_tls:
            try:
                loopback = ip_address(self.host).is_loopback
            except ValueError:
                loopback = self.host == "localhost"
            if not loopback:
                raise ValueError(
                    f"listener {self.name!r}: allow_auth_without_tls needs a loopback host, not {self.host!r}"
                )
        if self.mode == "submission" and self.tls.mode == "none" and not self.allow_auth_without_tls:
            raise ValueError(
                f"listener {self.name!r}: a submission listener needs TLS (AUTH is offered only over "
                "TLS) or allow_auth_without_tls on loopback"
            )
        return self


class SmtpUser(Section):
    """SMTP AUTH credentials of one tenant (a tenant may have several)."""

    username: str = Field(min_length=1, max_length=255, description="The AUTH user name.")
    password_hash: str = Field(
        description="scrypt hash of the password as `mailstream hash-password` prints it; never the password."
    )
    tenant: str = Field(
        min_length=1,
        description="The tenant a session authenticated as this user submits for, as an API key of that tenant does.",
    )
    sender_domains: list[DomainName] = Field(
        [], description="Domains the envelope sender may use (MAIL FROM); empty: any. Others get 550 5.7.1."
    )

    @model_validator(mode="after")
    def _hashed(self) -> SmtpUser:
        if not is_password_hash(self.password_hash):
            raise ValueError(
                f"smtp user {self.username!r}: password_hash is not a mailstream scrypt hash (make one "
                "with `mailstream hash-password`)"
            )
        return self


class IngressDomain(Section):
    """A domain the ingress listeners receive mail for, and where that mail goes."""

    domain: DomainName = Field(description="Recipient domain (exact; subdomains need their own entry).")
    tenant: str = Field(min_length=1, description="Tenant the received mail belongs to.")
    campaign: str | None = Field(None, description="Campaign of the scheduled queue, if any.")
    routing_domain: str | None = Field(
        None,
        description="Where the mail is delivered on (the queue's `!routing_domain`), e.g. an internal relay's "
        "domain; unset: the recipient domain's own MX.",
    )


class BounceDomain(Section):
    """A domain ingress listeners receive bounces (RFC 3464) and complaints (RFC 5965) for: parsed and tied to the
    transactions they are about, never queued for delivery (docs/design-decisions.md)."""

    domain: DomainName = Field(description="Recipient domain (exact), e.g. the domain of the envelope senders.")
    tenant: str | None = Field(
        None,
        description="Whose mail comes back here: the tenant of a report matched by its VERP address alone "
        "(a trace header names its own tenant).",
    )


class GatewayConfig(Section):
    """Its listeners, who may authenticate, the domains it receives mail for, and cut-through."""

    hostname: str = Field(
        default_factory=socket.getfqdn,
        description="Name in the greeting, the EHLO reply and the `Received:` header it adds.",
    )
    listeners: list[Listener] = Field([], description="The SMTP listeners; none: the gateway refuses to start.")
    users: list[SmtpUser] = Field([], description="Who may authenticate on submission listeners.")
    ingress_domains: list[IngressDomain] = Field(
        [],
        description="Domains ingress listeners accept mail for; any other recipient is refused 550 5.7.1 "
        "(never an open relay).",
    )
    bounce_domains: list[BounceDomain] = Field(
        [],
        description="Domains ingress listeners accept bounces and complaints for (any local part); every report "
        "is answered 250, matched or not.",
    )
    trace_header: str = Field(
        "X-KumoRef", description="Name of the trace header reports are searched for (inject's trace_headers)."
    )
    trace_submitted: bool = Field(
        False,
        description="Add the trace header `trace_header` to mail accepted on submission listeners, as inject's "
        "`trace_headers` does, so its bounces and complaints are tied back (each recipient's body is then its own).",
    )
    cut_through_wait: Duration = Field(
        timedelta(seconds=10),
        description="How long the reply to DATA waits for each recipient's first delivery "
        "attempt (cut-through); 0 answers as soon as the message is durable.",
    )
    auth_failure_delay: Duration = Field(timedelta(seconds=1), description="Added before answering a failed AUTH.")
    max_auth_failures: Annotated[int, Field(ge=1)] = Field(
        5,
        description="Failed AUTH attempts from one client address within `auth_failure_window`; after that, "
        "AUTH from that address is refused 454 4.7.0 until the window has passed.",
        json_schema_extra={"unit": "attempts"},
    )
    auth_failure_window: Duration = Field(timedelta(minutes=10), description="See `max_auth_failures`.")
    message_id_domain: str = Field(
        default_factory=socket.getfqdn, description="Domain of the `Message-ID` added to submitted mail that has none."
    )
    notices: bool = Field(
        True,
        description="Send delivery status notifications (RFC 3464) to the senders of SMTP-accepted mail that "
        "bounces or expires; the gateway processes share the work through the consumer group `<app_id>-notices`.",
    )
    app_id: str = Field(
        "mailstream-gateway", description="Prefix of the notifier's consumer group and transactional ids."
    )
    web_host: str = Field("127.0.0.1", description=HEALTH_HOST)
    web_port: Port = Field(
        6068, description="Port of `/healthz` and Prometheus `/metrics`, on `web_host`.", json_schema_extra=TCP_PORT
    )

    @field_validator("trace_header")
    @classmethod
    def _field_name(cls, value: str) -> str:
        return check_name(value)

    @model_validator(mode="after")
    def _unique(self) -> GatewayConfig:
        for what, names in (
            ("listener name", [x.name for x in self.listeners]),
            ("listener address", [f"{x.host}:{x.port}" for x in self.listeners]),
            ("smtp user", [u.username for u in self.users]),
            ("ingress domain", [d.domain for d in self.ingress_domains] + [d.domain for d in self.bounce_domains]),
        ):
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    raise ValueError(f"{what} {name!r} appears twice")
                seen.add(name)
        return self
