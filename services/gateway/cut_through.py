"""What the reply to DATA says once each recipient's first delivery attempt is known, or is not (pure).

Koukan's table (reference/koukan-implementation.rst): a submission client expects the server to retry, so
temporary failures and timeouts are stored and forwarded behind a 250; an MTA sending to an ingress
listener retries itself, so it is told temporary failures as they are — and then mailstream must stop
retrying them, or the message would go out twice. A permanent failure every recipient got is passed on
verbatim, and those transactions end there: the client has been told, so no notification follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from mailstream.gateway.replies import reply, verbatim

Mode = Literal["submission", "ingress"]


@dataclass(frozen=True, slots=True)
class FirstAttempt:
    """The first attempt's reply to one recipient; None in `FirstAttempt | None` means no answer in time."""

    code: int
    enhanced: str | None
    text: str


class Then(Enum):
    """What becomes of a recipient's transaction after the reply."""

    FORWARD = "forward"  # it goes on as any accepted message: retried, and a DSN if it fails later
    CANCEL = "cancel"  # the client was told to retry itself: mailstream stops
    TOLD = "told"  # its permanent failure was the reply: no DSN


@dataclass(frozen=True, slots=True)
class Verdict:
    reply: str
    then: tuple[Then, ...]  # one per recipient, in order


def decide(mode: Mode, attempts: Sequence[FirstAttempt | None]) -> Verdict:
    if not attempts:
        raise ValueError("a DATA reply needs at least one recipient")
    n = len(attempts)
    permanent = [a for a in attempts if a is not None and a.code >= 500]
    if len(permanent) == n:
        first = permanent[0]
        return Verdict(verbatim(first.code, first.enhanced, first.text), (Then.TOLD,) * n)
    if mode == "ingress":
        temporary = [a for a in attempts if a is None or 400 <= a.code < 500]
        if len(temporary) == n:
            answered = [a for a in temporary if a is not None]
            told = (
                verbatim(answered[0].code, answered[0].enhanced, answered[0].text)
                if answered
                else reply(450, "4.4.1", "no answer from the destination in time, try again later")
            )
            return Verdict(told, (Then.CANCEL,) * n)
    if all(a is not None and a.code < 400 for a in attempts):
        return Verdict(reply(250, "2.0.0", "delivered"), (Then.FORWARD,) * n)
    return Verdict(reply(250, "2.0.0", "queued"), (Then.FORWARD,) * n)
