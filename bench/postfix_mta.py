"""Postfix as a real MTA, the peer of `bench.vs_postfix`: a private, loopback-only instance
(`postfix -c DIR`) that accepts mail from smtp-source on a free port and relays every message to
the bench's smtp-sink, queue and data directories under a temporary folder of its own.

It needs root (Postfix's master starts as root and drops to the `postfix` user) and the Debian
package `postfix` (`scripts/bootstrap.sh postfix` installs it without configuring the system MTA).
"""

from __future__ import annotations

import collections
import grp
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import Load, ProcessSampler, Tools, rank_latency, run_smtp_source, smtp_sink
from tests.infra.broker import tcp_reachable
from tests.infra.stack import free_port

POSTFIX_NAMES = ("postfix", "/usr/sbin/postfix")
# Only what a relay needs: no local/virtual/lmtp delivery, no pickup (nothing is submitted by sendmail),
# no chroot (the queue is a throwaway folder). Columns: service type private unpriv chroot wakeup maxproc.
MASTER_CF = """\
{listen} inet n - n - - smtpd
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


def postfix_command() -> str | None:
    return next((p for p in (shutil.which(n) for n in POSTFIX_NAMES) if p), None)


def unavailable_reason() -> str | None:
    """Why a private Postfix cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "Postfix's master must be started as root (run the bench as root)"
    if postfix_command() is None:
        return "the postfix MTA is not installed (as root: scripts/bootstrap.sh postfix)"
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError:
        return "the postfix user or the postdrop group is missing (reinstall the Debian package postfix)"
    return None


def tuning(concurrency: int, relay: str) -> dict[str, str]:
    """The main.cf settings that differ from Postfix's defaults, each with why (README: what was tuned)."""
    limit = max(20, concurrency)
    return {
        f"default_destination_concurrency_limit = {limit}": "at least the bench concurrency (Postfix's default "
        "is 20): every delivery goes to one next hop, the sink, so this bounds Postfix's SMTP client connections",
        f"default_process_limit = {max(100, 3 * concurrency)}": "room for one smtpd per smtp-source session, "
        "the smtp clients and cleanup (default 100)",
        f"smtp_connection_cache_destinations = {relay}": "reuse SMTP connections to the sink, as mailstream's "
        "delivery reuses connections per egress path (default: only on demand, when a backlog forms)",
        "smtpd_peername_lookup = no": "no reverse DNS for 127.0.0.1 on every connection (mailstream does none)",
        "smtp_tls_security_level = none, smtpd_tls_security_level = none": "plaintext both ways, like the "
        "runs through mailstream (smtp-sink offers no STARTTLS)",
        "maillog_file = <tmp>/log/maillog": "Postfix's normal per-message logging, to a file (no syslog "
        "here); the bench reads the delivery statuses from it",
    }


@dataclass
class PostfixMta:
    """A private Postfix relaying to `relay` (host, port); `root` holds etc/, spool/, lib/ and log/."""

    root: Path
    relay: tuple[str, int]
    concurrency: int
    port: int = field(default_factory=free_port)

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def maillog(self) -> Path:
        return self.root / "log" / "maillog"

    @property
    def relayhost(self) -> str:
        return f"[{self.relay[0]}]:{self.relay[1]}"

    def main_cf(self) -> str:
        limit = max(20, self.concurrency)
        return f"""\
# Written by bench/postfix_mta.py: loopback only, relays everything to the bench's smtp-sink.
compatibility_level = {compatibility_level()}
queue_directory = {self.root / "spool"}
data_directory = {self.root / "lib"}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {self.maillog}
maillog_file_prefixes = {self.maillog.parent}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.bench.test
mydomain = bench.test
mydestination =
relay_domains =
local_recipient_maps =
local_transport = error:5.1.1 local delivery is disabled in this benchmark
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = {self.relayhost}
default_destination_concurrency_limit = {limit}
default_process_limit = {max(100, 3 * self.concurrency)}
smtp_connection_cache_destinations = {self.relayhost}
smtpd_peername_lookup = no
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
append_dot_mydomain = no
readme_directory = no
"""

    def postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = postfix_command()
        assert command is not None
        done = subprocess.run([command, "-c", str(self.etc), *args], capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise RuntimeError(f"postfix {' '.join(args)} failed ({done.returncode}): {done.stderr}"
                               f"{done.stdout}\n{self.log_tail()}")
        return done

    def start(self) -> PostfixMta:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # the daemons run as the postfix user and must reach spool/ and lib/
        for sub in ("etc", "log", "spool", "lib"):
            (self.root / sub).mkdir(mode=0o755, exist_ok=True)
        shutil.chown(self.root / "lib", "postfix")
        (self.etc / "main.cf").write_text(self.main_cf())
        (self.etc / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
        self.postfix("check")  # creates the queue's subfolders with Postfix's owners and modes
        self.postfix("start")
        deadline = time.monotonic() + 20
        while not tcp_reachable(f"127.0.0.1:{self.port}", timeout=0.5):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"postfix smtpd not listening on 127.0.0.1:{self.port}\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def master_pid(self) -> int | None:
        try:
            return int((self.root / "spool" / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """`postfix -c DIR stop`, then waits for the master to exit (SIGKILL to that pid after 20 s)."""
        pid = self.master_pid()
        self.postfix("stop", check=False)
        deadline = time.monotonic() + 20
        while pid is not None and _alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                break
            time.sleep(0.1)

    def outcomes(self) -> collections.Counter[str]:
        """Delivery statuses the smtp client logged: sent, deferred, bounced, expired."""
        text = self.maillog.read_text(errors="replace") if self.maillog.exists() else ""
        return collections.Counter(re.findall(r"postfix/smtp\[\d+\]: \w+: to=<[^>]*>.* status=(\w+)", text))

    def wait_outcomes(self, sent: int, timeout: float = 10.0) -> collections.Counter[str]:
        """The statuses once `sent` messages are logged sent (postlogd writes asynchronously), or at `timeout`."""
        deadline = time.monotonic() + timeout
        while (found := self.outcomes())["sent"] < sent and time.monotonic() < deadline:
            time.sleep(0.2)
        return found

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.maillog.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no maillog)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def compatibility_level() -> str:
    """The newest level main.cf can name on this Postfix: 3.6 from 3.6 on (no backwards-compatibility notice)."""
    numbers = tuple(int(n) for n in re.findall(r"\d+", version())[:2])
    return "3.6" if numbers >= (3, 6) else "2"


def version() -> str:
    command = postfix_command()
    if command is None:
        return "not installed"
    done = subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def run_postfix(tools: Tools, load: Load, *, warmup: int = 0) -> dict[str, Any]:
    """smtp-source → private Postfix → smtp-sink, `load.messages` after `warmup` unmeasured ones; delivered/s is
    counted at the sink from the first submit to the last arrival. Everything lives in a temporary folder of
    its own (readable by the postfix user, unlike a private temp folder), removed when Postfix has stopped."""
    root = Path(tempfile.mkdtemp(prefix="mailstream-postfix-"))
    try:
        with smtp_sink(tools, root / "sink.out") as sink:
            mta = PostfixMta(root, sink.address, load.concurrency)
            mta.start()
            try:
                if warmup:
                    run_smtp_source(tools, mta.port, load, messages=warmup)
                    sink.arrivals.wait_for(warmup, time.time() + load.timeout)
                base = sink.received
                warm = {"messages": warmup, "delivered": base, "failed": 0, "missing": warmup - base,
                        "failures": []} if warmup else None
                master = mta.master_pid()
                sampler = ProcessSampler(roots={master: "postfix/"} if master else {},
                                         gauges={"sink_sessions": sink.sessions}).start()
                start = time.time()
                try:
                    submits = run_smtp_source(tools, mta.port, load)
                    sink.arrivals.wait_for(base + load.messages, time.time() + load.timeout)
                finally:
                    sampler.stop()
                arrivals = sink.arrivals.times[base:base + load.messages]
                end = arrivals[-1] if len(arrivals) == load.messages else time.time()
                outcomes = mta.wait_outcomes(warmup + len(arrivals))
                log_tail = mta.log_tail(10)
            finally:
                mta.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    unsent = {status: n for status, n in outcomes.items() if status != "sent"}
    delivered = len(arrivals)
    return {
        "messages": load.messages, "size": load.size, "concurrency": load.concurrency, "batch": 1,
        "submitted": submits.count, "delivered": delivered, "failed": sum(unsent.values()),
        "missing": load.messages - delivered - sum(unsent.values()), "sink_received": delivered,
        "maillog_status": dict(outcomes), "wall_s": end - start,
        "failures": [f"{n} x status={s}" for s, n in unsent.items()] + ([] if not unsent else [log_tail]),
        "warmup": warm,
        "accepted_per_s": submits.count / (submits.times[-1] - start) if submits.times else 0.0,
        "delivered_per_s": delivered / (arrivals[-1] - start) if arrivals else 0.0,
        "sink_latency_s": rank_latency(submits.times, arrivals),
        **sampler.figures(end - start, lambda label: label.startswith("postfix/")),
    }
