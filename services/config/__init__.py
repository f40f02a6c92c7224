"""Typed, validated configuration: one file, unknown keys refused, errors name the key."""

from mailstream.config.model import Config, ConfigError, load_config

__all__ = ["Config", "ConfigError", "load_config"]
