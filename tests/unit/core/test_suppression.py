"""The pure part of suppression lists: one address form, entry keys, which bounces suppress, expiry, filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailstream.core.suppression import (
    InvalidAddress,
    Suppressing,
    domain_of,
    entry_key,
    in_force,
    matches,
    normalise,
    parse_entry_key,
)

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("ann@example.com", "ann@example.com"),
        ("  Ann.Smith@Example.COM ", "ann.smith@example.com"),
        ("<ann@example.com>", "ann@example.com"),
        ("< ann@example.com >", "ann@example.com"),
        ("ann@example.com.", "ann@example.com"),
        ("ann@bücher.example", "ann@xn--bcher-kva.example"),
        ('"a@b"@example.com', '"a@b"@example.com'),  # the last @ splits
    ],
)
def test_an_address_has_one_form(given: str, normal: str) -> None:
    assert normalise(given) == normal
    assert normalise(normal) == normal  # idempotent


@pytest.mark.parametrize(
    "bad",
    ["", "ann", "@example.com", "ann@", "ann@.", "a nn@example.com", "ann@exa\nmple.com", "<ann@x>y", "a\x00@x.y"],
)
def test_what_is_no_address_is_refused(bad: str) -> None:
    with pytest.raises(InvalidAddress):
        normalise(bad)


def test_an_address_too_long_is_refused() -> None:
    with pytest.raises(InvalidAddress, match="longer than 254"):
        normalise("a" * 250 + "@example.com")


def test_an_idn_is_kept_under_the_a_label_mail_to_it_goes_to() -> None:
    # IDNA 2008 (UTS 46), as the MX lookup and the tenant's sender domains spell it: IDNA 2003 made straße.de
    # strasse.de, another domain, so an entry for the real A-label never held mail to the U-label.
    assert normalise("ann@straße.de") == normalise("ann@xn--strae-oqa.de") == "ann@xn--strae-oqa.de"
    assert normalise("ann@strasse.de") != normalise("ann@straße.de")
    assert normalise("ann@BÜCHER.example") == "ann@xn--bcher-kva.example"


def test_an_invalid_idn_is_refused() -> None:
    with pytest.raises(InvalidAddress, match="IDN"):
        normalise("ann@" + "ü" * 70 + ".example")


@pytest.mark.parametrize("tenant", ["acme", None])
def test_entry_keys_split_back(tenant: str | None) -> None:
    key = entry_key(tenant, "a!b@example.com")  # a local part may hold the separator: the first one splits
    assert parse_entry_key(key) == (tenant, "a!b@example.com")
    assert key == f"{tenant or ''}!a!b@example.com"


@pytest.mark.parametrize("bad", ["acme", "acme!", ""])
def test_a_key_of_no_entry_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="is not '<tenant>!<address>'"):
        parse_entry_key(bad)


def test_an_entry_applies_until_its_expiry() -> None:
    assert in_force(None, NOW)
    assert in_force(NOW + timedelta(seconds=1), NOW)
    assert not in_force(NOW, NOW)  # expires_at is the first instant it no longer applies
    assert not in_force(NOW - timedelta(days=1), NOW)


def test_only_the_configured_bounce_types_suppress_each_for_its_time() -> None:
    rules = Suppressing({"hard": None, "complaint": timedelta(days=30)})
    assert rules.suppresses("hard")
    assert rules.suppresses("complaint")
    assert not rules.suppresses("soft")
    assert not rules.suppresses("block")
    assert not rules.suppresses(None)
    assert rules.expires_at("hard", NOW) is None
    assert rules.expires_at("complaint", NOW) == NOW + timedelta(days=30)


def test_listing_filters() -> None:
    address = "ann.smith@example.com"
    assert domain_of(address) == "example.com"
    assert matches(address)
    assert matches(address, search="SMITH")
    assert not matches(address, search="bob")
    assert matches(address, domain="Example.com.")
    assert not matches(address, domain="ample.com")
    assert matches(address, search="ann", domain="example.com")
    assert not matches(address, search="ann", domain="other.test")
