"""Stage 2, egress: hold ready messages until a source of their pool has capacity, then emit the task.

mail.ready is keyed by egress group (pools that share a source), so one partition owns every source
of the group: a source's daily cap, sliding window and send window, and each path's
max_message_rate, are decided in one place, and the pool's choice (weighted round robin or most
remaining capacity) sees every source's true usage. Tasks go to mail.delivery keyed by egress path,
and a notice of each to mail.dispatched (keyed by route key) so stage 1 shows it in_delivery. Every
few seconds each source's usage goes to mail.source-usage for the capacity API.

A CancelNotice from stage 1 follows the promotion on the same partition: if the attempt is still held
it is dropped and answered with an EgressVerdict CANCELLED (as one that expires while held is answered
EXPIRED); if it was already dispatched, the attempt goes on and stage 1 ends it on its response.

Mail delivered by MX travels the path `source-><MX site>` (`mailstream.scheduler.mx_sites`): the
routing domains of a batch are looked up in `prepare`, before its transaction, and the site found is
written into the task's `egress_path`, so domains sharing an MX share one path's rate here and its
connections in the delivery worker.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mailstream.config.scheduling import EgressPool, EgressSource
from mailstream.core import sliding_window
from mailstream.core.daily_limit import day_of, next_reset, remaining
from mailstream.core.egress_path import EgressPath
from mailstream.core.fair_queue import FairQueue
from mailstream.core.partitioner import partition_of
from mailstream.core.round_robin import WrrState, most_remaining, wrr_next
from mailstream.core.throttle import Gcra, ThrottleSpec, admit, next_admit_at
from mailstream.events.handler import Writes
from mailstream.events.legacy import as_cancel_notice
from mailstream.events.records import (
    CancelNotice,
    DeliveryTask,
    Dispatched,
    EgressSettlement,
    EgressVerdict,
    EgressVerdictKind,
    LimitState,
    ReadyMessage,
    ShapingControl,
    SourceUsage,
    UsageHandover,
)
from mailstream.events.serde import SerdeError, decode, encode
from mailstream.events.topics import DELIVERY, DISPATCHED, PARTITIONS, READY, RESPONSES, SOURCE_USAGE, route_key
from mailstream.observability.logs import get_logger
from mailstream.scheduler import egress_keys
from mailstream.scheduler.egress_keys import Held, PathRate, Rotation, Settlement, SourceLimit
from mailstream.scheduler.handover import HANDED_OVER, merge_usage, scope_group
from mailstream.scheduler.mx_sites import MxSites
from mailstream.scheduler.packed import PackedValues
from mailstream.scheduler.policy import Policies
from mailstream.scheduler.shaping import Shaped, ShapingBook, rate
from mailstream.scheduler.stage import Coalesced, Limits, Snapshots, Timers, counted, daily, entries, handler_call, send

log = get_logger(__name__)
REANNOUNCE = timedelta(seconds=5)
NO_SOURCE_RETRY = timedelta(minutes=1)  # a pool with no usable source at all is looked at again soon
HOT = 512  # decoded messages kept per partition: most are released as soon as they arrive


def _window(source: EgressSource) -> sliding_window.SlidingWindow | None:
    limit = source.sliding_window
    return sliding_window.SlidingWindow(limit.limit, limit.span) if limit is not None else None


@dataclass(frozen=True, slots=True)
class Candidate:
    index: int
    source: EgressSource
    domain: str
    site: str
    path: str  # EgressPath(source, site).key(): mail.delivery's key


@dataclass(slots=True)
class EgressBook:
    held: PackedValues = field(default_factory=PackedValues)  # encoded ReadyMessage by transaction id
    hot: dict[str, ReadyMessage] = field(default_factory=dict)  # decoded, of the messages held last
    lanes: FairQueue = field(default_factory=FairQueue)
    deadlines: Timers = field(default_factory=Timers)
    limits: Limits[egress_keys.Scope] = field(default_factory=Limits)
    settled_under: str | None = None  # the egress grouping this partition last handed over under
    heard: set[int] = field(default_factory=set)  # partitions that have settled under it too
    announce_at: datetime | None = None  # while not all have: when to tell them again
    shaping: ShapingBook = field(default_factory=ShapingBook)  # shaping rules' counts and actions on paths


class EgressStage:
    def __init__(
        self,
        policies: Policies,
        *,
        release_budget: int = 2000,
        snapshot_every: timedelta = timedelta(seconds=2),
        partitions: int = PARTITIONS,
        sites: MxSites | None = None,
    ) -> None:
        self.policies = policies
        self.sites = sites  # None: MX-delivered paths are named by the routing domain
        self._decoded: dict[int, tuple[bytes, ReadyMessage]] = {}  # this batch's messages, by id of the value
        self.partitions = partitions
        self._owners: dict[str, int] = {}  # egress group -> its partition
        self.books: dict[int, EgressBook] = {}
        self.budget = release_budget
        self.snapshots = Snapshots(SOURCE_USAGE, snapshot_every)

    # -- PartitionHandler ------------------------------------------------------------------------
    def assigned(self, partition: int, state: dict[bytes, bytes]) -> None:
        book = self.books[partition] = EgressBook()
        for key, value in entries(state, egress_keys.parse, partition):
            match key:
                case Held():
                    ready = decode(value, ReadyMessage)
                    self._hold(book, ready, value)
                    self._want_site(ready)
                case Settlement():
                    settlement = decode(value, EgressSettlement)
                    book.settled_under, book.heard = settlement.fingerprint, set(settlement.partitions)
                case Shaped():
                    book.shaping.restore(value)
                case _:
                    book.limits.restore(key, value)
        book.held.pack()
        self.snapshots.forget()  # sources are not keyed by partition: republish them all

    def revoked(self, partition: int) -> None:
        self.books.pop(partition, None)

    def prepare(self, records: Sequence[tuple[int, str, bytes]], now: datetime) -> None:
        """Look up the MX sites of the batch's new mail, each routing domain once, before its transaction."""
        self._decoded.clear()
        if self.sites is None:
            return
        domains = []
        for _, topic, value in records:
            if topic != READY.name:
                continue
            try:
                record = READY.decode(value)
            except SerdeError:
                continue  # on_record sets it aside
            if isinstance(record, ReadyMessage):
                self._decoded[id(value)] = (value, record)  # the value held, so its id is not reused in the batch
                if self._by_mx(record):
                    domains.append(record.routing_domain or record.domain)
        self.sites.prepare(domains, now)

    def _by_mx(self, ready: ReadyMessage) -> bool:
        """Whether some source the message may leave by sends to MX hosts (no relay, no smarthost)."""
        if self.policies.config.delivery.smarthost is not None:
            return False
        pool = self._pool(ready)
        return any((s := self.policies.source(e.name)) is not None and s.relay is None for e in pool.entries)

    def _want_site(self, ready: ReadyMessage) -> None:
        if self.sites is not None and self._by_mx(ready):
            self.sites.want(ready.routing_domain or ready.domain)

    def on_record(
        self, partition: int, topic: str, key: bytes | None, value: bytes, now: datetime, out: Writes
    ) -> None:
        if topic != READY.name:
            return
        with handler_call(out, lambda: self._pack([partition])) as batched:
            self._on_record(partition, value, now, batched)

    def on_tick(self, now: datetime, out: Writes) -> None:
        with handler_call(out, lambda: self._pack(list(self.books))) as batched:
            self._on_tick(now, batched)

    def _pack(self, partitions: list[int]) -> None:
        for partition in partitions:
            if partition in self.books:
                self.books[partition].held.pack()

    def _on_record(self, partition: int, value: bytes, now: datetime, out: Coalesced) -> None:
        book = self.books.setdefault(partition, EgressBook())
        self._settle(book, partition, now, out)
        prepared = self._decoded.pop(id(value), None)  # decoded by prepare: not twice
        # SerdeError: unreadable, for the processor to set aside
        record = prepared[1] if prepared is not None and prepared[0] is value else READY.decode(value)
        if isinstance(record, UsageHandover):
            handover = record
            scope = egress_keys.parse_scope(handover.scope)
            owner = scope_group(self.policies, scope)
            if owner is not None and self._owner(owner) != partition:  # sent under another grouping
                send(out, READY, owner, handover)
                return
            merged = merge_usage(book.limits.get(scope), handover.state)
            book.limits.set(out, partition, scope, merged)
            log.info("usage_taken_over", scope=handover.scope, partition=partition, previous=handover.from_partition)
            return
        if isinstance(record, EgressSettlement):
            self._heard(book, partition, record, out)
            self._release(book, partition, now, out, self.budget)
            return
        if isinstance(record, ShapingControl):
            self._shape(book, partition, record, now, out)
            return
        if isinstance(record, ReadyMessage):
            record = as_cancel_notice(record) or record  # a notice as written before CancelNotice existed
        home = self._home(record.egress_pool)
        if home is not None and self._owner(home) != partition:  # routed by a stage 1 on another grouping
            send(out, READY, home, record)
            return
        if isinstance(record, CancelNotice):
            self._recall(book, partition, record, now, out)
        elif record.id not in book.held:
            self._hold(book, record, value)
            out.put(partition, Held(record.id).key(), value, new=True)  # released in this call: never written
        self._release(book, partition, now, out, self.budget)

    def _on_tick(self, now: datetime, out: Coalesced) -> None:
        for partition, book in self.books.items():
            self._settle(book, partition, now, out)
            if not self._settled(book) and (book.announce_at is None or now >= book.announce_at):
                # Again while waiting: a partition still on another grouping did not count it.
                self._announce(partition, out)
                book.announce_at = now + REANNOUNCE
            for _, tx_id in book.deadlines.due(now):
                self._expire(book, partition, tx_id, now, out)
            if len(book.shaping):
                book.shaping.lapse(now, self.policies.shaping, out, partition)
            book.lanes.wake(now)
            self._release(book, partition, now, out, self.budget)
        if self.snapshots.due(now):
            self._publish(now, out)

    # -- ownership -------------------------------------------------------------------------------
    # When the configuration regroups the pools, a group (with its sources' counters and its held
    # mail) may move to another partition. Each partition hands over what it no longer owns, then
    # tells every partition so; a partition sends nothing until all have, so no source is charged
    # by its new owner before its count of the day has arrived there.
    def _settle(self, book: EgressBook, partition: int, now: datetime, out: Coalesced) -> None:
        grouping = self.policies.grouping
        if book.settled_under == grouping:
            return
        self._hand_over(book, partition, out)
        self._announce(partition, out)  # after the handovers: each partition reads them first
        book.settled_under, book.heard, book.announce_at = grouping, set(), now + REANNOUNCE
        self._save_settlement(book, partition, out)

    def _announce(self, partition: int, out: Coalesced) -> None:
        marker = EgressSettlement(fingerprint=self.policies.grouping, partitions=(partition,))
        for other in range(self.partitions):
            send(out, READY, str(partition), marker, partition=other)

    def _heard(self, book: EgressBook, partition: int, marker: EgressSettlement, out: Coalesced) -> None:
        if marker.fingerprint != book.settled_under:  # its sender announces again until we are on it too
            log.info(
                "settlement_of_another_grouping",
                partition=partition,
                grouping=marker.fingerprint,
                ours=book.settled_under,
                sender=list(marker.partitions),
            )
            return
        book.heard.update(marker.partitions)
        self._save_settlement(book, partition, out)
        if self._settled(book):
            log.info("egress_settled", partition=partition, grouping=book.settled_under)

    def _save_settlement(self, book: EgressBook, partition: int, out: Coalesced) -> None:
        assert book.settled_under is not None
        state = EgressSettlement(fingerprint=book.settled_under, partitions=tuple(sorted(book.heard)))
        out.put(partition, Settlement().key(), encode(state))

    def _settled(self, book: EgressBook) -> bool:
        return len(book.heard) == self.partitions

    def _hand_over(self, book: EgressBook, partition: int, out: Coalesced) -> None:
        """Send held messages and counters whose egress group another partition owns now to that owner."""
        moved = 0
        for tx_id in list(book.held):
            raw = book.held[tx_id]
            ready = decode(raw, ReadyMessage)
            home = self._home(ready.egress_pool)
            if home is not None and self._owner(home) != partition:
                send(out, READY, home, ready)
                self._unhold(book, tx_id)
                out.put(partition, Held(tx_id).key(), None)
                moved += 1
        handed = []
        for scope, state in book.limits.items():
            owner = scope_group(self.policies, scope)
            if owner is None or self._owner(owner) == partition:
                continue
            if isinstance(scope, HANDED_OVER):
                send(out, READY, owner, UsageHandover(scope=scope.scope, state=state, from_partition=partition))
            book.limits.drop(out, partition, scope)
            handed.append(scope.scope)
        if moved or handed:
            log.warning("egress_regrouped", partition=partition, messages_moved=moved, scopes_handed_over=handed)

    def _home(self, egress_pool: str) -> str | None:
        """The egress group of a message's pool; None for a pool this configuration does not know
        (it stays where it is and goes out through the default pool)."""
        return self.policies.group_of(egress_pool) if self.policies.pool(egress_pool) else None

    def _owner(self, group: str) -> int:
        owner = self._owners.get(group)
        if owner is None:
            owner = self._owners[group] = partition_of(group.encode(), self.partitions)
        return owner

    def _pool(self, ready: ReadyMessage) -> EgressPool:
        pool = self.policies.pool(ready.egress_pool) or self.policies.pool(self.policies.config.queues.egress_pool)
        assert pool is not None  # the configuration guarantees the default pool exists
        return pool

    # -- decisions -------------------------------------------------------------------------------
    def _release(self, book: EgressBook, partition: int, now: datetime, out: Coalesced, budget: int) -> None:
        if not self._settled(book):
            return  # a counter may still be on its way from another partition
        while budget > 0:
            item = book.lanes.pop()
            if item is None:
                return
            lane, priority, tx_id = item
            ready = self._held(book, tx_id)
            if ready is None:
                continue  # expired or already sent
            pool = self._pool(ready)
            candidates = self._candidates(pool, ready, now)
            # One rotation per pool and destination: a pool-wide one would fall into step with the round
            # robin over queues and send each domain through the same few sources.
            rotation_scope = Rotation.of(pool.name, ready.routing_domain or ready.domain)
            chosen, rotation = self._choose(book, pool, candidates, rotation_scope, now)
            if chosen is None:
                book.lanes.push(lane, priority, tx_id, front=True)
                book.lanes.park(lane, self._next_capacity(book, candidates, now))
                continue
            self._charge(book, partition, chosen, now, out)
            if rotation is not None:
                book.limits.set(
                    out,
                    partition,
                    rotation_scope,
                    LimitState(rr_index=rotation.index, rr_weight=rotation.current_weight),
                )
            task = DeliveryTask(
                id=ready.id,
                attempt=ready.attempt,
                attempt_id=f"{ready.id}/{ready.attempt}",
                queue=ready.queue,
                egress_pool=pool.name,
                egress_source=chosen.source.name,
                egress_path=chosen.path,
                sender=ready.sender,
                recipient=ready.recipient,
                domain=ready.domain,
                routing_domain=ready.routing_domain,
                tenant=ready.tenant,
                campaign=ready.campaign,
                body=ready.body,
                created_at=ready.created_at,
                issued_at=now,
            )
            send(out, DELIVERY, chosen.path, task)
            send(
                out,
                DISPATCHED,
                route_key(ready.tenant, ready.queue),
                Dispatched(
                    id=ready.id,
                    attempt=ready.attempt,
                    attempt_id=task.attempt_id,
                    queue=ready.queue,
                    tenant=ready.tenant,
                    egress_source=chosen.source.name,
                    egress_path=chosen.path,
                    issued_at=now,
                ),
            )
            self._unhold(book, tx_id)
            out.put(partition, Held(tx_id).key(), None)
            budget -= 1

    def _candidates(self, pool: EgressPool, ready: ReadyMessage, now: datetime) -> list[Candidate]:
        found = []
        destination = ready.routing_domain or ready.domain
        for i, entry in enumerate(pool.entries):
            source = self.policies.source(entry.name)
            if source is None or entry.weight == 0:
                continue
            mx_site = self.sites.site(destination, now) if self.sites is not None and source.relay is None else None
            site = self.policies.site(source, ready.domain, ready.routing_domain, mx_site)
            found.append(Candidate(i, source, destination, site, EgressPath(source.name, site).key()))
        return found

    def _choose(
        self, book: EgressBook, pool: EgressPool, candidates: list[Candidate], rotation_scope: Rotation, now: datetime
    ) -> tuple[Candidate | None, WrrState | None]:
        """The pool's pick among sources usable now, and the round robin's next position."""
        by_index = {c.index: c for c in candidates}

        def usable(i: int) -> bool:
            return i in by_index and self._usable_at(book, by_index[i], now) <= now

        if pool.policy == "most_remaining":
            remaining = [
                self._remaining(book, by_index[i].source, now) if i in by_index else 0 for i in range(len(pool.entries))
            ]
            picked = most_remaining(remaining, usable)
            return (by_index[picked] if picked is not None else None), None
        state = book.limits.get(rotation_scope)
        picked, rotation = wrr_next([e.weight for e in pool.entries], WrrState(state.rr_index, state.rr_weight), usable)
        return (by_index[picked], rotation) if picked is not None else (None, None)

    def _usable_at(self, book: EgressBook, c: Candidate, now: datetime) -> datetime:
        """The earliest instant the candidate may send: its window, daily cap, sliding window, path rate."""
        source, at = c.source, now
        if source.send_window is not None:
            at = max(at, source.send_window.next_open(now))
        usage = book.limits.get(SourceLimit(source.name))
        if remaining(source.daily_limit, daily(usage), day_of(now, self.policies.reset_zone)) == 0:
            at = max(at, next_reset(now, self.policies.reset_zone))
        window = _window(source)
        if window is not None:
            at = max(at, sliding_window.next_free(window, usage.sends, now))
        shaped = book.shaping.on_path(c.path, now) if len(book.shaping) else []
        for control in shaped:
            if control.action == "suspend_path" and control.until is not None:
                at = max(at, control.until)  # a shaping rule suspended the path: its other sources may go
        path_rate = self._path_rate(c, shaped)
        if path_rate is not None:
            at = max(at, next_admit_at(path_rate, Gcra(book.limits.get(PathRate(c.path)).tat), now))
        return at

    def _path_rate(self, c: Candidate, shaped: list[ShapingControl]) -> ThrottleSpec | None:
        """The path's message rate: the configured one, or the slowest a shaping rule in force set (lower only)."""
        rates = [rate(s.max_message_rate) for s in shaped if s.max_message_rate is not None]
        configured = self.policies.path(c.source.name, c.site, c.domain).max_message_rate
        if configured is not None:
            rates.append(configured)
        return max(rates, key=lambda r: r.interval, default=None)

    def _shape(self, book: EgressBook, partition: int, report: ShapingControl, now: datetime, out: Coalesced) -> None:
        """A reply stage 1 matched to a path rule: counted, and applied if the rule fires, by the path's owner."""
        path = EgressPath.parse(report.path or "")
        group = self.policies.group_of_source(path.source)
        if group is not None and self._owner(group) != partition:  # reported under another grouping
            send(out, READY, group, report)
            return
        rule = self.policies.shaping.get(report.rule)
        if rule is None or not rule.on_path:
            log.warning("shaping_rule_unknown", rule=report.rule, path=report.path)  # gone from the configuration
            return
        # Counted at the instant stage 1 read the reply, so its duration runs from the reply, however late this is.
        book.shaping.hit(rule, report, min(report.since, now), out, partition)

    def _next_capacity(self, book: EgressBook, candidates: list[Candidate], now: datetime) -> datetime:
        times = [self._usable_at(book, c, now) for c in candidates]
        soonest = min((t for t in times if t > now), default=None)
        return soonest or now + NO_SOURCE_RETRY

    def _remaining(self, book: EgressBook, source: EgressSource, now: datetime) -> int | None:
        usage = daily(book.limits.get(SourceLimit(source.name)))
        return remaining(source.daily_limit, usage, day_of(now, self.policies.reset_zone))

    def _charge(self, book: EgressBook, partition: int, c: Candidate, now: datetime, out: Coalesced) -> None:
        """Count the send against the source's day and sliding window and the path's rate."""
        scope = SourceLimit(c.source.name)
        usage = book.limits.get(scope)
        sends = usage.sends
        window = _window(c.source)
        if window is not None:
            admitted, sends = sliding_window.admit(window, sends, now)
            assert admitted, "a source is chosen only when its sliding window has room"
        day = daily(usage).record(day_of(now, self.policies.reset_zone))
        book.limits.set(out, partition, scope, counted(usage, day, sends=sends))
        path_rate = self._path_rate(c, book.shaping.on_path(c.path, now) if len(book.shaping) else [])
        if path_rate is not None:
            path_scope = PathRate(c.path)
            _, gcra, _ = admit(path_rate, Gcra(book.limits.get(path_scope).tat), now)
            book.limits.set(out, partition, path_scope, LimitState(tat=gcra.tat))

    def _expire(self, book: EgressBook, partition: int, tx_id: str, now: datetime, out: Coalesced) -> None:
        ready = self._held(book, tx_id)
        if ready is None:
            return
        self._unhold(book, tx_id)
        reason = f"max_age reached while waiting for egress capacity in pool {ready.egress_pool}"
        self._answer(ready, "EXPIRED", reason, now, out)
        out.put(partition, Held(tx_id).key(), None)

    def _recall(self, book: EgressBook, partition: int, notice: CancelNotice, now: datetime, out: Coalesced) -> None:
        ready = self._held(book, notice.id)
        if ready is None or ready.attempt != notice.attempt:
            return  # dispatched already: its response ends it
        self._unhold(book, notice.id)
        out.put(partition, Held(notice.id).key(), None)
        self._answer(notice, "CANCELLED", notice.reason, now, out)

    def _answer(
        self, held: ReadyMessage | CancelNotice, verdict: EgressVerdictKind, reason: str, now: datetime, out: Coalesced
    ) -> None:
        """Tell stage 1 the held attempt ended unsent."""
        send(
            out,
            RESPONSES,
            route_key(held.tenant, held.queue),
            EgressVerdict(
                id=held.id,
                attempt=held.attempt,
                attempt_id=f"{held.id}/{held.attempt}",
                queue=held.queue,
                tenant=held.tenant,
                verdict=verdict,
                reason=reason,
                decided_at=now,
            ),
        )

    def _hold(self, book: EgressBook, ready: ReadyMessage, raw: bytes) -> None:
        tx_id = sys.intern(ready.id)  # one string per message, however many indexes name it
        book.held[tx_id] = raw
        if len(book.hot) >= HOT:
            del book.hot[next(iter(book.hot))]  # the oldest
        book.hot[tx_id] = ready
        book.lanes.push(ready.queue, ready.priority, tx_id)
        book.deadlines.add(ready.expires_at, tx_id)

    def _held(self, book: EgressBook, tx_id: str) -> ReadyMessage | None:
        ready = book.hot.get(tx_id)
        if ready is not None or tx_id not in book.held:
            return ready
        return decode(book.held[tx_id], ReadyMessage)

    def _unhold(self, book: EgressBook, tx_id: str) -> None:
        del book.held[tx_id]
        book.hot.pop(tx_id, None)

    def _publish(self, now: datetime, out: Coalesced) -> None:
        """Each counted source's day, sends that day and sends inside its sliding window (only what changed)."""
        for book in self.books.values():
            for scope, usage in book.limits.items():
                if not isinstance(scope, SourceLimit):
                    continue
                name = scope.name
                source = self.policies.source(name)
                window = source.sliding_window if source is not None else None
                sends = tuple(t for t in usage.sends if window is not None and t > now - window.span)
                self.snapshots.offer(
                    out,
                    name,
                    SourceUsage(
                        source=name,
                        day=usage.day,
                        used=usage.used,
                        sends=sends,
                        as_of=now,
                        daily_limit=source.daily_limit if source is not None else None,
                    ),
                )

    # -- inspection (metrics) ---------------------------------------------------------------------
    def held_count(self) -> int:
        return sum(len(b.held) for b in self.books.values())

    def shaping_count(self) -> int:
        """Adaptive-shaping actions on paths this worker's partitions hold."""
        return sum(b.shaping.acting() for b in self.books.values())
