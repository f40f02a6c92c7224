"""Where a task's message goes: the source's relay, else the smarthost, else the domain's MX. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from mailstream.config.egress_paths import path_of
from mailstream.config.model import DeliveryConfig
from mailstream.config.scheduling import EgressSource, TlsPolicy
from mailstream.core.egress_path import EgressPath
from mailstream.delivery.smtp_client import Destination, Login, StartTls


@dataclass(frozen=True, slots=True)
class Route:
    path: EgressPath  # as the scheduler names it
    hosts: tuple[Destination, ...]  # empty: the MX hosts of `domain`, looked up when connecting
    domain: str
    starttls: StartTls
    login: Login | None
    ca_file: str | None = None  # what a verified certificate is checked against; unset: the system's CAs
    implicit_tls: bool = False


def host_port(text: str) -> Destination:
    host, _, port = text.rpartition(":")
    return Destination(host.strip("[]"), int(port))


def route_for(
    source: EgressSource,
    delivery: DeliveryConfig,
    domain: str,
    path_tls: TlsPolicy | None = None,
    path: EgressPath | None = None,
) -> Route:
    """`path_tls`: what the path rules say (`PathShapes.starttls`); a relay's own `starttls` comes before it,
    the source's and then `delivery.starttls` after it. `path`: as the task names it (its MX site, stage 2's
    decision); unset: the domain's own."""
    path = path or path_of(source, delivery.smarthost, domain)
    starttls = path_tls or source.starttls or delivery.starttls
    relay = source.relay
    if relay is not None:
        login = None
        if relay.username is not None and relay.password is not None:
            login = Login(relay.username, relay.password.get_secret_value())
        dest = Destination(relay.host, relay.port)
        ca_file = str(relay.ca_file) if relay.ca_file is not None else None
        return Route(path, (dest,), domain, relay.starttls or starttls, login, ca_file, relay.tls == "implicit")
    ca_file = str(delivery.tls_ca_file) if delivery.tls_ca_file is not None else None
    if delivery.smarthost is not None:
        return Route(path, (host_port(delivery.smarthost),), domain, starttls, None, ca_file)
    return Route(path, (), domain, starttls, None, ca_file)
