"""Where a task's message goes: the source's relay, else the smarthost, else the domain's MX. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from mailstream.config.egress_paths import path_of
from mailstream.config.model import DeliveryConfig
from mailstream.config.scheduling import EgressSource
from mailstream.core.egress_path import EgressPath
from mailstream.delivery.smtp_client import Destination, Login, StartTls


@dataclass(frozen=True, slots=True)
class Route:
    path: EgressPath  # as the scheduler names it
    hosts: tuple[Destination, ...]  # empty: the MX hosts of `domain`, looked up when connecting
    domain: str
    starttls: StartTls
    login: Login | None
    ca_file: str | None = None  # what the relay's certificate is verified against (with a login); unset: system CAs
    implicit_tls: bool = False


def host_port(text: str) -> Destination:
    host, _, port = text.rpartition(":")
    return Destination(host.strip("[]"), int(port))


def route_for(source: EgressSource, delivery: DeliveryConfig, domain: str) -> Route:
    path = path_of(source, delivery.smarthost, domain)
    relay = source.relay
    if relay is not None:
        login = None
        if relay.username is not None and relay.password is not None:
            login = Login(relay.username, relay.password.get_secret_value())
        dest = Destination(relay.host, relay.port)
        ca_file = str(relay.ca_file) if relay.ca_file is not None else None
        starttls = relay.starttls or delivery.starttls
        return Route(path, (dest,), domain, starttls, login, ca_file, relay.tls == "implicit")
    if delivery.smarthost is not None:
        return Route(path, (host_port(delivery.smarthost),), domain, delivery.starttls, None)
    return Route(path, (), domain, delivery.starttls, None)
