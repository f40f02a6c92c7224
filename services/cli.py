"""What every service's `__main__` does first: parse the config, set up logs, create topics, register schemas."""

from __future__ import annotations

import argparse
import sys

from mailstream.config import Config, ConfigError, load_config
from mailstream.config.kafka import SchemaRegistryConfig
from mailstream.events.kafka import Cluster, KafkaUnavailable, ensure_topics
from mailstream.events.serde import use_wire_format
from mailstream.events.topics import ALL_TOPICS
from mailstream.observability.logs import configure_logging, get_logger


def service_parser(service: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"mailstream-{service}")
    parser.add_argument("--config", help="YAML configuration file (defaults apply without one)")
    return parser


def prepare(service: str, args: argparse.Namespace) -> Config:
    """Validate the configuration before touching Kafka, then make sure every topic exists.

    Exits with status 2 for a bad configuration and 1 for an unreachable cluster.
    """
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(service)
    warning = config.kafka.development_replication_warning()
    if warning:
        get_logger(service).warning("development_replication", detail=warning)
    try:
        cluster = Cluster.of(config.kafka)
    except OSError as exc:
        print(f"{service}: kafka.sasl_password_file: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        ensure_topics(
            cluster,
            ALL_TOPICS,
            replication_factor=config.kafka.replication_factor,
            min_insync_replicas=config.kafka.min_insync_replicas,
        )
    except KafkaUnavailable as exc:
        get_logger(service).error("kafka_unavailable", error=str(exc))
        print(f"{service}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if config.kafka.schema_registry is not None:
        _register_schemas(service, config.kafka.schema_registry)
    return config


def _register_schemas(service: str, settings: SchemaRegistryConfig) -> None:
    """Confluent wire format from the first record on; exit 1 if the registry is unreachable or refuses a schema."""
    from mailstream.events.wire import RegistryError, RegistryIds  # the registry client only when configured

    ids = RegistryIds.connect(settings)
    try:
        ids.register(ALL_TOPICS)
    except RegistryError as exc:
        get_logger(service).error("schema_registry_unavailable", error=str(exc))
        print(f"{service}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    use_wire_format(ids)
    get_logger(service).info("schema_registry", url=settings.url, subjects=len(ids.subjects_registered))


def main() -> int:
    """`mailstream SERVICE [--config FILE]`: one entry point for every service."""
    import runpy

    services = ("ingest", "scheduler", "delivery", "gateway", "webhooks", "capture-sink")
    usage = (
        f"usage: mailstream {{{','.join(services)}}} [--config FILE]  (SERVICE --help: its options)\n"
        "       mailstream hash-password  (reads a password on stdin, prints the hash for gateway.users)\n"
        "       mailstream hash-api-key   (prints a new random API key and its key_sha256 for ingest.api_keys)"
    )
    if len(sys.argv) >= 2 and sys.argv[1] not in (*services, "hash-password", "hash-api-key"):
        from mailstream.operator.commands import NAMES, run  # typer and rich only for the operator commands

        if len(sys.argv) == 2 and sys.argv[1] in ("-h", "--help"):
            print(usage + "\n       mailstream COMMAND ...  (operator commands over the HTTP API, below)\n")
            return run(["--help"])
        if sys.argv[1] in NAMES:
            return run(sys.argv[1:])
    if len(sys.argv) == 2 and sys.argv[1] == "hash-password":
        return _hash_password()
    if len(sys.argv) == 2 and sys.argv[1] == "hash-api-key":
        return _hash_api_key()
    if len(sys.argv) < 2 or sys.argv[1] not in services:
        print(usage, file=sys.stderr)
        return 2
    name = sys.argv.pop(1)
    module = "mailstream.devtools.capture_sink" if name == "capture-sink" else f"mailstream.{name}"
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


def _hash_password() -> int:
    import getpass

    from mailstream.core.password_hash import hash_password

    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("hash-password: empty password", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


def _hash_api_key() -> int:
    """A new key for the client and its hash for the file; the key is shown once and stored nowhere."""
    import secrets

    from mailstream.core.password_hash import api_key_sha256

    key = secrets.token_urlsafe(32)  # 256 bits
    print(f"key: {key}")
    print(f"key_sha256: {api_key_sha256(key)}")
    return 0
