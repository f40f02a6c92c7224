"""One running pipeline shared by the end-to-end scenarios (each uses its own recipients)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mailstream.devtools.capture_sink import CaptureSink
from tests.infra.dkim_keys import DkimTestKey, ed25519_key, rsa_key, txt_rdata
from tests.infra.dns_server import LoopbackDns
from tests.infra.gateway import GatewayPorts, gateway_section
from tests.infra.stack import Stack, free_port, running_stack
from tests.infra.webhooks import LOOPBACK


@pytest.fixture(scope="session")
def sink() -> Iterator[CaptureSink]:
    s = CaptureSink().start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def gateway_config(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], GatewayPorts]:
    return gateway_section(tmp_path_factory.mktemp("gateway"))


@pytest.fixture(scope="session")
def dkim_keys(tmp_path_factory: pytest.TempPathFactory) -> list[DkimTestKey]:
    """acme.test signs with both algorithms."""
    directory = tmp_path_factory.mktemp("dkim")
    return [ed25519_key(directory, "acme.test", "ed1"), rsa_key(directory, "acme.test", "rsa1")]


@pytest.fixture(scope="session")
def dkim_dns(dkim_keys: list[DkimTestKey]) -> Iterator[LoopbackDns]:
    """Publishes the DKIM public keys, as the receiving side looks them up."""
    with LoopbackDns({(k.name, "TXT"): [txt_rdata(k.txt)] for k in dkim_keys}) as server:
        yield server


@pytest.fixture(scope="session")
def stack(
    kafka_bootstrap: str,
    sink: CaptureSink,
    gateway_config: tuple[dict[str, Any], GatewayPorts],
    dkim_keys: list[DkimTestKey],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with running_stack(
        kafka_bootstrap,
        sink.address,
        tmp_path_factory.mktemp("stack"),
        gateway=gateway_config[0],
        dkim={"keys": [k.config() for k in dkim_keys]},
        # the test receivers are on loopback, which webhooks.outbound denies unless allowed
        webhooks={"web_port": free_port(), "retry_interval": "0.5s", "outbound": {"allow": [LOOPBACK]}},
        scheduler={"report_window": "1d"},  # the gateway's bounce_domains need it
    ) as s:
        yield s


@pytest.fixture(scope="session")
def gateway(stack: Stack, gateway_config: tuple[dict[str, Any], GatewayPorts]) -> GatewayPorts:
    """The SMTP listeners of the shared stack's gateway."""
    return gateway_config[1]
