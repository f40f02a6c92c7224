"""Keys set from the environment: `MAILSTREAM_<SECTION>__<KEY>[__<KEY>...]=value` sets `section.key...`.

A container takes the shared file from a mount (a ConfigMap) and what differs per deployment or is secret
(API keys, SMTP users' hashes, relay passwords) from variables, so one file serves every environment and no
secret sits in it. Names are lower-cased (`MAILSTREAM_SCHEDULER__WEB_HOST` sets `scheduler.web_host`); a
value that starts with `[` or `{` is YAML flow, a list or mapping that replaces the file's
(`[{key: ..., admin: true}]`); any other value is a string, converted as the file's text would be (`"6066"`,
`"true"`, `"10s"`). Variables without `__` (MAILSTREAM_LOG_LEVEL, MAILSTREAM_RUN, ...) are not keys.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml

PREFIX = "MAILSTREAM_"
SEPARATOR = "__"


class VariableError(ValueError):
    """A variable that cannot be a key; the message names it."""


def key_variables(env: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """The variables that set keys, in name order (so a run does not depend on the environment's order),
    each with the key path it sets."""
    found: dict[str, tuple[str, ...]] = {}
    for name in sorted(env):
        if not name.startswith(PREFIX) or SEPARATOR not in name:
            continue
        path = tuple(part.lower() for part in name[len(PREFIX) :].split(SEPARATOR))
        if not all(path):
            raise VariableError(f"{name}: empty key name (write MAILSTREAM_SECTION__KEY)")
        found[name] = path
    return found


def _value(name: str, text: str) -> Any:
    if not text.lstrip().startswith(("[", "{")):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise VariableError(f"{name}: not a YAML list or mapping: {exc}") from None


def apply_environment(data: Mapping[str, Any], env: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """`data` (the parsed file, left unchanged) with the variables' keys set, and the names of those variables."""
    merged = copy.deepcopy(dict(data))
    variables = key_variables(env)
    for name, path in variables.items():
        node = merged
        for depth, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(path[: depth + 1])
                raise VariableError(f"{name}: {where} is not a mapping in the file, so it has no keys to set")
            node = child
        node[path[-1]] = _value(name, env[name])
    return merged, list(variables)
