"""Reports received by mail need stage 1 to keep finished transactions; that costs memory and restore time in
proportion to volume, so it is off unless set, and bounce domains without it are refused at start-up."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mailstream.config.model import ConfigError, parse_config

BOUNCES = {"gateway": {"bounce_domains": [{"domain": "bounces.acme.test", "tenant": "acme"}]}}


def test_nothing_is_kept_by_default() -> None:
    assert parse_config({}, env={}).scheduler.report_window == timedelta(0)


def test_bounce_domains_without_a_window_are_refused_naming_both_settings() -> None:
    with pytest.raises(ConfigError, match=r"gateway\.bounce_domains.*scheduler\.report_window"):
        parse_config(BOUNCES, env={})


def test_bounce_domains_with_a_window_are_accepted() -> None:
    config = parse_config({**BOUNCES, "scheduler": {"report_window": "2d"}}, env={})
    assert config.scheduler.report_window == timedelta(days=2)
