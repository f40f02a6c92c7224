"""The configuration file's shape. Every section refuses keys it does not know."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, Field, SecretStr, ValidationError, model_validator

from mailstream.config.scheduling import EgressConfig, QueueDefaults, Section, TenantLimits
from mailstream.core.duration import parse_duration

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Port = Annotated[int, Field(ge=1, le=65535)]



class ConfigError(ValueError):
    """The configuration file is unreadable or invalid; the message names each bad key."""


class KafkaConfig(Section):
    bootstrap_servers: str = "127.0.0.1:19092"
    replication_factor: Annotated[int, Field(ge=1)] = 1


class ApiKey(Section):
    key: SecretStr = Field(min_length=16)
    tenant: str | None = None
    admin: bool = False

    @model_validator(mode="after")
    def _tenant_or_admin(self) -> ApiKey:
        if self.admin == (self.tenant is not None):
            raise ValueError("an API key has either a tenant or admin: true, not both or neither")
        return self


class IngestConfig(Section):
    host: str = "127.0.0.1"
    port: Port = 8025
    request_body_limit: Annotated[int, Field(ge=1024)] = 2 * 1024 * 1024
    message_id_domain: str = Field(default_factory=socket.getfqdn)
    status_db: Path = Path(".run/ingest/status.sqlite3")
    api_keys: list[ApiKey] = []


class SchedulerConfig(Section):
    app_id: str = "mailstream-scheduler"  # prefix of the stages' consumer groups and transactional ids
    web_port: Port = 6066


def nameserver_address(text: str) -> tuple[str, int]:
    """("ip", port) of a DNS server written "ip", "ip:port" or "[ipv6]:port"; ValueError names what is wrong."""
    host, port = text, "53"
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        ip_address(host)
    except ValueError:
        raise ValueError(f"nameserver {text!r} is not an IP address (optionally with :port)") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"nameserver {text!r} has a bad port")
    return host, int(port)


class DeliveryConfig(Section):
    group_id: str = "mailstream-delivery"
    smarthost: str | None = None
    ehlo_domain: str = Field(default_factory=socket.getfqdn)
    concurrency: Annotated[int, Field(ge=1, le=10_000)] = 64
    connect_timeout: Duration = timedelta(seconds=30)
    command_timeout: Duration = timedelta(minutes=5)
    starttls: Literal["opportunistic", "required", "disabled"] = "opportunistic"
    metrics_port: Port = 9102
    # A connection left idle this long is closed; until then the next task of its path reuses it.
    idle_timeout: Duration = timedelta(seconds=60)
    # A task that waits longer than this for a connection of its path (connection_limit,
    # max_connection_rate) is deferred (451 4.4.5), so the worker goes on polling Kafka.
    path_wait: Duration = timedelta(seconds=60)
    smtp_port: Port = 25  # the port of MX hosts
    nameservers: list[str] = []  # DNS servers ("ip" or "ip:port") for MX lookups; empty: the system's

    @model_validator(mode="after")
    def _smarthost_has_port(self) -> DeliveryConfig:
        if self.smarthost is not None:
            host, sep, port = self.smarthost.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"smarthost {self.smarthost!r} must be host:port")
        for server in self.nameservers:
            nameserver_address(server)
        return self


class Config(Section):
    kafka: KafkaConfig = KafkaConfig()
    ingest: IngestConfig = IngestConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    egress: EgressConfig = EgressConfig()
    queues: QueueDefaults = QueueDefaults()
    tenants: dict[str, TenantLimits] = {}

    @model_validator(mode="after")
    def _queue_pools_exist(self) -> Config:
        pools = {p.name for p in self.egress.pools}
        if self.queues.egress_pool not in pools:
            raise ValueError(f"queues.egress_pool names unknown pool {self.queues.egress_pool!r}")
        for i, rule in enumerate(self.queues.rules):
            if rule.egress_pool is not None and rule.egress_pool not in pools:
                raise ValueError(f"queues.rules.{i}.egress_pool names unknown pool {rule.egress_pool!r}")
        return self


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return "invalid configuration:\n" + "\n".join(lines)


def parse_config(data: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    """Validate a parsed file; KAFKA_BOOTSTRAP_SERVERS in `env` overrides kafka.bootstrap_servers."""
    env = os.environ if env is None else env  # type: ignore[assignment]
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    override = env.get("KAFKA_BOOTSTRAP_SERVERS") if env else None
    if override:
        config = config.model_copy(update={"kafka": config.kafka.model_copy(
            update={"bootstrap_servers": override})})
    return config


def load_config(path: str | Path | None, env: dict[str, str] | None = None) -> Config:
    if path is None:
        return parse_config({}, env)
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"configuration {path} must be a mapping at the top level")
    return parse_config(data, env)
