"""Limit state that changes owner when a new configuration regroups the egress pools.

A source's counters live in the partition of its egress group (the pools that share it). Regroup
the pools and that group, with its key, changes: the old partition sends each counter it no longer
owns to the new owner (a UsageHandover on mail.ready, keyed by the new group) and the new owner adds
it to its own, so the day's count survives the change instead of starting again at zero.
"""

from __future__ import annotations

from mailstream.events.records import LimitState
from mailstream.scheduler.egress_keys import PathRate, Scope, SourceLimit
from mailstream.scheduler.policy import Policies

HANDED_OVER = (SourceLimit, PathRate)  # a source's day and sliding window, a path's rate; rotations just restart


def scope_group(policies: Policies, scope: Scope) -> str | None:
    """The egress group that owns a limit scope under the current configuration (None: nothing does)."""
    if isinstance(scope, SourceLimit):
        return policies.group_of_source(scope.name)
    if isinstance(scope, PathRate):
        return policies.group_of_source(scope.path.source)
    return policies.groups.get(scope.pool)


def merge_usage(mine: LimitState, handed: LimitState) -> LimitState:
    """Counters of one scope kept by two partitions, as one: sends of the same day add up (each
    partition counted its own), an older day's count gives way to a newer one."""
    if mine.day == handed.day:
        day, used = mine.day, mine.used + handed.used
    elif (mine.day or "") > (handed.day or ""):
        day, used = mine.day, mine.used
    else:
        day, used = handed.day, handed.used
    tats = [t for t in (mine.tat, handed.tat) if t is not None]
    return mine.model_copy(
        update={
            "day": day,
            "used": used,
            "sends": tuple(sorted(mine.sends + handed.sends)),
            "tat": max(tats) if tats else None,
        }
    )
