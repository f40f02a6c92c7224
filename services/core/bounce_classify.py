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

Matching strategy. KumoMTA compiles all rules into one Rust RegexSet. Python's `re` has no
multi-pattern engine: an alternation `A|B` returns the leftmost *position*, not the lowest
rule, and the ordered form (`.*?A|.*?B` tried at position 0) is correct but measured ~10x
slower than searching each rule in turn, because every branch is retried at every position
and the per-pattern prefix scans are lost. So each rule is compiled on its own and searched
in order (exactly "lowest index wins"), behind a prefilter: the longest literal that every
match of the rule must contain (`_needle`), checked with `in` before the regex runs.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal, get_args

BounceType = Literal["hard", "soft", "block", "complaint", "unknown"]
BOUNCE_TYPES: frozenset[str] = frozenset(get_args(BounceType))
UNCATEGORIZED = "Uncategorized"
_BUNDLED_RULES = Path(__file__).with_name("bounce_rules.toml")

# A regex cut just finely enough to find literal text outside groups: an escape (with the
# digits or name that belong to it: `\x41` is not "41"), a character class (`]` first is a
# member, not the end), a counted repeat, or any other single character.
_TOKEN = re.compile(
    r"\\(?:x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|N\{[^}]*\}|[0-9]{1,3}|.)"
    r"|\[\^?\]?(?:\\.|[^\]\\])*\]|\{\d*,?\d*\}|.",
    re.DOTALL,
)
_PLAIN = re.compile(r"[A-Za-z0-9 ]")  # literal in any mode but verbose; lowercases in ASCII
_QUANTIFIER = re.compile(r"[*+?{]")


@dataclass(frozen=True, slots=True)
class Classification:
    bounce_class: str
    bounce_type: BounceType


@dataclass(frozen=True, slots=True)
class _Rule:
    needle: str  # text every match contains; "" when none was found, which every line contains
    folded: bool  # the rule ignores case: compare the needle with the lowercased line
    regex: re.Pattern[str]
    result: Classification


def flatten_response(code: int, enhanced_code: str | None, content: str) -> str:
    """`"<code> <x.y.z> <content>"` on one line: the shape every rule is written against."""
    text = " ".join(line.strip() for line in content.splitlines() if line.strip())
    return " ".join(part for part in (str(code), enhanced_code or "", text) if part)


def _needle(regex: re.Pattern[str]) -> str:
    """The longest run of letters, digits and spaces that every match must contain, or "".

    Deliberately conservative: only characters outside any group, not followed by a
    quantifier, in a pattern with no top-level `|` and not in verbose mode. Missing a needle
    only costs speed; a wrong one would skip a rule that matches.
    """
    if regex.flags & re.VERBOSE:
        return ""
    tokens = _TOKEN.findall(regex.pattern)
    depth, run, best = 0, "", ""
    for token, following in pairwise([*tokens, ""]):
        depth += (token == "(") - (token == ")")
        if token == "|" and depth == 0:
            return ""
        if depth == 0 and _PLAIN.fullmatch(token) and not _QUANTIFIER.match(following):
            run += token
            best = max(best, run, key=len)
        else:
            run = ""
    return best.lower() if regex.flags & re.IGNORECASE else best


def _table(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a table, got {type(value).__name__}")
    return value


def _compile(pattern: object, where: str) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise ValueError(f"{where}: expected a regex string, got {type(pattern).__name__}")
    try:
        return re.compile(pattern)
    except re.error as err:
        raise ValueError(f"{where}: invalid regex {pattern!r}: {err}") from None


class BounceClassifier:
    """Compiled rules. Immutable: build once, share (see `default`)."""

    __slots__ = ("_rules", "_uncategorized")

    def __init__(self, rules: Sequence[tuple[str, re.Pattern[str]]], types: dict[str, BounceType]) -> None:
        """`rules`: (class, regex) in precedence order. `from_toml` is the checked way in."""

        def result(name: str) -> Classification:
            return Classification(name, types.get(name, "unknown"))

        self._rules = tuple(
            _Rule(_needle(regex), bool(regex.flags & re.IGNORECASE), regex, result(name)) for name, regex in rules
        )
        self._uncategorized = result(UNCATEGORIZED)

    @classmethod
    def from_toml(cls, *texts: str) -> BounceClassifier:
        """Compile rule files; earlier files win, then earlier rules within a file."""
        rules: list[tuple[str, re.Pattern[str]]] = []
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
                        rules.append((name, _compile(pattern, f"{at}, pattern {i}")))
            for name, kind in _table(doc.get("types", {}), f"{where} types").items():
                if kind not in BOUNCE_TYPES:
                    allowed = ", ".join(sorted(BOUNCE_TYPES))
                    raise ValueError(f"{where} types, class {name!r}: {kind!r} is not one of {allowed}")
                types.setdefault(name, kind)
        return cls(rules, types)

    @classmethod
    def default(cls) -> BounceClassifier:
        """The bundled rules, compiled on first use and shared afterwards."""
        return _bundled()

    def classify(self, code: int, enhanced_code: str | None, content: str) -> Classification:
        """Class and type of one reply. Meant for 4xx/5xx; a 2xx will mostly be Uncategorized."""
        line = flatten_response(code, enhanced_code, content)
        # `(?i)` equals lowercasing only in ASCII: it also matches `s` to `ſ` and `i` to `ı`,
        # which `str.lower` leaves alone. Off ASCII, case-folded needles are not consulted.
        lowered = line.lower() if line.isascii() else None
        for rule in self._rules:
            haystack = lowered if rule.folded else line
            if haystack is not None and rule.needle not in haystack:
                continue
            if rule.regex.search(line):
                return rule.result
        return self._uncategorized


@cache
def _bundled() -> BounceClassifier:
    return BounceClassifier.from_toml(_BUNDLED_RULES.read_text(encoding="utf-8"))
