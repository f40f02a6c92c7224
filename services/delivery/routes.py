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
        return Route(path, (Destination(relay.host, relay.port),), domain, relay.starttls or delivery.starttls, login)
    if delivery.smarthost is not None:
        return Route(path, (host_port(delivery.smarthost),), domain, delivery.starttls, None)
    return Route(path, (), domain, delivery.starttls, None)
