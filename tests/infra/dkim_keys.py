"""Throwaway DKIM keys for tests, with the TXT records that publish them."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.resolver
import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass(frozen=True)
class DkimTestKey:
    domain: str
    selector: str
    algorithm: str
    key_file: Path
    txt: str  # the DNS TXT record at <selector>._domainkey.<domain>

    @property
    def name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def config(self, tenant: str | None = None) -> dict[str, str]:
        found = {
            "domain": self.domain,
            "selector": self.selector,
            "algorithm": self.algorithm,
            "key_file": str(self.key_file),
        }
        return {**found, "tenant": tenant} if tenant else found


def rsa_key(directory: Path, domain: str, selector: str) -> DkimTestKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = directory / f"{selector}.{domain}.pem"
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return DkimTestKey(domain, selector, "rsa-sha256", path, f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}")


def ed25519_key(directory: Path, domain: str, selector: str) -> DkimTestKey:
    signing = nacl.signing.SigningKey(seed=os.urandom(32))
    path = directory / f"{selector}.{domain}.key"
    path.write_bytes(base64.b64encode(bytes(signing)))
    public = base64.b64encode(bytes(signing.verify_key)).decode()
    return DkimTestKey(domain, selector, "ed25519-sha256", path, f"v=DKIM1; k=ed25519; p={public}")


def txt_rdata(text: str) -> str:
    """A TXT record's presentation form: quoted strings of at most 255 octets (an RSA key needs several)."""
    return " ".join(f'"{text[i : i + 255]}"' for i in range(0, len(text), 255))


def dns_lookup(nameserver: str) -> Callable[..., bytes | None]:
    """dkimpy's `dnsfunc`, asking one DNS server (host:port) for TXT records."""
    host, _, port = nameserver.rpartition(":")

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers, resolver.port, resolver.lifetime = [host], int(port), float(timeout)
        try:
            answer = resolver.resolve(name.decode().rstrip("."), "TXT")
        except dns.exception.DNSException:
            return None
        return b"".join(b"".join(record.strings) for record in answer)

    return lookup
