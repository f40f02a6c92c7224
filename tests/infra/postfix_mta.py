"""Postfix as a real MTA on loopback: a private instance (`postfix -c DIR`) with its own queue, data and log
folders under one temporary folder, relaying everything to one next hop. The benchmark's peer
(`bench.postfix_mta`) and the end-to-end relay into the gateway (`tests/e2e/test_postfix_relay.py`) run it;
neither touches the system's Postfix.

It needs root (Postfix's master starts as root and drops to the `postfix` user) and the Debian package
`postfix` (`scripts/bootstrap.sh postfix` installs it without configuring the system MTA).
"""

from __future__ import annotations

import collections
import grp
import os
import pwd
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.infra.broker import tcp_reachable
from tests.infra.stack import free_port

POSTFIX_NAMES = ("postfix", "/usr/sbin/postfix")
# Only what a relay needs: no local/virtual/lmtp delivery, no pickup (nothing is submitted by sendmail),
# no chroot (the queue is a throwaway folder). tlsmgr serves the smtp client's TLS (PRNG, session cache) when a
# relay uses TLS; it starts on demand. Columns: service type private unpriv chroot wakeup maxproc.
MASTER_CF = """\
{listen} inet n - n - - smtpd
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
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
        return "Postfix's master must be started as root"
    if postfix_command() is None:
        return "the postfix MTA is not installed (as root: scripts/bootstrap.sh postfix)"
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError:
        return "the postfix user or the postdrop group is missing (reinstall the Debian package postfix)"
    return None


@dataclass
class PostfixMta:
    """A private Postfix relaying to `relay` (host, port); `root` holds etc/, spool/, lib/ and log/ and must be
    reachable by the postfix user (not under a mode-700 folder). `settings` are main.cf parameters that replace
    or add to the ones below, e.g. a relay over TLS with SASL."""

    root: Path
    relay: tuple[str, int]
    concurrency: int = 20
    port: int = field(default_factory=free_port)
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def maillog(self) -> Path:
        return self.root / "log" / "maillog"

    @property
    def relayhost(self) -> str:
        return f"[{self.relay[0]}]:{self.relay[1]}"

    def parameters(self) -> dict[str, str]:
        """main.cf: loopback only, no local delivery, relays everything to `relay`; then `settings`."""
        return {
            "compatibility_level": compatibility_level(),
            "queue_directory": str(self.root / "spool"),
            "data_directory": str(self.root / "lib"),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.maillog.parent),
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "myhostname": "postfix.bench.test",
            "mydomain": "bench.test",
            "mydestination": "",
            "relay_domains": "",
            "local_recipient_maps": "",
            "local_transport": "error:5.1.1 local delivery is disabled here",
            "alias_maps": "",
            "alias_database": "",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "relayhost": self.relayhost,
            "default_destination_concurrency_limit": str(max(20, self.concurrency)),
            "default_process_limit": str(max(100, 3 * self.concurrency)),
            "smtp_connection_cache_destinations": self.relayhost,
            "smtpd_peername_lookup": "no",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "biff": "no",
            "append_dot_mydomain": "no",
            "readme_directory": "no",
            **self.settings,
        }

    def main_cf(self) -> str:
        lines = [f"{name} = {value}" for name, value in self.parameters().items()]
        return "# Written by tests/infra/postfix_mta.py: a private, loopback-only relay.\n" + "\n".join(lines) + "\n"

    def postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = postfix_command()
        assert command is not None
        done = subprocess.run([command, "-c", str(self.etc), *args], capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise RuntimeError(
                f"postfix {' '.join(args)} failed ({done.returncode}): {done.stderr}{done.stdout}\n{self.log_tail()}"
            )
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

    def log_text(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def outcomes(self) -> collections.Counter[str]:
        """Delivery statuses the smtp client logged: sent, deferred, bounced, expired."""
        return collections.Counter(re.findall(r"postfix/smtp\[\d+\]: \w+: to=<[^>]*>.* status=(\w+)", self.log_text()))

    def wait_outcomes(self, sent: int, timeout: float = 10.0) -> collections.Counter[str]:
        """The statuses once `sent` messages are logged sent (postlogd writes asynchronously), or at `timeout`."""
        deadline = time.monotonic() + timeout
        while (found := self.outcomes())["sent"] < sent and time.monotonic() < deadline:
            time.sleep(0.2)
        return found

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(no maillog)"


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
