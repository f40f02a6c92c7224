"""Bounce classification: an SMTP reply -> a KumoMTA bounce class and our BounceType.

Rules are data (`bounce_rules.toml` beside this module) in KumoMTA's rule-file format: `[rules]`
maps a class name to a list of regexes, each searched in the reply flattened to one line.
The rule with the lowest index that matches anywhere wins; index = file load order, then
order within the file, so override files go first. No match -> `Uncategorized`.

Two extensions, both optional, so KumoMTA's own files load unchanged:
- `[types]` maps a class to a BounceType (hard/soft/block/complaint/unknown); a class without
  an entry is "unknown", and the first file to type a class wins, like the rules.
- `[[rules]]`, an array of rule tables read in order, lets one file hold several tiers. A single
  TOML table cannot: a class is one key, so all its patterns would share one position.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args

BounceType = Literal["hard", "soft", "block", "complaint", "unknown"]
BOUNCE_TYPES: frozenset[str] = frozenset(get_args(BounceType))
UNCATEGORIZED = "Uncategorized"
_BUNDLED_RULES = Path(__file__).with_name("bounce_rules.toml")

# Python 3.11 refuses global flags such as `(?i)` anywhere but the very start of a pattern, and
# in the combined pattern every rule sits mid-expression, so they are turned into scoped flags.
_LEADING_FLAGS = re.compile(r"\(\?([aiLmsux]+)\)")
# Group numbers and names shift or clash once patterns are combined, so a backreference, a
# conditional or a named group would silently change meaning; refuse them. (KumoMTA's Rust
# regexes have no backreferences either.) The look-behind skips escaped backslashes.
_GROUP_REFERENCE = re.compile(r"(?<!\\)(?:\\\\)*(?:\\[1-9]|\(\?P[<=]|\(\?\()")


@dataclass(frozen=True, slots=True)
class Classification:
    bounce_class: str
    bounce_type: BounceType


def flatten_response(code: int, enhanced_code: str | None, content: str) -> str:
    """`"<code> <x.y.z> <content>"` on one line: the shape every rule is written against."""
    text = " ".join(line.strip() for line in content.splitlines() if line.strip())
    return " ".join(part for part in (str(code), enhanced_code or "", text) if part)


def _table(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a table, got {type(value).__name__}")
    return value


def _branch_body(pattern: object, where: str) -> str:
    """Validate one rule and return it in the scoped form it takes inside the combined pattern."""
    if not isinstance(pattern, str):
        raise ValueError(f"{where}: expected a regex string, got {type(pattern).__name__}")
    if _GROUP_REFERENCE.search(pattern):
        raise ValueError(f"{where}: named groups, backreferences and conditionals are not supported")
    flags = _LEADING_FLAGS.match(pattern)
    body = f"(?{flags[1]}:{pattern[flags.end():]})" if flags else f"(?:{pattern})"
    # Both forms must compile: the rule as written (so `a)|(b`, invalid alone, is not smuggled
    # in by our wrapping) and the scoped form (a `(?x)` comment would swallow our parenthesis).
    for form in (pattern, body):
        try:
            re.compile(form)
        except re.error as err:
            raise ValueError(f"{where}: invalid regex {pattern!r}: {err}") from None
    return body


class BounceClassifier:
    """Rules compiled into one pattern. Immutable: build once, share (see `default`)."""

    __slots__ = ("_pattern", "_results")

    def __init__(self, rules: Sequence[tuple[str, str]], types: dict[str, BounceType]) -> None:
        """`rules`: (class, scoped body) in precedence order. Use `from_toml`, which validates."""

        def result(name: str) -> Classification:
            return Classification(name, types.get(name, "unknown"))

        # Why not a plain `A|B|C` search: alternation returns the leftmost *position*, so a low
        # rule matching late in the line would lose to a high rule matching early. Instead the
        # pattern is tried at position 0 only (`match`), each branch led by a lazy `.*?`: the
        # engine exhausts every start position of branch i before it tries branch i+1, which is
        # "lowest rule index that matches anywhere" (KumoMTA's RegexSet order) in one C call.
        # A branch's own pattern is searched anywhere, but `^` still means start of the line.
        branches = "|".join(f".*?(?P<r{i}>{body})" for i, (_, body) in enumerate(rules))
        self._pattern = re.compile(branches or "(?!)")  # no rules: match nothing
        # The named group of the winning branch closes last, so it is `lastgroup`.
        self._results: dict[str | None, Classification] = {
            f"r{i}": result(name) for i, (name, _) in enumerate(rules)
        }
        self._results[None] = result(UNCATEGORIZED)

    @classmethod
    def from_toml(cls, *texts: str) -> BounceClassifier:
        """Compile rule files; earlier files win, then earlier rules within a file."""
        rules: list[tuple[str, str]] = []
        types: dict[str, BounceType] = {}
        for file_no, text in enumerate(texts):
            where = f"rule file {file_no}"
            doc = tomllib.loads(text)
            if unknown := sorted(doc.keys() - {"rules", "types"}):
                raise ValueError(f"{where}: unknown keys {unknown}")
            tables = doc.get("rules", {})
            for table_no, table in enumerate(tables if isinstance(tables, list) else [tables]):
                for name, patterns in _table(table, f"{where} rules #{table_no}").items():
                    at = f"{where} rules #{table_no}, class {name!r}"
                    if not isinstance(patterns, list):
                        raise ValueError(f"{at}: expected a list of regexes")
                    for i, pattern in enumerate(patterns):
                        rules.append((name, _branch_body(pattern, f"{at}, pattern {i}")))
            for name, kind in _table(doc.get("types", {}), f"{where} types").items():
                if kind not in BOUNCE_TYPES:
                    raise ValueError(
                        f"{where} types, class {name!r}: {kind!r} is not one of {sorted(BOUNCE_TYPES)}"
                    )
                types.setdefault(name, kind)
        return cls(rules, types)

    @classmethod
    def default(cls) -> BounceClassifier:
        """The bundled rules, compiled on first use and shared afterwards."""
        return _bundled()

    def classify(self, code: int, enhanced_code: str | None, content: str) -> Classification:
        """Class and type of one reply. Meant for 4xx/5xx; a 2xx will mostly be Uncategorized."""
        m = self._pattern.match(flatten_response(code, enhanced_code, content))
        return self._results[m.lastgroup if m else None]


@cache
def _bundled() -> BounceClassifier:
    return BounceClassifier.from_toml(_BUNDLED_RULES.read_text(encoding="utf-8"))
