"""Choosing among weighted entries (egress sources, MX hosts) the way KumoMTA does: LVS weighted round robin.

Unlike a hash or a random draw, WRR gives exact proportions over every cycle of sum(weights) / gcd(weights) picks,
and its state is two integers that an event can carry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WrrState:
    """The last index picked and the weight level being served; the default starts a fresh cycle."""

    index: int = -1
    current_weight: int = 0


def _always(_: int) -> bool:
    return True


def wrr_next(
    weights: Sequence[int], state: WrrState, eligible: Callable[[int], bool] = _always
) -> tuple[int | None, WrrState]:
    """(index, new state) of the next entry; (None, state) when no entry with a positive weight is eligible.

    Weight-0 entries are never picked; ineligible ones are passed over as if their weight were too low this turn.
    A state left by a different list of weights is accepted and settles into the new cycle.
    """
    if any(weight < 0 for weight in weights):
        raise ValueError(f"weights must not be negative: {list(weights)}")
    if not any(weight > 0 and eligible(i) for i, weight in enumerate(weights)):
        return None, state
    step = math.gcd(*weights)
    top = max(weights)
    index = state.index if -1 <= state.index < len(weights) else -1
    current = min(state.current_weight, top)
    while True:
        index = (index + 1) % len(weights)
        if index == 0:
            current -= step
            if current <= 0:
                current = top
        if weights[index] >= current and eligible(index):
            return index, WrrState(index, current)


def most_remaining(remaining: Sequence[int | None], eligible: Callable[[int], bool] = _always) -> int | None:
    """Index of the eligible entry with the most capacity left (None = unlimited, the most); lowest index on ties.

    Entries with nothing left (≤ 0) are never chosen, so None also means every eligible entry is exhausted.
    """
    best: int | None = None
    for i, left in enumerate(remaining):
        if (left is not None and left <= 0) or not eligible(i):
            continue
        if best is None or _more(left, remaining[best]):
            best = i
    return best


def _more(left: int | None, than: int | None) -> bool:
    if than is None:
        return False
    return left is None or left > than
