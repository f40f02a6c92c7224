"""The kafka section: replication defaults, and the TLS/SASL settings every client is built with."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstream.config.kafka import KafkaConfig
from mailstream.config.model import ConfigError, parse_config
from mailstream.events.kafka import Cluster, client_config, producer_config


def kafka(env: dict[str, str] | None = None, /, **section: object) -> KafkaConfig:
    return parse_config({"kafka": section}, env or {}).kafka


def test_the_local_default_is_one_replica_and_production_settings_are_accepted() -> None:
    assert (kafka().replication_factor, kafka().min_insync_replicas) == (1, 1)
    production = kafka(replication_factor=3, min_insync_replicas=2)
    assert (production.replication_factor, production.min_insync_replicas) == (3, 2)


def test_min_insync_above_the_replication_factor_is_refused() -> None:
    with pytest.raises(ConfigError, match="min_insync_replicas"):
        kafka(replication_factor=1, min_insync_replicas=2)


def test_replication_one_warns_only_for_a_cluster_off_this_machine() -> None:
    assert kafka(bootstrap_servers="127.0.0.1:19092,localhost:19094").development_replication_warning() is None
    assert kafka(bootstrap_servers="[::1]:9092").development_replication_warning() is None
    remote = kafka(bootstrap_servers="127.0.0.1:9092,kafka-1.prod:9092")
    assert "replication_factor 3" in (remote.development_replication_warning() or "")
    assert kafka(bootstrap_servers="kafka:9092", replication_factor=3).development_replication_warning() is None


def test_plaintext_adds_nothing_but_the_protocol() -> None:
    assert kafka().client_settings() == {"security.protocol": "PLAINTEXT"}
    assert client_config("127.0.0.1:1") == {"bootstrap.servers": "127.0.0.1:1"}


def test_sasl_ssl_with_a_password_file_reaches_every_clients_properties(tmp_path: Path) -> None:
    ca, secret = tmp_path / "ca.pem", tmp_path / "password"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    secret.write_text("s3cret\n")
    section = kafka(
        bootstrap_servers="kafka:9093",
        security_protocol="SASL_SSL",
        ssl_ca_location=str(ca),
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="mailstream",
        sasl_password_file=str(secret),
    )
    want = {
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(ca),
        "ssl.endpoint.identification.algorithm": "https",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "mailstream",
        "sasl.password": "s3cret",
    }
    assert section.client_settings() == want
    cluster = Cluster.of(section)
    producer = producer_config(cluster, **{"client.id": "x"})
    assert producer["bootstrap.servers"] == "kafka:9093"
    assert producer["acks"] == "all"
    assert producer["enable.idempotence"] is True
    assert {k: producer[k] for k in want} == want
    assert "s3cret" not in repr(section)  # a SecretStr would say "**********"; a file path says nothing


def test_the_password_can_come_from_the_environment() -> None:
    env = {"MAILSTREAM_KAFKA__SASL_PASSWORD": "from-env"}
    section = kafka(env, security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u")
    assert section.client_settings()["sasl.password"] == "from-env"
    assert "from-env" not in repr(section)


def test_a_cluster_never_shows_its_password() -> None:
    # A Cluster is handed to every stage and client builder: a repr of it (a log line, a traceback's locals,
    # a dataclass holding it) must not carry the SASL or key password it was built with.
    env = {"MAILSTREAM_KAFKA__SASL_PASSWORD": "from-env"}
    section = kafka(env, security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u")
    cluster = Cluster.of(section)
    assert client_config(cluster)["sasl.password"] == "from-env"
    assert "from-env" not in repr(cluster)
    assert "from-env" not in str(cluster)


def test_a_missing_password_file_fails_when_the_service_builds_its_clients(tmp_path: Path) -> None:
    section = kafka(
        security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u", sasl_password_file=str(tmp_path / "x")
    )  # loads: the file is the pod's, not the checking machine's
    with pytest.raises(FileNotFoundError):
        Cluster.of(section)


@pytest.mark.parametrize(
    ("section", "complaint"),
    [
        ({"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": "p"}, "sasl_mechanism"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u"}, "exactly one"),
        ({"sasl_mechanism": "PLAIN"}, "need security_protocol SASL"),
        ({"ssl_ca_location": "/etc/hostname"}, "need security_protocol SSL"),
        ({"security_protocol": "SSL", "ssl_certificate_location": "/etc/hostname"}, "go together"),
        ({"security_protocol": "TLS"}, "security_protocol"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "sasl_username": "u"}, "sasl_mechanism"),
    ],
)
def test_inconsistent_security_settings_fail_at_load_naming_the_key(section: dict[str, str], complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        kafka(**section)
