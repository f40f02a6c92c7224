"""The configuration file's shape. Every section refuses keys it does not know.

Every field carries a description, and every number its unit (`json_schema_extra={"unit": ...}`;
durations, rates and windows say theirs by their type): `mailstream.config.reference` renders them
into docs/configuration.md.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Mapping
from datetime import timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError, model_validator

from mailstream.config.dkim import DkimConfig
from mailstream.config.environment import VariableError, apply_environment
from mailstream.config.gateway import GatewayConfig
from mailstream.config.kafka import KafkaConfig
from mailstream.config.mta_sts import MtaStsConfig
from mailstream.config.mx_sites import MxSitesConfig
from mailstream.config.outbound import OutboundPolicy
from mailstream.config.scheduling import (
    HEALTH_HOST,
    TCP_PORT,
    EgressConfig,
    QueueDefaults,
    Section,
    Throttle,
)
from mailstream.config.shaping import ShapingConfig
from mailstream.config.suppression import SuppressionConfig
from mailstream.config.tenants import TenantConfig
from mailstream.config.webhooks import WebhooksConfig
from mailstream.core.duration import parse_duration
from mailstream.core.password_hash import api_key_sha256

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Port = Annotated[int, Field(ge=1, le=65535)]


class ConfigError(ValueError):
    """The configuration file is unreadable or invalid; the message names each bad key."""


class ApiKey(Section):
    """A key of the HTTP API: bound to one tenant, or an admin key (exactly one of `tenant` and `admin: true`).
    The file holds either the key (`key`) or, better, its SHA-256 (`key_sha256`, from `mailstream hash-api-key`)."""

    key: Annotated[SecretStr, Field(min_length=16)] | None = Field(
        None,
        description="The bearer token clients send (`Authorization: Bearer <key>`), in clear; "
        "prefer `key_sha256`. Exactly one of the two.",
    )
    key_sha256: Annotated[str, Field(pattern="^[0-9a-f]{64}$")] | None = Field(
        None,
        description="SHA-256 of the bearer token, 64 lower-case hex digits, as `mailstream hash-api-key` "
        "prints it: the file then holds no key. A fast hash is enough because keys are long random tokens.",
    )
    tenant: str | None = Field(
        None,
        description="The tenant the key acts for: it fixes the tenant of what it submits, and it reads and "
        "controls only that tenant's mail and queues.",
    )
    admin: bool = Field(False, description="An admin key: may name any tenant, and reads and controls everything.")
    rate_limit: Throttle | None = Field(
        None, description="This key's own limit on inject requests (as `ingest.rate_limit`), in its place."
    )
    max_requests_in_progress: Annotated[int, Field(ge=1)] | None = Field(
        None,
        description="This key's own cap on inject requests in progress (as `ingest.max_requests_in_progress`), "
        "in its place.",
        json_schema_extra={"unit": "requests"},
    )

    @model_validator(mode="after")
    def _tenant_or_admin(self) -> ApiKey:
        if self.admin == (self.tenant is not None):
            raise ValueError("an API key has either a tenant or admin: true, not both or neither")
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("an API key has either key or key_sha256, not both or neither")
        return self

    def sha256(self) -> str:
        """The key's SHA-256 in hex, whichever way the file gives it."""
        if self.key_sha256 is not None:
            return self.key_sha256
        assert self.key is not None  # the validator saw to it
        return api_key_sha256(self.key.get_secret_value())


def _at_least_ten_days(value: timedelta) -> timedelta:
    if value < timedelta(days=10):  # younger rows may still get their mail.accepted record (kept 10 days)
        raise ValueError("must be at least 10 days, mail.accepted's retention")
    return value


Retention = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_at_least_ten_days)]


class IngestConfig(Section):
    """Its listener, request limit, status view and API keys."""

    host: str = Field("127.0.0.1", description="Address the HTTP API listens on.")
    port: Port = Field(
        8025, description="Port the HTTP API listens on (`--port` overrides it).", json_schema_extra=TCP_PORT
    )
    request_body_limit: Annotated[int, Field(ge=1024)] = Field(
        2 * 1024 * 1024,
        description="Largest request body the API reads (inject and admin requests); a larger one is answered 413.",
        json_schema_extra={"unit": "bytes"},
    )
    message_id_domain: str = Field(
        default_factory=socket.getfqdn,
        description="Domain of the `Message-ID` ingest adds to a message that has none (`<id@domain>`).",
    )
    status_db: Path = Field(
        Path(".run/ingest/status.sqlite3"),
        description="SQLite file of the replica's transaction-status view, a "
        "read model of `mail.status` with the offsets it has applied (relative paths: from the working directory).",
    )
    api_keys: list[ApiKey] = Field(
        [], description="The keys the API accepts; a request with no known key is answered 401."
    )
    max_message_size: Annotated[int, Field(ge=64 * 1024, le=63 * 1024 * 1024)] = Field(
        10 * 1024 * 1024,
        description="Largest message one recipient's request may expand to (templates rendered, "
        "MIME built; also the most each template may output, in characters); a recipient whose message is larger "
        "fails alone. At most 63 MiB: `mail.bodies` takes records of 64 MiB, envelope included.",
        json_schema_extra={"unit": "bytes"},
    )
    expansion_limit: Annotated[int, Field(ge=1024 * 1024)] = Field(
        64 * 1024 * 1024,
        description="Largest total of a request's messages together; a request past it is "
        "answered 413 as soon as expansion passes it, before it is all in memory.",
        json_schema_extra={"unit": "bytes"},
    )
    template_time_limit: Duration = Field(
        timedelta(seconds=5),
        description="How long a request's templates may take to render, all recipients "
        "together, when they are more than plain substitutions (loops, arithmetic, calls: rendered in a worker "
        "process); past it the request is answered 422 naming the recipient rendering was on.",
    )
    template_workers: Annotated[int, Field(ge=1, le=64)] = Field(
        2,
        description="Worker processes that render templates which are more than plain substitutions; started "
        "when first needed, a request waits for a free one.",
        json_schema_extra={"unit": "processes"},
    )
    template_memory_limit: Annotated[int, Field(ge=128 * 1024 * 1024)] = Field(
        512 * 1024 * 1024,
        description="Address space each template worker may use; a render that needs more fails "
        "its recipient (or the request, if the worker dies of it).",
        json_schema_extra={"unit": "bytes"},
    )
    rate_limit: Throttle | None = Field(
        None,
        description="Inject requests each API key may make, e.g. `50/s,max_burst=100`; past it 429 with "
        "`Retry-After`. Unset: no limit (a key's own `rate_limit` still applies).",
    )
    max_requests_in_progress: Annotated[int, Field(ge=1)] = Field(
        64,
        description="Inject requests one API key may have in progress at once; one more is answered 429.",
        json_schema_extra={"unit": "requests"},
    )
    max_waiters_per_key: Annotated[int, Field(ge=1)] = Field(
        100,
        description="Long-polls (`GET /api/transactions/{id}?wait=`) one API key may hold open at once; one "
        "more is answered 429.",
        json_schema_extra={"unit": "requests"},
    )
    max_waiters: Annotated[int, Field(ge=1)] = Field(
        10_000,
        description="Long-polls the replica holds open at once, all keys together; one more is answered 429.",
        json_schema_extra={"unit": "requests"},
    )
    request_deadline: Duration = Field(
        timedelta(seconds=15),
        description="An inject request is answered within this long of its body being read: "
        "when the event log has not taken it by then, 503 with `Retry-After` (nothing of it was accepted, unless the "
        "answer says the outcome is unknown).",
    )
    header_timeout: Duration = Field(
        timedelta(seconds=10),
        description="A request's headers must be complete this long after its first byte (or the connection's "
        "opening); a client that sends them more slowly (slowloris) is disconnected. The idle time between requests "
        "on a kept-alive connection (75 s) is apart from it.",
    )
    body_timeout: Duration = Field(
        timedelta(seconds=30),
        description="A request's whole body must arrive within this long of its headers; a slower one is "
        "answered 408 and its connection closed, before any route sees it.",
    )
    max_connections: Annotated[int, Field(ge=1)] = Field(
        10_000,
        description="Connections the replica holds at once; one more is answered 503 with `Retry-After` and "
        "closed. Keep it within the process's file-descriptor limit (`ulimit -n`).",
        json_schema_extra={"unit": "connections"},
    )
    transactional_id: str | None = Field(
        None,
        description="Kafka transactional id of the replica's writes (each request's records in one "
        "transaction); unset: `mailstream-ingest-<hostname>-<port>`. It must stay the same across a replica's "
        "restarts (the new process then aborts what the old one left open) and differ between replicas (one "
        "fences the other): where pods get new names on a restart, set it per replica.",
    )
    read_model_db: Path = Field(
        Path(".run/ingest/messages.sqlite3"),
        description="SQLite file of the replica's message read model (`GET /api/messages`, `/api/queue/metrics`): "
        "`mail.accepted` and `mail.status` projected, with the offsets applied (relative paths: from the working "
        "directory).",
    )
    read_model_max_page: Annotated[int, Field(ge=1, le=10_000)] = Field(
        1000,
        description="Most messages one page of `GET /api/messages` may ask for (`limit`; the default is 50).",
        json_schema_extra={"unit": "messages"},
    )
    read_model_top_domains: Annotated[int, Field(ge=1, le=1000)] = Field(
        20,
        description="Domains (and campaigns) `GET /api/queue/metrics` and the Prometheus gauges report "
        "individually: the ones with the most traffic, which bounds the gauges' labels.",
        json_schema_extra={"unit": "domains"},
    )
    read_model_retention: Retention = Field(
        timedelta(days=30),
        description="How long the read model keeps a finished message (from its creation); mail.status keeps every "
        "transaction for ever, so without it the file would only grow. At least 10 days, mail.accepted's retention.",
    )


class SchedulerConfig(Section):
    """Its consumer groups, how stage 2 names MX sites, and its health port."""

    app_id: str = Field(
        "mailstream-scheduler",
        description="Prefix of the two stages' consumer groups (`<app_id>-queues`, "
        "`<app_id>-egress`) and transactional ids: workers with the same `app_id` share the partitions.",
    )
    report_window: Duration = Field(
        timedelta(0),
        description="How long after a transaction ends its final status is kept, so that a bounce or complaint "
        "received by mail (the gateway's `bounce_domains`) is applied to it; a later report is logged as "
        "unmatched. Costs about 100 bytes of memory and a changelog record per transaction ended within it, "
        "and a partition's restore reads them all: size it from your volume (a day at 300 messages/s is "
        "~2.6 GB across the workers). 0 (the default) keeps none; `gateway.bounce_domains` needs it set.",
    )
    mx_sites: MxSitesConfig = Field(
        MxSitesConfig(), description="Egress paths of MX-delivered mail named by MX site (KumoMTA's `site_name`)."
    )
    web_host: str = Field("127.0.0.1", description=HEALTH_HOST)
    web_port: Port = Field(
        6066,
        description="Port of the worker's `/healthz` and Prometheus `/metrics`, on "
        "`web_host` (`--web-port` overrides it).",
        json_schema_extra=TCP_PORT,
    )


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
    """Where mail goes without a relay, and how a worker connects, greets, encrypts and waits."""

    group_id: str = Field(
        "mailstream-delivery",
        description="Consumer group of the delivery workers on `mail.delivery`: workers "
        "with the same group share the egress paths (each path is one worker's).",
    )
    smarthost: str | None = Field(
        None,
        description="`host:port` that mail goes through when its egress source has no relay (the local "
        "stack's capture sink); unset: the MX hosts of the routing domain.",
    )
    ehlo_domain: str = Field(
        default_factory=socket.getfqdn, description="Name to greet with (EHLO) when the egress source names none."
    )
    concurrency: Annotated[int, Field(ge=1, le=10_000)] = Field(
        64,
        description="SMTP connections one worker holds at once, over all its egress paths.",
        json_schema_extra={"unit": "connections"},
    )
    connect_timeout: Duration = Field(
        timedelta(seconds=30),
        description="How long a TCP connection (and an MX lookup) may take before the attempt fails.",
    )
    command_timeout: Duration = Field(
        timedelta(minutes=5), description="How long the answer to one SMTP command may take."
    )
    starttls: Literal["opportunistic", "required", "disabled"] = Field(
        "opportunistic",
        description="`opportunistic`: STARTTLS when the server offers it; `required`: a server "
        "that does not offer it gets no mail (the attempt is deferred, `451 4.7.5`); `disabled`: never. A relay's "
        "own `starttls` comes first, then path rules' and the source's (`egress.paths[].starttls`). `required` also "
        "verifies the certificate against the MX host name (`tls_ca_file`).",
    )
    tls_ca_file: Path | None = Field(
        None,
        description="PEM file of the CAs an MX host's certificate is verified against where TLS is `required`; "
        "unset: the system's CA store. Read at start-up.",
    )
    metrics_host: str = Field("127.0.0.1", description=HEALTH_HOST)
    metrics_port: Port = Field(
        9102,
        description="Port of the worker's `/healthz` and Prometheus `/metrics`, on "
        "`metrics_host` (`--metrics-port` overrides it).",
        json_schema_extra=TCP_PORT,
    )
    idle_timeout: Duration = Field(
        timedelta(seconds=60),
        description="A connection left idle this long is closed; until then the next "
        "message of its egress path reuses it.",
    )
    path_wait: Duration = Field(
        timedelta(seconds=60),
        description="A message that waits longer than this for a connection of its path "
        "(`connection_limit`, `max_connection_rate`) is deferred (`451 4.4.5`), so the worker goes on polling "
        "Kafka.",
    )
    attempt_timeout: Duration = Field(
        timedelta(minutes=10),
        description="Overall deadline of one delivery attempt, from the moment the worker "
        "takes the task: waiting for a connection, connecting, greeting and every command included. An attempt "
        "still unfinished then is deferred (`451 4.4.2`) and its connection dropped, so a server that answers each "
        "command just within `command_timeout` cannot hold a message (or the partition's commit point) for long.",
    )
    smtp_port: Port = Field(25, description="Port of MX hosts.", json_schema_extra=TCP_PORT)
    nameservers: list[str] = Field(
        [],
        description="DNS servers for MX lookups, each `ip`, `ip:port` or `[ipv6]:port`; empty: the system's resolvers.",
    )
    outbound: OutboundPolicy = Field(
        OutboundPolicy(),
        description="Which addresses the workers may connect to (a deny list, allowed exceptions): MX hosts, a "
        "domain that is its own exchanger, a `routing_domain`'s hosts, relays, the smarthost.",
    )
    mta_sts: MtaStsConfig = Field(MtaStsConfig(), description="MTA-STS (RFC 8461); off unless enabled.")

    @model_validator(mode="after")
    def _smarthost_has_port(self) -> DeliveryConfig:
        if self.smarthost is not None:
            host, sep, port = self.smarthost.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"smarthost {self.smarthost!r} must be host:port")
        for server in self.nameservers:
            nameserver_address(server)
        if self.tls_ca_file is not None:
            try:
                ssl.create_default_context(cafile=str(self.tls_ca_file))
            except (OSError, ssl.SSLError) as exc:
                named = str(self.tls_ca_file)
                raise ValueError(f"tls_ca_file {named!r}: no CA certificates read from it ({exc})") from None
        return self


class Config(Section):
    """The whole file: one section per service, then scheduling (egress, queues, tenants)."""

    kafka: KafkaConfig = Field(KafkaConfig(), description="The Kafka cluster every service uses.")
    ingest: IngestConfig = Field(IngestConfig(), description="The HTTP API (`python -m mailstream.ingest`).")
    scheduler: SchedulerConfig = Field(
        SchedulerConfig(), description="The scheduler workers (`python -m mailstream.scheduler`)."
    )
    delivery: DeliveryConfig = Field(
        DeliveryConfig(), description="The delivery workers (`python -m mailstream.delivery`)."
    )
    gateway: GatewayConfig = Field(GatewayConfig(), description="The SMTP gateway (`python -m mailstream.gateway`).")
    dkim: DkimConfig = Field(DkimConfig(), description="DKIM signing, done by ingest and the gateway alike.")
    webhooks: WebhooksConfig = Field(WebhooksConfig(), description="Webhooks (`python -m mailstream.webhooks`).")
    egress: EgressConfig = Field(
        EgressConfig(),
        description="Read by the scheduler (limits, source choice), the delivery workers "
        "(addresses, relays, connection shaping) and ingest (the capacity API).",
    )
    queues: QueueDefaults = Field(
        QueueDefaults(), description="The scheduled queues, which the scheduler's first stage holds."
    )
    tenants: dict[str, TenantConfig] = Field(
        {}, description="By tenant name (the tenant of an API key, or the `tenant` an admin key names)."
    )
    suppression: SuppressionConfig = Field(
        SuppressionConfig(), description="Suppression lists: which bounces add an address, and for how long."
    )
    shaping: ShapingConfig = Field(
        ShapingConfig(),
        description="Adaptive shaping: rules on delivery replies that act on paths and queues for a time.",
    )

    @model_validator(mode="after")
    def _reports_have_a_window(self) -> Config:
        if self.gateway.bounce_domains and self.scheduler.report_window <= timedelta(0):
            raise ValueError(
                "gateway.bounce_domains: reports received by mail are matched to the transactions stage 1 keeps for "
                "scheduler.report_window, which is 0: set it (e.g. 2d) to apply them"
            )
        return self

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


def parse_config(data: dict[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed file with the keys `env` sets (`MAILSTREAM_<SECTION>__<KEY>`, see
    mailstream.config.environment); KAFKA_BOOTSTRAP_SERVERS, last, overrides kafka.bootstrap_servers."""
    env = os.environ if env is None else env
    try:
        data, variables = apply_environment(data, env)
    except VariableError as exc:
        raise ConfigError(f"invalid configuration in the environment: {exc}") from None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        note = f"\n  (keys set in the environment: {', '.join(variables)})" if variables else ""
        raise ConfigError(_describe(exc) + note) from None
    override = env.get("KAFKA_BOOTSTRAP_SERVERS")
    if override:
        config = config.model_copy(update={"kafka": config.kafka.model_copy(update={"bootstrap_servers": override})})
    return config


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> Config:
    if path is None:
        return parse_config({}, env)
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"configuration {path} must be a mapping at the top level")
    return parse_config(data, env)
