"""Stage 2's MX-site cache: each distinct domain looked up once per batch and reused for its TTL, a failed
lookup keeps the site a domain had, a lookup that does not answer within the deadline counts as failed, and
the lookups of one batch are bounded. The lookup is injected (the loopback-DNS test drives the real one)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from mailstream.config.mx_sites import MxSitesConfig
from mailstream.core.mx_site import MxAnswer
from mailstream.scheduler.mx_sites import MxSites

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
SHARED = MxAnswer("ok", ((10, "mx1.provider.test."), (20, "mx2.provider.test.")), ttl=120)


class Answers:
    def __init__(self, table: dict[str, MxAnswer], slow: frozenset[str] = frozenset()) -> None:
        self.table, self.slow, self.asked = table, slow, list[str]()

    async def __call__(self, domain: str) -> MxAnswer:
        self.asked.append(domain)
        if domain in self.slow:
            await asyncio.sleep(30)
        return self.table.get(domain, MxAnswer("nxdomain"))


def sites(answers: Answers, **config: object) -> MxSites:
    return MxSites(MxSitesConfig.model_validate({"lookup_timeout": "1s", **config}), [], lookup=answers)


def test_domains_sharing_an_mx_share_a_site_and_each_is_asked_once_per_ttl() -> None:
    answers = Answers({"a.test": SHARED, "b.test": SHARED})
    cache = sites(answers)
    cache.prepare(["a.test", "b.test", "a.test"], NOW)
    assert sorted(answers.asked) == ["a.test", "b.test"]
    assert cache.site("a.test", NOW) == cache.site("b.test", NOW) == "(mx1|mx2).provider.test"
    cache.prepare(["a.test"], NOW + timedelta(seconds=119))
    assert len(answers.asked) == 2  # still fresh
    cache.prepare(["a.test"], NOW + timedelta(seconds=120))
    assert answers.asked[2:] == ["a.test"]
    cache.close()


def test_an_unknown_domain_is_its_own_site_until_the_next_prepare_looks_it_up() -> None:
    answers = Answers({"a.test": SHARED})
    cache = sites(answers)
    assert cache.site("a.test", NOW) == "a.test"  # no I/O here: wanted for the next batch
    cache.prepare([], NOW)
    assert answers.asked == ["a.test"]
    assert cache.site("a.test", NOW) == "(mx1|mx2).provider.test"
    cache.close()


def test_a_failed_lookup_keeps_the_site_the_domain_had_and_is_retried_after_failure_ttl() -> None:
    answers = Answers({"a.test": SHARED})
    cache = sites(answers, failure_ttl="1m")
    cache.prepare(["a.test"], NOW)
    answers.table["a.test"] = MxAnswer("failed", error="SERVFAIL")
    later = NOW + timedelta(seconds=200)
    cache.prepare(["a.test"], later)
    assert cache.site("a.test", later) == "(mx1|mx2).provider.test"
    cache.prepare(["a.test"], later + timedelta(seconds=59))
    assert answers.asked == ["a.test", "a.test"]
    cache.prepare(["a.test"], later + timedelta(seconds=60))
    assert answers.asked == ["a.test", "a.test", "a.test"]
    cache.close()


def test_a_lookup_unanswered_by_the_deadline_fails_without_holding_up_the_others() -> None:
    answers = Answers({"a.test": SHARED, "slow.test": SHARED}, slow=frozenset({"slow.test"}))
    cache = sites(answers, lookup_timeout="0.2s")
    cache.prepare(["slow.test", "a.test"], NOW)
    assert cache.site("slow.test", NOW) == "slow.test"
    assert cache.site("a.test", NOW) == "(mx1|mx2).provider.test"
    cache.close()


def test_nxdomain_and_null_mx_name_the_domain_itself_for_the_negative_ttl() -> None:
    answers = Answers({"null.test": MxAnswer("null", ttl=60)})
    cache = sites(answers, negative_ttl="5m")
    cache.prepare(["null.test", "gone.test"], NOW)
    assert (cache.site("null.test", NOW), cache.site("gone.test", NOW)) == ("null.test", "gone.test")
    cache.prepare(["null.test", "gone.test"], NOW + timedelta(minutes=4))
    assert len(answers.asked) == 2
    cache.close()


def test_one_batch_looks_up_at_most_max_lookups_per_batch_the_rest_next_time() -> None:
    domains = [f"d{i}.test" for i in range(250)]
    answers = Answers(dict.fromkeys(domains, SHARED))
    cache = sites(answers, max_lookups_per_batch=100)
    cache.prepare(domains, NOW)
    assert len(answers.asked) == 100
    cache.prepare([], NOW)
    cache.prepare([], NOW)
    assert sorted(answers.asked) == sorted(domains)
    cache.close()


def test_the_cache_forgets_the_least_recently_used_beyond_its_size() -> None:
    domains = [f"d{i}.test" for i in range(101)]
    cache = sites(Answers(dict.fromkeys(domains, SHARED)), cache_size=100)
    cache.prepare(domains[:100], NOW)
    cache.site("d0.test", NOW)  # used: d1 is now the oldest
    cache.prepare(domains[100:], NOW)
    assert cache.site("d0.test", NOW) == "(mx1|mx2).provider.test"
    assert cache.site("d1.test", NOW) == "d1.test"
    cache.close()
