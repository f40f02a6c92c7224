"""Egress paths round-trip between the pair and the `source->site` key on the wire."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailstream.config.model import parse_config
from mailstream.core.egress_path import SEPARATOR, EgressPath

sources = st.text(min_size=1).filter(lambda s: SEPARATOR not in s)
sites = st.text(min_size=1)


@given(sources, sites)
def test_a_path_parses_back_from_its_key(source: str, site: str) -> None:
    path = EgressPath(source, site)
    assert EgressPath.parse(path.key()) == path
    assert str(path) == path.key()


@pytest.mark.parametrize(
    ("path", "key"),
    [
        (EgressPath("mail2", "example.com"), "mail2->example.com"),
        (EgressPath("relayed", "relay.example.net:2587"), "relayed->relay.example.net:2587"),
        (EgressPath("direct", "[::1]:2525"), "direct->[::1]:2525"),
        (EgressPath("odd", "a->b"), "odd->a->b"),  # the first separator ends the source
    ],
)
def test_the_key_is_the_bytes_on_the_wire(path: EgressPath, key: str) -> None:
    assert path.key() == key
    assert EgressPath.parse(key) == path


@pytest.mark.parametrize("text", ["mail2", "", "->example.com", "mail2->"])
def test_what_is_not_a_path_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"path|site|source"):
        EgressPath.parse(text)


def test_a_source_whose_name_cannot_make_a_path_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="->"):
        parse_config(
            {"egress": {"sources": [{"name": "a->b"}], "pools": [{"name": "p", "entries": [{"name": "a->b"}]}]}}, env={}
        )
