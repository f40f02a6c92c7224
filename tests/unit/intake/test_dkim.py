"""DKIM signing with dkimpy: verified by dkimpy, tampering detected, keys chosen by From domain and tenant."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dkim
import pytest

from mailstream.config.dkim import DkimConfig
from mailstream.intake.dkim import DkimKeyError, DkimSigner, from_domain
from tests.infra.dkim_keys import DkimTestKey, ed25519_key, rsa_key

MESSAGE = (
    b"From: News <news@acme.test>\r\nTo: ann@example.com\r\nSubject: Hello\r\n"
    b"Date: Wed, 02 Dec 2026 09:00:00 +0000\r\nMessage-ID: <1@acme.test>\r\n\r\nHi Ann.\r\n"
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DkimTestKey]:
    directory = tmp_path_factory.mktemp("dkim")
    return {
        "rsa": rsa_key(directory, "acme.test", "r1"),
        "ed": ed25519_key(directory, "acme.test", "e1"),
        "globex": ed25519_key(directory, "acme.test", "g1"),
    }


def dns_of(keys: dict[str, DkimTestKey]) -> Callable[..., bytes | None]:
    published = {f"{k.name}.".encode(): k.txt.encode() for k in keys.values()}

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return published.get(name)

    return lookup


def signatures(message: bytes) -> int:
    return message.count(b"DKIM-Signature:")


def verified(message: bytes, keys: dict[str, DkimTestKey]) -> bool:
    return bool(dkim.verify(message, dnsfunc=dns_of(keys)))


def test_rsa_and_ed25519_signatures_verify(keys: dict[str, DkimTestKey]) -> None:
    signer = DkimSigner(DkimConfig.model_validate({"keys": [keys["rsa"].config(), keys["ed"].config()]}))
    signed = signer.sign(MESSAGE, "acme")
    assert signatures(signed) == 2
    assert signed.endswith(MESSAGE)  # the message itself is not changed, only preceded
    assert verified(signed, keys)  # the topmost (ed25519)
    second = signed[signed.index(b"DKIM-Signature:", 1) :]  # the RSA one, on top once the first is removed
    assert b"a=rsa-sha256" in second[:400]
    assert verified(second, keys)


def test_a_tampered_header_or_body_fails(keys: dict[str, DkimTestKey]) -> None:
    signer = DkimSigner(DkimConfig.model_validate({"keys": [keys["ed"].config()]}))
    signed = signer.sign(MESSAGE, "acme")
    assert not verified(signed.replace(b"Subject: Hello", b"Subject: Hellp"), keys)
    assert not verified(signed.replace(b"Hi Ann.", b"Hi Bob."), keys)


def test_an_added_header_fails_because_it_is_oversigned(keys: dict[str, DkimTestKey]) -> None:
    signer = DkimSigner(DkimConfig.model_validate({"keys": [keys["ed"].config()]}))
    signed = signer.sign(MESSAGE, "acme")
    head, _, body = signed.partition(b"\r\n\r\n")
    assert not verified(head + b"\r\nSubject: You won a prize\r\n\r\n" + body, keys)
    not_oversigned = DkimSigner(DkimConfig.model_validate({"keys": [keys["ed"].config()], "oversign": []}))
    loose = not_oversigned.sign(MESSAGE, "acme")
    head, _, body = loose.partition(b"\r\n\r\n")
    assert verified(head + b"\r\nCc: added@evil.test\r\n\r\n" + body, keys)  # what oversigning prevents


def test_keys_are_chosen_by_from_domain_and_a_tenants_own_replace_the_shared(keys: dict[str, DkimTestKey]) -> None:
    config = DkimConfig.model_validate({"keys": [keys["ed"].config(), keys["globex"].config(tenant="globex")]})
    signer = DkimSigner(config)
    assert b"s=e1" in signer.sign(MESSAGE, "acme")
    globex = signer.sign(MESSAGE, "globex")
    assert signatures(globex) == 1
    assert b"s=g1" in globex
    other = MESSAGE.replace(b"news@acme.test", b"news@other.test")
    assert signer.sign(other, "acme") == other  # no key for that domain: sent unsigned


def test_a_missing_or_unusable_key_is_refused_naming_it(tmp_path: Path, keys: dict[str, DkimTestKey]) -> None:
    missing = {**keys["rsa"].config(), "key_file": str(tmp_path / "nope.pem")}
    with pytest.raises(DkimKeyError, match=r"r1\._domainkey\.acme\.test"):
        DkimSigner(DkimConfig.model_validate({"keys": [missing]}))
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a key")
    with pytest.raises(DkimKeyError, match="cannot sign"):
        DkimSigner(DkimConfig.model_validate({"keys": [{**keys["rsa"].config(), "key_file": str(garbage)}]}))


@pytest.mark.parametrize(
    ("header", "domain"),
    [
        (b"From: News <news@Acme.Test>", "acme.test"),
        (b'From: "Doe, J" <j@x.example>', "x.example"),
        (b"From: plain@y.example", "y.example"),
        (b"From:\r\n folded@z.example", "z.example"),
        (b"Subject: no from", None),
    ],
)
def test_from_domain(header: bytes, domain: str | None) -> None:
    assert from_domain(header + b"\r\n\r\nbody\r\n") == domain
