"""The outbound deny list: special addresses are denied by default, listed networks too, and the allow list
(networks or single endpoints) overrides both."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from mailstream.core.address_policy import AddressPolicy, literal_address, parse_endpoint, special_kind


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("127.0.0.1", "loopback"),
        ("127.9.9.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # an IPv4-mapped address reaches the IPv4 one
        ("169.254.169.254", "link-local"),  # cloud metadata services
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("10.0.0.1", "private"),
        ("172.31.255.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("::ffff:10.1.2.3", "private"),
        ("192.0.2.10", "reserved"),  # documentation
        ("2001:db8::1", "reserved"),
        ("100.64.0.1", "reserved"),  # shared address space (CGNAT)
        ("240.0.0.1", "reserved"),
        ("198.18.0.1", "reserved"),  # benchmarking
        ("8.8.8.8", None),
        ("2a00:1450:4001:81b::200e", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_special_addresses_are_named(address: str, kind: str | None) -> None:
    assert special_kind(ip_address(address)) == kind


def test_the_default_denies_special_addresses_and_names_why() -> None:
    policy = AddressPolicy()
    assert policy.refusal("127.0.0.1", 25) == "loopback address"
    assert policy.refusal("10.0.0.1", 25) == "private address"
    assert policy.refusal("8.8.8.8", 25) is None


def test_the_allow_list_overrides_by_network_or_by_endpoint() -> None:
    policy = AddressPolicy.of(True, [], ["10.1.0.0/16", "127.0.0.1:2525", "[::1]:25", "192.168.0.7"])
    assert policy.refusal("10.1.200.3", 25) is None
    assert policy.refusal("10.2.0.1", 25) == "private address"
    assert policy.refusal("127.0.0.1", 2525) is None
    assert policy.refusal("127.0.0.1", 25) == "loopback address"  # the endpoint allows one port only
    assert policy.refusal("::1", 25) is None
    assert policy.refusal("192.168.0.7", 587) is None
    assert policy.refusal("192.168.0.8", 587) == "private address"


def test_listed_networks_are_denied_even_when_public_and_allowing_beats_denying() -> None:
    policy = AddressPolicy.of(True, ["8.8.8.0/24"], ["8.8.8.8:25"])
    assert policy.refusal("8.8.8.9", 25) == "in denied network 8.8.8.0/24"
    assert policy.refusal("8.8.8.8", 25) is None


def test_special_addresses_may_be_let_through_as_a_whole() -> None:
    policy = AddressPolicy.of(False, ["10.0.0.0/8"], [])
    assert policy.refusal("127.0.0.1", 25) is None
    assert policy.refusal("10.0.0.1", 25) == "in denied network 10.0.0.0/8"
    assert policy.refusal("::1", 25) is None  # an IPv4 network never matches an IPv6 address


def test_a_name_is_never_connected_to_unchecked() -> None:
    assert AddressPolicy().refusal("mx.example.com", 25) == "'mx.example.com' is not an IP address"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("10.0.0.1/8", "not a network"),  # host bits set: almost certainly a typo
        ("mx.example.com", "not a network"),
        ("mx.example.com:25", "must be an IP address"),
        ("127.0.0.1:0", "bad port"),
        ("127.0.0.1:99999", "bad port"),
        ("127.0.0.1:smtp", "bad port"),
        ("[::1]", "[address]:port"),
    ],
)
def test_bad_entries_say_what_is_wrong(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error.replace("[", r"\[").replace("]", r"\]")):
        parse_endpoint(text)


def test_entries_parse_into_networks_and_endpoints() -> None:
    assert str(parse_endpoint("fc00::/7")) == "fc00::/7"
    assert parse_endpoint("[::1]:2525") == (ip_address("::1"), 2525)


def test_an_ipv4_mapped_address_is_held_to_the_ipv4_lists() -> None:
    # ::ffff:10.0.0.1 reaches 10.0.0.1 on a dual-stack socket: a denied IPv4 network must deny it too.
    denying = AddressPolicy.of(False, ["10.0.0.0/8"], [])
    assert denying.refusal("::ffff:10.0.0.1", 25) == "in denied network 10.0.0.0/8"
    allowing = AddressPolicy.of(True, [], ["10.1.0.0/16", "127.0.0.1:2525"])
    assert allowing.refusal("::ffff:10.1.2.3", 25) is None
    assert allowing.refusal("::ffff:127.0.0.1", 2525) is None
    assert allowing.refusal("::ffff:127.0.0.1", 25) == "loopback address"
    mapped = AddressPolicy.of(True, ["::ffff:203.0.113.0/120"], ["[::ffff:127.0.0.1]:2525"])  # written mapped
    assert mapped.refusal("::ffff:127.0.0.1", 2525) is None
    assert mapped.refusal("::ffff:203.0.113.9", 25) == "in denied network ::ffff:cb00:7100/120"


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::ffff:10.0.0.1", "::ffff:a00:1"),
        # inet_aton's legacy forms, which a resolver turns into addresses without asking DNS
        ("127.1", "127.0.0.1"),
        ("10.0.1", "10.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.01", "127.0.0.1"),
        ("4294967295", "255.255.255.255"),
        # names, and what inet_aton refuses too
        ("hooks.example", None),
        ("localhost", None),
        ("4294967296", None),
        ("1.2.3.256", None),
        ("08", None),
        ("1.+2.3.4", None),
        ("1_0.1", None),
        ("1..2", None),
        ("", None),
    ],
)
def test_a_host_written_as_an_address_is_read_as_one(host: str, address: str | None) -> None:
    found = literal_address(host)
    assert (None if found is None else str(found)) == address
