"""A `LocalBroker` with a SASL_SSL listener beside its plaintext one: TLS with a certificate from a throwaway CA
(trustme), SCRAM-SHA-512 with one user created when the storage is formatted. The plaintext listener stays for
the broker's own traffic (controller, readiness); clients under test use `secured_bootstrap` and the settings
`kafka_section` gives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from cryptography.hazmat.primitives import serialization

from tests.infra.broker import LocalBroker, free_ports

USER = "mailstream"
PASSWORD = "kafka-secret-0123"


@dataclass(frozen=True)
class SecuredBroker:
    broker: LocalBroker
    secured_port: int
    ca_file: Path
    password_file: Path

    @property
    def secured_bootstrap(self) -> str:
        return f"127.0.0.1:{self.secured_port}"

    def kafka_section(self, password_file: Path | None = None) -> dict[str, Any]:
        """The `kafka` config section of a service that talks to the SASL_SSL listener."""
        return {
            "bootstrap_servers": self.secured_bootstrap,
            "security_protocol": "SASL_SSL",
            "ssl_ca_location": str(self.ca_file),
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": USER,
            "sasl_password_file": str(password_file or self.password_file),
        }


def secured_broker(workdir: Path) -> SecuredBroker:
    """Not started: call `.broker.start()` (or use it as a context manager)."""
    workdir.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, keystore, password_file = workdir / "ca.pem", workdir / "broker-keystore.pem", workdir / "password"
    ca.cert_pem.write_to_path(str(ca_file))
    # A PEM keystore is the unencrypted PKCS#8 key followed by the chain (Kafka's ssl.keystore.type=PEM); trustme
    # writes the key in the traditional (SEC1) form, which Java cannot read.
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    keystore.write_bytes(pkcs8 + b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    password_file.write_text(PASSWORD + "\n")
    port, controller, secured = free_ports(3)
    plain = f"127.0.0.1:{port}"
    broker = LocalBroker(
        workdir / "kafka",
        port=port,
        controller_port=controller,
        extra_properties={
            "listeners": f"PLAINTEXT://{plain},CONTROLLER://127.0.0.1:{controller},SASL_SSL://127.0.0.1:{secured}",
            "advertised.listeners": f"PLAINTEXT://{plain},SASL_SSL://127.0.0.1:{secured}",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
            "listener.name.sasl_ssl.ssl.keystore.location": str(keystore),
        },
        format_args=["--add-scram", f"SCRAM-SHA-512=[name={USER},password={PASSWORD}]"],
    )
    return SecuredBroker(broker, secured, ca_file, password_file)
