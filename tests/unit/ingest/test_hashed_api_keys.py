"""API keys may be configured as their SHA-256 (`key_sha256`), so the file holds no key; `mailstream
hash-api-key` makes a key and its hash."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from mailstream import cli
from mailstream.config.model import ConfigError, parse_config
from mailstream.ingest.auth import KeyRing
from tests.infra.ingest_app import IngestApp, problem

KEY = "tenant-key-9f8e7d6c5b4a39281706"
HASHED = hashlib.sha256(KEY.encode()).hexdigest()


async def test_a_key_given_as_its_hash_authenticates(tmp_path: Path) -> None:
    built = IngestApp.build(
        tmp_path / "status.sqlite3",
        api_keys=[{"key_sha256": HASHED, "tenant": "acme"}, {"key": "a" * 20, "admin": True}],
    )
    try:
        async with built.client(KEY) as client:
            assert (await client.get("/api/queue/servers")).status_code == 200
        async with built.client(HASHED) as client:  # the hash itself is not a key
            assert problem(await client.get("/api/queue/servers"), 401)["detail"] == "unknown API key"
    finally:
        built.close()


def test_a_hashed_key_and_its_plaintext_name_the_same_principal() -> None:
    config = parse_config(
        {"ingest": {"api_keys": [{"key_sha256": HASHED, "tenant": "acme"}, {"key": KEY, "tenant": "acme"}]}}, env={}
    )
    hashed, plain = config.ingest.api_keys
    ring = KeyRing([hashed])
    assert ring.authenticate(f"Bearer {KEY}") == KeyRing([plain]).authenticate(f"Bearer {KEY}")
    assert ring.authenticate(f"Bearer {KEY}").key_id == HASHED[:16]  # limits and idempotency scopes keep their ids


@pytest.mark.parametrize(
    "entry",
    [
        {"key_sha256": HASHED, "key": KEY, "tenant": "acme"},  # both
        {"tenant": "acme"},  # neither
        {"key_sha256": HASHED[:-1], "tenant": "acme"},  # not 64 digits
        {"key_sha256": HASHED.upper(), "tenant": "acme"},  # hex as the command prints it: lower case
    ],
)
def test_an_entry_needs_exactly_one_well_formed_key(entry: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"ingest\.api_keys\.0"):
        parse_config({"ingest": {"api_keys": [entry]}}, env={})


def test_hash_api_key_prints_a_new_key_and_its_hash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["mailstream", "hash-api-key"])
    assert cli.main() == 0
    first = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert cli.main() == 0
    second = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert first["key"] != second["key"]  # 256 random bits each time
    assert len(first["key"]) >= 43
    assert first["key_sha256"] == hashlib.sha256(first["key"].encode()).hexdigest()
    config = parse_config({"ingest": {"api_keys": [{"key_sha256": first["key_sha256"], "admin": True}]}}, env={})
    assert KeyRing(config.ingest.api_keys).authenticate(f"Bearer {first['key']}").admin
