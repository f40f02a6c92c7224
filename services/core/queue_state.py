"""What the queue controls in force say about one scheduled queue (the email-queue model's queue states).

Each control covers a scope with one rule: `suspended` holds queued messages and accepts new ones,
`draining` delivers queued messages and refuses new ones, `disabled` holds queued messages (they still
expire) and refuses new ones, and `bounce` (KumoMTA's admin bounce) cancels queued and arriving
messages. Several controls may match one queue: their effects add up, and the state shown is the
strongest (a queue both suspended and draining behaves, and reads, as disabled).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

QueueStateName = Literal["active", "suspended", "draining", "disabled"]
RuleName = Literal["suspended", "draining", "disabled", "bounce"]
HOLDING = frozenset({"suspended", "disabled"})
REFUSING = frozenset({"draining", "disabled"})


@dataclass(frozen=True, slots=True)
class Verdict:
    state: QueueStateName = "active"
    holds: bool = False  # queued messages stay in the scheduled queue
    refusal: tuple[QueueStateName, str | None] | None = None  # (state, reason): new messages are refused
    bounce: str | None = None  # reason of a bounce in force: messages are cancelled

    @property
    def refuses(self) -> bool:
        return self.refusal is not None


ACTIVE = Verdict()


def verdict(rules: Iterable[tuple[RuleName, str | None]]) -> Verdict:
    """The combined effect of the (rule, reason) of every control matching a queue."""
    rules = list(rules)
    if not rules:
        return ACTIVE
    holds = any(rule in HOLDING for rule, _ in rules)
    refusing = sorted((rule != "disabled", reason or "") for rule, reason in rules if rule in REFUSING)
    bounce = next(((reason or "no reason given") for rule, reason in rules if rule == "bounce"), None)
    state: QueueStateName = (
        "disabled" if holds and refusing else "suspended" if holds else "draining" if refusing else "active"
    )
    refusal = (state, refusing[0][1] or None) if refusing else None  # a disabling control's reason first
    return Verdict(state=state, holds=holds, refusal=refusal, bounce=bounce)
