"""docs/configuration.md is the model rendered, and the model documents every key it accepts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from mailstream.config import reference

COMMITTED = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def test_committed_reference_is_current() -> None:
    assert COMMITTED.read_text() == reference.render(), (
        "docs/configuration.md is stale: run `python -m mailstream.config.reference > docs/configuration.md`"
    )


def test_every_key_has_a_description() -> None:
    undocumented = [key for key, info in reference.fields() if not (info.description or "").strip()]
    assert undocumented == []


def test_every_number_has_a_unit() -> None:
    """Integers name their unit; durations, rates and windows carry theirs in the value ("20m", "100/h")."""
    missing = [
        key for key, info in reference.fields() if "integer" in reference.type_name(info) and not reference.unit(info)
    ]
    assert missing == []


def test_every_section_is_rendered() -> None:
    text = reference.render()
    keys = [section.key for section in reference.sections() if section.key]
    assert {
        "kafka",
        "egress.sources[]",
        "egress.sources[].relay",
        "egress.pools[].entries[]",
        "queues.rules[]",
        "tenants.<tenant>",
    } <= set(keys)
    for key in keys:
        assert f"`{key}`" in text


def test_defaults_render_as_a_user_writes_them() -> None:
    fields = dict(reference.fields())
    assert reference.default(fields["queues.max_age"]) == "`7d`"
    assert reference.default(fields["delivery.connect_timeout"]) == "`30s`"
    assert reference.default(fields["egress.daily_reset_timezone"]) == "`UTC`"
    assert reference.default(fields["gateway.users[].username"]) == "required"
    assert reference.default(fields["delivery.ehlo_domain"]) == "this host's name (FQDN)"  # not this machine's
    assert fields["queues.retry_interval"].default == timedelta(minutes=20)
    assert reference.type_name(fields["queues.retry_interval"]) == "[duration](#durations) > 0"
    assert reference.type_name(fields["egress.sources[].daily_limit"]) == "integer ≥ 1"
