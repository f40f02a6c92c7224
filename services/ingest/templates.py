"""Rendering users' Jinja templates within bounds of output size and cost.

A template is "plain" when it can only substitute (names, attribute and item lookups, cheap filters,
conditionals): its cost is linear in what it outputs, so it renders in the request's own process with its output
counted chunk by chunk. Anything else (loops, arithmetic, calls, macros) can cost without bound — `9 ** 9999999`
holds the interpreter in one C call, nested loops over `range` run for hours, `'x' * 10**9` allocates a gigabyte
— so it renders in a worker process (`render_pool`) under a memory limit, a timer and a kill. In both places the
environment refuses integer arithmetic past `MAX_INT_BITS` and repetition past the output limit before Python
starts the work.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, Template, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_INT_BITS = 64 * 1024  # ~20,000 decimal digits: more than any message needs, far less than an hour's work
# Filters whose cost is linear in their input and whose output is about as long.
CHEAP_FILTERS = frozenset(
    {
        "default",
        "d",
        "upper",
        "lower",
        "title",
        "capitalize",
        "trim",
        "e",
        "escape",
        "forceescape",
        "string",
        "safe",
        "urlencode",
        "length",
        "count",
        "first",
        "last",
        "int",
        "float",
        "abs",
        "round",
        "striptags",
    }
)
_PLAIN_NODES = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Name,
    nodes.Const,
    nodes.Getattr,
    nodes.Getitem,
    nodes.If,
    nodes.CondExpr,
    nodes.Compare,
    nodes.Operand,
    nodes.And,
    nodes.Or,
    nodes.Not,
    nodes.Test,
    nodes.Filter,
    nodes.Keyword,
    nodes.Concat,
)


class ExpansionTooLarge(ValueError):
    """A request's messages together would pass the request's limit: refused whole, before it is all in memory."""


class OutputTooLarge(ValueError):
    """A template's output (or a value it builds) would pass the output limit."""


class GuardedEnvironment(ImmutableSandboxedEnvironment):
    """Immutable (substitution values are shared by every recipient), strict about undefined names, and
    refusing `*` and `**` whose result would be huge before computing it."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, output_limit: int) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
        self.output_limit = output_limit

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right, self.output_limit)
        return super().call_binop(context, operator, left, right)


def _check_binop(operator: str, left: Any, right: Any, output_limit: int) -> None:
    ints = isinstance(left, int) and isinstance(right, int)
    if operator == "**" and ints and right > 0 and abs(left) > 1 and left.bit_length() * right > MAX_INT_BITS:
        raise SecurityError(f"{left.bit_length()}-bit number to the power {right} is past {MAX_INT_BITS} bits")
    if operator == "*":
        if ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SecurityError(f"product of numbers past {MAX_INT_BITS} bits")
        seq, times = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(seq, str | bytes | list | tuple) and isinstance(times, int) and len(seq) * times > output_limit:
            raise OutputTooLarge(f"repeating {len(seq)} items {times} times is past {output_limit}")


def is_plain(template: nodes.Template) -> bool:
    """Whether a parsed template only substitutes: see the module's docstring."""
    for node in template.find_all(nodes.Node):
        if not isinstance(node, _PLAIN_NODES):
            return False
        if isinstance(node, nodes.Filter | nodes.Test) and node.name not in CHEAP_FILTERS | {"defined", "none"}:
            return False
        if isinstance(node, nodes.Filter | nodes.Test) and (node.dyn_args or node.dyn_kwargs):
            return False
    return True


def render(template: Template, variables: Mapping[str, Any], limit: int) -> str:
    """The template's output; OutputTooLarge once it passes `limit` characters (counted as it is made)."""
    parts, size = [], 0
    for chunk in template.generate(variables):
        size += len(chunk)
        if size > limit:
            raise OutputTooLarge(f"renders to more than {limit} characters")
        parts.append(chunk)
    return "".join(parts)


def render_all(templates: Mapping[str, Template], variables: Mapping[str, Any], limit: int) -> dict[str, str] | str:
    """Each template rendered, or the error text of the first that fails (it names the template's path)."""
    rendered = {}
    for path, template in templates.items():
        try:
            rendered[path] = render(template, variables, limit)
        except OutputTooLarge as exc:
            return f"{path}: {exc}"
        except MemoryError:
            return f"{path}: rendering needs more memory than a template may use"
        # User templates can raise anything (1/0, a method on the wrong type); each such error belongs to
        # this recipient and must not abort the others.
        except Exception as exc:
            return f"{path}: cannot render template: {type(exc).__name__}: {exc}"
    return rendered
