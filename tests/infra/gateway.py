"""The gateway section of a test stack: four listeners on loopback, a throwaway CA, two tenants' users."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme

from mailstream.core.password_hash import hash_password
from tests.infra.broker import free_ports

ACME_USER, ACME_PASSWORD = "acme-app", "correct horse battery staple"
GLOBEX_USER, GLOBEX_PASSWORD = "globex-app", "globex password 42"
INGRESS_DOMAIN = "inbound.test"  # ingress listeners receive mail for it, on behalf of tenant acme
BOUNCE_DOMAIN = "bounces.acme.test"  # and bounces and complaints for acme's mail (gateway.bounce_domains)
_HASHES: dict[str, str] = {}


def _hash(password: str) -> str:
    if password not in _HASHES:  # scrypt costs ~50 ms; stacks in one run share the hashes
        _HASHES[password] = hash_password(password, ln=10)
    return _HASHES[password]


@dataclass(frozen=True)
class GatewayPorts:
    submission: int  # STARTTLS offered, AUTH after TLS
    submission_plain: int  # loopback development listener: AUTH without TLS
    smtps: int  # implicit TLS
    ingress: int  # no AUTH, only INGRESS_DOMAIN
    ca_file: Path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        return context


def gateway_section(workdir: Path, **overrides: Any) -> tuple[dict[str, Any], GatewayPorts]:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_file, key_file, ca_file = workdir / "gateway-cert.pem", workdir / "gateway-key.pem", workdir / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    tls = {"cert_file": str(cert_file), "key_file": str(key_file)}
    # Picked together: five free_port() calls in a row can hand out one port twice (each socket closes before
    # the next bind), and the config refuses two listeners on one address.
    submission, submission_plain, smtps, ingress, web_port = free_ports(5)
    ports = GatewayPorts(submission, submission_plain, smtps, ingress, ca_file)
    section: dict[str, Any] = {
        "hostname": "gateway.mailstream.test",
        "message_id_domain": "gateway.mailstream.test",
        "web_port": web_port,
        "listeners": [
            {"name": "submission", "port": ports.submission, "mode": "submission", "tls": {"mode": "starttls", **tls}},
            {
                "name": "submission-plain",
                "port": ports.submission_plain,
                "mode": "submission",
                "allow_auth_without_tls": True,
                "max_recipients": 5,
            },
            {"name": "smtps", "port": ports.smtps, "mode": "submission", "tls": {"mode": "implicit", **tls}},
            {"name": "ingress", "port": ports.ingress, "mode": "ingress", "max_message_size": 64 * 1024},
        ],
        "users": [
            {
                "username": ACME_USER,
                "password_hash": _hash(ACME_PASSWORD),
                "tenant": "acme",
                "sender_domains": ["acme.test"],
            },
            {"username": GLOBEX_USER, "password_hash": _hash(GLOBEX_PASSWORD), "tenant": "globex"},
        ],
        "ingress_domains": [{"domain": INGRESS_DOMAIN, "tenant": "acme"}],
        "bounce_domains": [{"domain": BOUNCE_DOMAIN, "tenant": "acme"}],
        "auth_failure_delay": "0.2s",
        "max_auth_failures": 3,
    }
    section.update(overrides)
    return section, ports


def delivery_status(report: EmailMessage) -> tuple[dict[str, str], dict[str, str]]:
    """The per-message and (first) per-recipient fields of a multipart/report's message/delivery-status part."""
    assert report.get_content_type() == "multipart/report"
    _, status, *_ = report.iter_parts()
    blocks = status.get_payload()
    assert isinstance(blocks, list)
    per_message, per_recipient, *_ = (dict(block.items()) for block in blocks if not isinstance(block, str))
    return per_message, per_recipient
