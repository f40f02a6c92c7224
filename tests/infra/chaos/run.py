"""One chaos run: the real stack, clients submitting over HTTP and SMTP, and a thread that SIGKILLs a service or
a broker at random moments (seeded), restarting each after a short random delay; then the stack settles and
`tally` counts.

The scheduler runs both stages in one process (`python -m mailstream.scheduler`), so killing it kills both.
The run's folder keeps every service's log (a killed instance's output is appended to, not replaced) and the
broker's log of each life.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.infra.chaos.brokers import Brokers, ClusterBrokers, SingleBroker
from tests.infra.chaos.clients import SmtpClient, Submission, Unexpected, submit_http
from tests.infra.chaos.tally import Kill, Receipt, Report, attempt_of, tally
from tests.infra.chaos.witness import Witness
from tests.infra.gateway import gateway_section
from tests.infra.smtp_recorder import RecordingSink
from tests.infra.stack import Stack, stack_config

SERVICES = ["ingest", "scheduler", "delivery", "gateway"]


@dataclass(frozen=True)
class ChaosSettings:
    messages: int
    kills: int
    seed: int
    cluster: bool = False
    smtp_share: float = 0.2  # of the messages, submitted over SMTP
    batch: int = 20  # recipients per HTTP request
    gap: tuple[float, float] = (3.0, 9.0)  # seconds between a service being back and the next kill
    down: tuple[float, float] = (0.2, 3.0)  # seconds a killed process stays dead
    settle: float = 120.0  # seconds after the last submission for every accepted message to end
    give_up: float = 180.0  # seconds a client retries one submission
    only: tuple[str, ...] = ()  # kill only these (a service, "broker" or "broker-<n>"); empty: all in turn


@dataclass
class Outcome:
    report: Report
    unexpected: list[str]  # answers a client should never see
    exits: list[str]  # services that exited although nobody killed them
    workdir: Path

    @property
    def targets(self) -> list[str]:
        return list(self.report.kills)


class ChaosRun:
    def __init__(self, settings: ChaosSettings, workdir: Path, say: Callable[[str], None] = print) -> None:
        self.settings, self.workdir, self._say = settings, workdir, say
        self._rng = random.Random(settings.seed)
        self.kills: list[Kill] = []
        self.exits: list[str] = []
        self.unexpected = Unexpected()
        self._stack_lock = threading.Lock()
        self._end = float("inf")

    def run(self) -> Outcome:
        s = self.settings
        self._say(f"chaos: seed {s.seed}, {s.messages} messages, {s.kills} kills, folder {self.workdir}")
        started = time.monotonic()
        brokers: Brokers = (ClusterBrokers if s.cluster else SingleBroker)(self.workdir / "kafka").start()
        with RecordingSink() as sink:
            try:
                stack = self._stack(brokers.bootstrap, sink)
                witness = Witness(brokers.bootstrap).start()
                stop = threading.Event()
                supervisor = threading.Thread(target=self._supervise, args=(stack, stop), name="supervisor")
                supervisor.start()
                try:
                    subs = self._drive(stack, brokers)
                    self._settle(witness, subs)
                    stop.set()
                    supervisor.join()
                    receipts = [Receipt(m.rcpt_tos[0], attempt_of(m.data), m.at) for m in sink.messages]
                    report = tally(subs, self.kills, receipts, witness.statuses(), witness.answered())
                finally:
                    stop.set()
                    witness.stop()
                    stack.stop()
            finally:
                brokers.stop()
        report.elapsed = time.monotonic() - started
        return Outcome(report, self.unexpected.seen, self.exits, self.workdir)

    def _stack(self, bootstrap: str, sink: RecordingSink) -> Stack:
        gateway, self._ports = gateway_section(self.workdir, cut_through_wait="0s", bounce_domains=[])
        config = stack_config(
            bootstrap,
            sink.address,
            self.workdir,
            gateway=gateway,
            queues={"retry_interval": "2s", "max_retry_interval": "10s", "max_age": "7 days"},
            **({"kafka": {"replication_factor": 3, "min_insync_replicas": 2}} if self.settings.cluster else {}),
        )
        stack = Stack(config, self.workdir)
        stack.start()
        return stack

    def _drive(self, stack: Stack, brokers: Brokers) -> list[Submission]:
        """Submit everything, paced over the chaos window, while the chaos thread kills and restarts."""
        s = self.settings
        run = f"{s.seed}-{int(time.time())}"
        n_smtp = round(s.messages * s.smtp_share)
        subs = [Submission("http", f"h{n}-{run}@chaos.example") for n in range(s.messages - n_smtp)]
        subs += [Submission("smtp", f"s{n}-{run}@chaos.example") for n in range(n_smtp)]
        batches = [subs[i : i + s.batch] for i in range(0, s.messages - n_smtp, s.batch)]
        smtp = subs[s.messages - n_smtp :]
        window = max(20.0, s.kills * (sum(s.gap) / 2 + sum(s.down) / 2 + 8.0))  # a restart takes ~8 s here
        chaos = threading.Thread(target=self._chaos, args=(stack, brokers), name="chaos")
        chaos.start()
        t0 = time.monotonic()
        self._end = t0 + window + s.give_up  # every client gives up by then, whatever is still queued
        try:
            with ThreadPoolExecutor(6) as pool:
                jobs = [
                    pool.submit(self._paced, t0 + i * window / len(batches), submit_http, stack.api, b)
                    for i, b in enumerate(batches)
                ]
                jobs += [pool.submit(self._smtp_lane, stack, smtp[k::2], t0, window) for k in range(2)]
                for job in jobs:
                    job.result()
        finally:
            chaos.join()  # it ends after its last kill's restart
        return subs

    def _paced(self, at: float, submit: Callable[..., None], api: str, batch: list[Submission]) -> None:
        time.sleep(max(0.0, at - time.monotonic()))
        submit(api, batch, self._deadline(), self.unexpected)

    def _deadline(self) -> float:
        return min(time.monotonic() + self.settings.give_up, self._end)

    def _smtp_lane(self, stack: Stack, subs: list[Submission], t0: float, window: float) -> None:
        client = SmtpClient(self._ports.submission_plain, self.unexpected)
        try:
            for i, sub in enumerate(subs):
                time.sleep(max(0.0, t0 + i * window / max(1, len(subs)) - time.monotonic()))
                client.submit(sub, i, self._deadline())
        finally:
            client.close()

    def _chaos(self, stack: Stack, brokers: Brokers) -> None:
        targets = [t for t in SERVICES + brokers.names() if not self.settings.only or t in self.settings.only]
        order: list[str] = []
        for _ in range(self.settings.kills):
            if not order:
                order = self._rng.sample(targets, len(targets))
            target = order.pop()
            time.sleep(self._rng.uniform(*self.settings.gap))
            with self._stack_lock:  # the supervisor must not restart what is killed on purpose
                killed = time.monotonic()
                if target in SERVICES:
                    stack.kill(target)
                else:
                    brokers.kill(target)
                time.sleep(self._rng.uniform(*self.settings.down))
                self._restart(stack, brokers, target)
            self.kills.append(Kill(target, killed, time.monotonic()))
            self._say(
                f"chaos: killed {target} at +{killed - self.kills[0].at:.1f} s, back after "
                f"{time.monotonic() - killed:.1f} s"
            )

    def _restart(self, stack: Stack, brokers: Brokers, target: str) -> None:
        for attempt in range(3):
            try:
                if target in SERVICES:
                    stack.start_service(target)
                else:
                    brokers.restart(target)
                    self._wait_healthy(stack, target)
                return
            except RuntimeError as exc:
                self.exits.append(f"{target} failed to restart (try {attempt + 1}): {str(exc)[:2000]}")

    def _wait_healthy(self, stack: Stack, target: str) -> None:
        """Every service healthy again after a broker came back, before the next kill: one that is not within
        a minute is a finding (it should reconnect and resume on its own)."""
        try:
            stack._wait_ready(60.0, SERVICES)
        except RuntimeError as exc:
            self.exits.append(f"not healthy 60 s after {target} came back: {str(exc)[:3000]}")

    def _supervise(self, stack: Stack, stop: threading.Event) -> None:
        """Restart a service that exited on its own, as Kubernetes would, and note it: a finding."""
        while not stop.wait(0.5):
            with self._stack_lock:
                for name in SERVICES:
                    proc = stack.procs[name]
                    if proc.poll() is not None:
                        self.exits.append(f"{name} exited by itself ({proc.returncode}):\n{stack.log_tail(name)}")
                        try:
                            stack.start_service(name)
                        except RuntimeError as exc:
                            self.exits.append(f"{name} failed to restart: {str(exc)[:2000]}")

    def _settle(self, witness: Witness, subs: list[Submission]) -> None:
        """Until every accepted message has a final status (or the settle time is up)."""
        deadline = time.monotonic() + self.settings.settle
        accepted = {s.recipient for s in subs if s.accepted}
        while time.monotonic() < deadline:
            final = {t.recipient for t in witness.statuses().values() if t.is_final}
            if accepted <= final:
                break
            time.sleep(1.0)
        time.sleep(2.0)  # a resend after the last answer would show by now
