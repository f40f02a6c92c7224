"""Stage 2's MX sites: each routing domain's site looked up before a batch's transaction, cached by TTL.

Stage 2 is a Kafka-transactional processor, so its I/O must be bounded and outside the transaction:
`prepare` (the processor calls it before each batch and tick) looks up, at once and within one
deadline, the distinct domains the batch brings and those the stage asked about since (held mail
restored after a restart, an answer gone stale). `site` only reads what was found, so deciding a
message's path never waits for DNS; the decision is then recorded in the task's `egress_path` and
the path's rate state, so a replay reads it instead of asking again. A stale answer is used until
its refresh comes back; a domain never answered is named by itself (the path key it always had).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter

from mailstream.config.mx_sites import MxSitesConfig
from mailstream.core.mx_site import MxAnswer, site_of_answer
from mailstream.dns_lookup import build_resolver, lookup_mx
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
LOOKUPS = Counter("mailstream_mx_site_lookups_total", "Stage 2's MX lookups for egress path sites", ["status"])

Lookup = Callable[[str], Awaitable[MxAnswer]]


@dataclass(frozen=True, slots=True)
class Known:
    site: str
    valid_until: datetime
    status: str


class MxSites:
    def __init__(self, config: MxSitesConfig, nameservers: list[str], lookup: Lookup | None = None) -> None:
        self._config = config
        self._times = config.cache_times()
        self._timeout = config.lookup_timeout.total_seconds()
        self._nameservers = nameservers
        self._lookup = lookup
        self._known: OrderedDict[str, Known] = OrderedDict()  # least recently used first
        self._wanted: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def site(self, domain: str, now: datetime) -> str:
        """The domain's MX site as last found; the domain itself if none was. Never does I/O: a domain unknown
        or stale is looked up by the next `prepare`."""
        known = self._known.get(domain)
        if known is None:
            self._wanted.add(domain)
            return domain
        self._known.move_to_end(domain)
        if known.valid_until <= now:
            self._wanted.add(domain)
        return known.site

    def want(self, domain: str) -> None:
        """Look the domain up before the next batch (mail restored from state that will need its site)."""
        if domain not in self._known:
            self._wanted.add(domain)

    def prepare(self, domains: Iterable[str], now: datetime) -> None:
        """Look up, within `lookup_timeout` altogether, the domains not known or stale: these and those wanted."""
        due = [d for d in dict.fromkeys([*domains, *sorted(self._wanted)]) if not self._fresh(d, now)]
        batch, rest = due[: self._config.max_lookups_per_batch], due[self._config.max_lookups_per_batch :]
        self._wanted = set(rest)
        if not batch:
            return
        answers = asyncio.run_coroutine_threadsafe(self._resolve(batch), self._running_loop()).result()
        for domain, answer in answers.items():
            self._remember(domain, answer, now)

    def _fresh(self, domain: str, now: datetime) -> bool:
        known = self._known.get(domain)
        return known is not None and known.valid_until > now

    def _remember(self, domain: str, answer: MxAnswer, now: datetime) -> None:
        LOOKUPS.labels(answer.status).inc()
        previous = self._known.get(domain)
        site = site_of_answer(domain, answer)
        if answer.status == "failed":
            # Not a verdict on the domain: keep the site it had (else its own name) and ask again later.
            log.warning("mx_site_lookup_failed", domain=domain, error=answer.error, kept=previous is not None)
            site = previous.site if previous is not None else site
        elif previous is None or previous.site != site:
            log.info("mx_site", domain=domain, site=site, status=answer.status, previous=previous and previous.site)
        self._known[domain] = Known(site, self._times.valid_until(answer, now), answer.status)
        self._known.move_to_end(domain)
        while len(self._known) > self._config.cache_size:
            self._known.popitem(last=False)

    async def _resolve(self, domains: list[str]) -> dict[str, MxAnswer]:
        lookup = self._lookup or self._default_lookup()
        tasks = {d: asyncio.ensure_future(lookup(d)) for d in domains}
        _, pending = await asyncio.wait(tasks.values(), timeout=self._timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        answers: dict[str, MxAnswer] = {}
        for domain, task in tasks.items():
            if task.cancelled():
                answers[domain] = MxAnswer("failed", error=f"no answer within {self._timeout:g}s")
            elif task.exception() is not None:
                answers[domain] = MxAnswer("failed", error=repr(task.exception()))
            else:
                answers[domain] = task.result()
        return answers

    def _default_lookup(self) -> Lookup:
        resolver = build_resolver(self._nameservers, self._timeout)
        self._lookup = lambda domain: lookup_mx(resolver, domain)
        return self._lookup

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """A loop of its own on a daemon thread: the stage's thread has none, and a test's may be running."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="mx-sites", daemon=True)
            self._thread.start()
        return self._loop

    def close(self) -> None:
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
