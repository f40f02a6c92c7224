"""MTA-STS policies of recipient domains (RFC 8461): looked up, fetched over verified HTTPS, cached, applied.

Discovery follows §5: the `_mta-sts.<domain>` TXT record (through the same resolver as the MX lookups)
gives the policy id; a cached policy whose id it names, and whose max_age has not run out, is used as
it is; otherwise the policy is fetched from `https://mta-sts.<domain>/.well-known/mta-sts.txt`. The
policy host's address is checked by `delivery.outbound` like any other (a tenant's domain must not turn
the fetch into a request to a private address); the request goes to that address with the certificate
verified against the host name, follows no redirect (§3.3), and reads at most `max_policy_size`. Any
failure (no TXT record, a lookup or fetch that fails, a policy that does not parse) leaves the cached
policy in use, or none: delivery then goes on as if the domain had no policy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from prometheus_client import Counter

from mailstream.config.mta_sts import MtaStsConfig
from mailstream.core.address_policy import AddressPolicy
from mailstream.core.clock import Clock
from mailstream.core.mta_sts import Policy, PolicyError, parse_policy, txt_id
from mailstream.delivery.mx import MxResolver
from mailstream.delivery.smtp_client import Destination, SessionSettings
from mailstream.events.records import SmtpResponse
from mailstream.observability.logs import get_logger

log = get_logger(__name__)
VIOLATIONS = Counter(
    "mailstream_delivery_mta_sts_violations_total",
    "MX host sets an MTA-STS policy did not fully allow, by the policy's mode",
    ["mode"],  # enforce: the hosts not named were skipped (none left: deferred); testing: delivered anyway
)
FETCHES = Counter("mailstream_delivery_mta_sts_fetches_total", "MTA-STS policy fetches by result", ["result"])
REMEMBERED = 10_000  # domains whose policy is cached


class FetchError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Cached:
    policy: Policy
    ident: str
    expires: datetime


class MtaSts:
    def __init__(
        self, config: MtaStsConfig, mx: MxResolver, outbound: AddressPolicy, ca_file: str | None, clock: Clock
    ) -> None:
        self._config = config
        self._mx = mx
        self._outbound = outbound
        self._tls = ssl.create_default_context(cafile=ca_file)
        self._clock = clock
        self._cache: OrderedDict[str, _Cached] = OrderedDict()

    async def policy(self, domain: str) -> Policy | None:
        """The domain's policy in force, or None. (Connections opened at once for a domain not yet cached may
        each fetch it: the same answer, written more than once.)"""
        domain = domain.lower().rstrip(".")
        now = self._clock()
        cached = self._cache.get(domain)
        valid = cached if cached is not None and cached.expires > now else None
        kept = valid.policy if valid is not None else None
        records = await self._mx.txt(f"_mta-sts.{domain}")
        ident = txt_id(records or [])
        if ident is None or (valid is not None and valid.ident == ident):
            return kept
        try:
            async with asyncio.timeout(self._config.fetch_timeout.total_seconds()):
                fetched = parse_policy(await self._fetch(domain))
        except (FetchError, PolicyError, TimeoutError, httpx.HTTPError, ssl.SSLError, OSError, ValueError) as exc:
            FETCHES.labels("failed").inc()
            log.warning("mta_sts_fetch_failed", domain=domain, error=str(exc) or type(exc).__name__, cached=bool(kept))
            return kept
        FETCHES.labels("fetched").inc()
        self._cache[domain] = _Cached(fetched, ident, now + timedelta(seconds=fetched.max_age))
        self._cache.move_to_end(domain)
        if len(self._cache) > REMEMBERED:
            self._cache.popitem(last=False)
        log.info("mta_sts_policy", domain=domain, mode=fetched.mode, mx=list(fetched.mx), max_age=fetched.max_age)
        return fetched

    async def _fetch(self, domain: str) -> str:
        host, port = f"mta-sts.{domain}", self._config.https_port
        addresses = await self._mx.addresses(host)
        if not addresses:
            raise FetchError(f"{host} has no address")
        allowed = [a for a in addresses if self._outbound.refusal(a, port) is None]
        if not allowed:
            raise FetchError(f"every address of {host} ({', '.join(addresses)}) is denied by delivery.outbound")
        address = f"[{allowed[0]}]" if ":" in allowed[0] else allowed[0]
        authority = host if port == 443 else f"{host}:{port}"
        limit = self._config.max_policy_size
        async with (
            httpx.AsyncClient(verify=self._tls, follow_redirects=False, trust_env=False) as client,
            client.stream(
                "GET",
                f"https://{address}:{port}/.well-known/mta-sts.txt",
                headers={"Host": authority},
                extensions={"sni_hostname": host},  # the certificate must name the policy host, not the address
            ) as response,
        ):
            if response.status_code != 200:
                raise FetchError(f"https://{authority}/.well-known/mta-sts.txt answered {response.status_code}")
            if not response.headers.get("content-type", "").lower().startswith("text/plain"):
                raise FetchError(f"the policy is {response.headers.get('content-type')!r}, not text/plain")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise FetchError(f"the policy is larger than {limit} bytes")
        return body.decode("utf-8", "replace")


def applied(
    policy: Policy | None, domain: str, hosts: list[Destination], settings: SessionSettings
) -> tuple[list[Destination], SessionSettings] | SmtpResponse:
    """The MX hosts and session settings under the domain's policy: `enforce` keeps the hosts it names and
    requires STARTTLS with a certificate verified against the MX name (none named: deferred, 451 4.7.5);
    `testing` logs and counts what enforce would refuse and changes nothing; `none` or no policy: nothing."""
    if policy is None or policy.mode == "none":
        return hosts, settings
    named = [h for h in hosts if h.name is not None and policy.permits(h.name)]
    if len(named) < len(hosts):
        VIOLATIONS.labels(policy.mode).inc()
        others = sorted({h.name or h.host for h in hosts if h not in named})
        log.warning("mta_sts_mx_not_in_policy", domain=domain, mode=policy.mode, hosts=others, policy=list(policy.mx))
        if policy.mode == "testing":
            return hosts, settings
        if not named:
            return SmtpResponse(
                code=451,
                enhanced_code="4.7.5",
                command="MX",
                content=f"mailstream: no MX host of {domain} ({', '.join(others)}) is named by its MTA-STS policy "
                f"({', '.join(policy.mx)})",
            )
    elif policy.mode == "testing":
        return hosts, settings
    return named, dataclasses.replace(settings, starttls="required")
