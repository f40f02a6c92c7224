"""The `kafka` section: where the cluster is, how its topics are replicated, and how clients authenticate.

The defaults suit one local broker (replication 1, plaintext); a production cluster wants replication 3 and
`min.insync.replicas` 2 (docs/operations.md) and usually TLS and SASL. `client_settings` turns the section into
the librdkafka properties every client of the services starts from (mailstream.events.kafka.Cluster), so no
client is built without them.
"""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr, model_validator

from mailstream.config.scheduling import Section

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

PRODUCTION_REPLICATION = 3
PRODUCTION_MIN_INSYNC = 2


def _registry_urls(value: str) -> str:
    for url in value.split(","):
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url.strip()!r} is not an http or https URL with a host")
        if parts.username or parts.password:
            raise ValueError("put the registry's credentials in basic_auth_user_info, not in the URL")
    return value


class SchemaRegistryConfig(Section):
    """A Confluent-compatible schema registry (optional)."""

    url: Annotated[str, AfterValidator(_registry_urls)] = Field(
        description="Base URL of the registry's Confluent-compatible API, e.g. `http://registry:8081` (Confluent, "
        "Karapace, Redpanda) or `http://apicurio:8080/apis/ccompat/v7` (Apicurio); several comma-separated.",
    )
    basic_auth_user_info: SecretStr | None = Field(
        None,
        description="`user:password` for HTTP Basic authentication; prefer the variable "
        "`MAILSTREAM_KAFKA__SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO`, so the secret stays out of the file.",
    )
    ssl_ca_location: Path | None = Field(
        None, description="PEM file of the CA certificates an https registry's certificate is verified against."
    )
    timeout: Annotated[float, Field(gt=0)] = Field(
        10.0, description="Seconds one request to the registry may take.", json_schema_extra={"unit": "seconds"}
    )

    def client_conf(self) -> dict[str, str | int | float]:
        """confluent_kafka.schema_registry.SchemaRegistryClient's settings."""
        conf: dict[str, str | int | float] = {"url": self.url, "timeout": self.timeout, "max.retries": 1}
        if self.basic_auth_user_info is not None:
            conf["basic.auth.user.info"] = self.basic_auth_user_info.get_secret_value()
        if self.ssl_ca_location is not None:
            conf["ssl.ca.location"] = str(self.ssl_ca_location)
        return conf


class KafkaConfig(Section):
    """Where the cluster is, how the topics a service creates are replicated, and the clients' TLS and SASL."""

    bootstrap_servers: str = Field(
        "127.0.0.1:19092",
        description="Kafka bootstrap servers, `host:port[,host:port...]`. The environment "
        "variable `KAFKA_BOOTSTRAP_SERVERS` overrides it.",
    )
    replication_factor: Annotated[int, Field(ge=1)] = Field(
        1,
        description="Replicas of each topic a service creates at start-up (topics that exist are left as they are). "
        "The default 1 is a development default for one local broker; production: 3.",
        json_schema_extra={"unit": "brokers"},
    )
    min_insync_replicas: Annotated[int, Field(ge=1)] = Field(
        1,
        description="`min.insync.replicas` of each topic a service creates: an acknowledged write (acks=all) is "
        "on at least this many brokers, and writes stop rather than go to fewer. At most `replication_factor`. "
        "The default 1 is a development default; production: 2 (with replication 3, one broker may be down).",
        json_schema_extra={"unit": "brokers"},
    )
    security_protocol: SecurityProtocol = Field(
        "PLAINTEXT",
        description="How clients talk to the brokers: `PLAINTEXT`, `SSL` (TLS), `SASL_PLAINTEXT` or `SASL_SSL` "
        "(SASL over TLS, what a secured cluster wants).",
    )
    ssl_ca_location: Path | None = Field(
        None,
        description="PEM file of the CA certificates the brokers' certificates are verified against "
        "(none: the system's). With SSL and SASL_SSL.",
    )
    ssl_certificate_location: Path | None = Field(
        None, description="PEM client certificate, for a cluster that authenticates clients by TLS (mTLS)."
    )
    ssl_key_location: Path | None = Field(None, description="PEM private key of `ssl_certificate_location`.")
    ssl_key_password: SecretStr | None = Field(None, description="Password of an encrypted `ssl_key_location`.")
    ssl_verify_hostname: bool = Field(
        True, description="Check that a broker's certificate names the host (or IP address) connected to."
    )
    sasl_mechanism: SaslMechanism | None = Field(
        None,
        description="SASL mechanism, required with SASL_PLAINTEXT and SASL_SSL: `PLAIN`, `SCRAM-SHA-256` or "
        "`SCRAM-SHA-512`.",
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(
        None,
        description="SASL password; prefer `sasl_password_file` or the variable `MAILSTREAM_KAFKA__SASL_PASSWORD`, "
        "so the secret stays out of the file. Exactly one of the two with SASL.",
    )
    sasl_password_file: Path | None = Field(
        None,
        description="File holding the SASL password (a mounted Secret, such as a Strimzi KafkaUser's `password`), "
        "read at start-up; a trailing newline is ignored.",
    )
    schema_registry: SchemaRegistryConfig | None = Field(
        None,
        description="Set: each service registers the value schema of "
        "every topic that carries one record type (subject `<topic>-value`, compatibility BACKWARD) at start-up "
        "and writes those records in the Confluent wire format (00, schema id, Avro), which Kafka Connect's "
        "AvroConverter, ksqlDB and Confluent deserializers read; every reader takes both framings. Unset: Avro "
        "single-object encoding, no registry (docs/analytics.md).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> KafkaConfig:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas ({self.min_insync_replicas}) exceeds replication_factor "
                f"({self.replication_factor}): no write could ever be acknowledged"
            )
        sasl = self.security_protocol.startswith("SASL_")
        sasl_keys = ("sasl_mechanism", "sasl_username", "sasl_password", "sasl_password_file")
        given = [name for name in sasl_keys if getattr(self, name) is not None]
        if not sasl and given:
            raise ValueError(f"{', '.join(given)} need security_protocol SASL_PLAINTEXT or SASL_SSL")
        if sasl:
            if self.sasl_mechanism is None or self.sasl_username is None:
                raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism and sasl_username")
            if (self.sasl_password is None) == (self.sasl_password_file is None):
                raise ValueError("SASL needs exactly one of sasl_password and sasl_password_file")
        tls = self.security_protocol in ("SSL", "SASL_SSL")
        files = ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location", "ssl_key_password")
        if not tls and any(getattr(self, name) is not None for name in files):
            raise ValueError("ssl_* settings need security_protocol SSL or SASL_SSL")
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            raise ValueError("ssl_certificate_location and ssl_key_location go together")
        return self  # the files are read where the services run (client_settings), not where a file is checked

    def client_settings(self) -> dict[str, str]:
        """The librdkafka security properties of every client (without bootstrap.servers); reads the password
        file (OSError if it cannot), so call it at start-up. librdkafka reads the certificate files when a
        client is created."""
        settings: dict[str, str] = {"security.protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            settings["ssl.endpoint.identification.algorithm"] = "https" if self.ssl_verify_hostname else "none"
            optional = {
                "ssl.ca.location": self.ssl_ca_location,
                "ssl.certificate.location": self.ssl_certificate_location,
                "ssl.key.location": self.ssl_key_location,
            }
            settings.update({key: str(path) for key, path in optional.items() if path is not None})
            if self.ssl_key_password is not None:
                settings["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        if self.sasl_mechanism is not None and self.sasl_username is not None:
            if self.sasl_password_file is not None:
                password = self.sasl_password_file.read_text().rstrip("\r\n")
            else:
                assert self.sasl_password is not None  # the validator saw to it
                password = self.sasl_password.get_secret_value()
            settings.update(
                {"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.sasl_username, "sasl.password": password}
            )
        return settings

    def development_replication_warning(self) -> str | None:
        """Why replication 1 is risky here: a cluster that is not on this machine, yet each write on one broker."""
        if self.replication_factor > 1 or all(_loopback(hp) for hp in self.bootstrap_servers.split(",")):
            return None
        return (
            f"kafka.replication_factor is {self.replication_factor} (the development default) for a cluster at "
            f"{self.bootstrap_servers}: new topics get one replica, so losing that broker loses mail; production "
            f"wants replication_factor {PRODUCTION_REPLICATION} and min_insync_replicas {PRODUCTION_MIN_INSYNC}"
        )


def _loopback(hostport: str) -> bool:
    host = hostport.strip().rpartition(":")[0].strip("[]") or hostport.strip()
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False
