"""The classification of every way a transaction ends or an attempt fails: (disposition, reply) -> class and type.

A reply a remote server sent is classified by its wording (`bounce_classify`). The rest are ours, and their
text is not evidence: a reply mailstream made itself (`mailstream: domain rbl.example does not exist`) names
domains and hosts that the wording rules would read as a block list. So an internal reply is classified by
its codes alone (4.4.3 DNSFailure, 5.1.2 and 5.1.10 BadDomain, 5.7.1 PolicyRelated, ...), and a disposition
with no reply of its own (an expiry, an administrator's bounce, a refusal by a queue's state or a tenant's
policy) by what it is. Class names are KumoMTA's where it has one; `AdminBounce` is ours, as KumoMTA logs it.
`complaint` is the type of feedback reports (`report_parse`), which no SMTP reply has.
"""

from __future__ import annotations

from typing import Literal

from mailstream.core.bounce_classify import BounceClassifier, Classification

# bounce: a reply ended it; transient: a reply deferred it; expiry: it outlived its max_age or lifetime;
# admin_bounce: an operator cancelled it (or its queue discards); refusal: a queue's state or the tenant's
# policy (suppression, limits) refused it before any attempt.
Disposition = Literal["bounce", "transient", "expiry", "admin_bounce", "refusal"]
INTERNAL_PREFIXES = ("mailstream:", "mailstream internal:")  # how the delivery worker's own replies begin

EXPIRED = Classification("MessageExpired", "soft")
# Says nothing about the address: soft, so no suppression rule that spares soft bounces lists it.
ADMIN_BOUNCE = Classification("AdminBounce", "soft")
REFUSED = Classification("PolicyRelated", "block")


def is_internal(content: str) -> bool:
    """The reply is one mailstream made (DNS, deny list, TLS policy, an unreadable task), not a server's."""
    return content.startswith(INTERNAL_PREFIXES)


def classify_disposition(
    kind: Disposition,
    code: int | None = None,
    enhanced_code: str | None = None,
    content: str = "",
    *,
    classifier: BounceClassifier | None = None,
) -> Classification:
    """Class and type of one disposition; `code` etc. are the reply that caused a bounce or a deferral."""
    if kind == "expiry":
        return EXPIRED
    if kind == "admin_bounce":
        return ADMIN_BOUNCE
    if kind == "refusal":
        return REFUSED
    if code is None:
        raise ValueError(f"a {kind} is classified from its reply")
    rules = classifier or BounceClassifier.default()
    return rules.classify(code, enhanced_code, "" if is_internal(content) else content)
