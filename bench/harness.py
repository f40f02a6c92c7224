"""What the SMTP benchmarks share: Postfix's smtp-sink and smtp-source with live counters, a psutil
sampler of every process involved, percentiles and the message-size arithmetic.

Counters: `smtp-sink -c` prints "sess=N quit=N mesg=N\\r" each time a message arrives and
`smtp-source -c` prints "N\\r" each time a DATA command completes; a reader thread stamps every
increment with the local time it read it, which gives the time of each delivery at the sink and of
each accepted submission, without dumping messages to disk.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

from tests.infra.broker import tcp_reachable
from tests.infra.postfix import find_postfix_tool
from tests.infra.stack import free_port

PEER_SENDER, PEER_RECIPIENT, PEER_HELO = "peer@bench.test", "rcpt@example.com", "bench.test"


@dataclass(frozen=True)
class Load:
    """One measured run's shape: the same for every system compared."""

    messages: int
    concurrency: int
    size: int
    batch: int = 1  # recipients per HTTP request (mailstream only)
    timeout: float = 300.0  # seconds to wait for the last delivery after the last submit
    tenants: tuple[str, ...] = ()  # requests spread round robin over these tenants (mailstream only; http_inject)


def add_load_options(
    parser: argparse.ArgumentParser, *, messages_help: str, concurrency_help: str, timeout_help: str
) -> None:
    """The options that set a `Load`'s count, parallelism, size and patience, shared by the benches."""
    parser.add_argument("--messages", type=int, default=2000, help=messages_help)
    parser.add_argument("--concurrency", type=int, default=16, help=concurrency_help)
    parser.add_argument("--size", type=int, default=2048, help="message size in bytes (headers included)")
    parser.add_argument("--timeout", type=float, default=300.0, help=timeout_help)


@dataclass(frozen=True)
class Tools:
    sink: Path
    source: Path

    @staticmethod
    def find() -> Tools | None:
        sink, source = find_postfix_tool("smtp-sink"), find_postfix_tool("smtp-source")
        return Tools(sink, source) if sink and source else None


class CounterReader:
    """Reads a "\\r"-separated running counter from `stream` on a thread; `times[k]` is when count k+1 was read."""

    def __init__(self, stream: IO[bytes], parse: Callable[[str], int | None], tee: IO[bytes] | None = None) -> None:
        self.times: list[float] = []
        self._stream, self._parse, self._tee = stream, parse, tee
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="counter-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pending = b""
        while chunk := os.read(self._stream.fileno(), 65536):  # what the pipe holds, without waiting for more
            now = time.time()
            if self._tee is not None:
                self._tee.write(chunk)
            *fields, pending = (pending + chunk).replace(b"\n", b"\r").split(b"\r")
            counts = [c for c in (self._parse(f.decode(errors="replace")) for f in fields) if c is not None]
            if counts and max(counts) > len(self.times):
                with self._changed:
                    self.times += [now] * (max(counts) - len(self.times))
                    self._changed.notify_all()
        if self._tee is not None:
            self._tee.flush()

    @property
    def count(self) -> int:
        return len(self.times)

    def wait_for(self, count: int, deadline: float, alive: Callable[[], bool] = lambda: True) -> bool:
        """True once `count` increments were read; False at `deadline` (time.time()) or when `alive()` fails."""
        with self._changed:
            while len(self.times) < count:
                left = deadline - time.time()
                if left <= 0 or not alive():
                    return len(self.times) >= count
                self._changed.wait(min(left, 0.5))
        return True

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)


def sink_messages(field_text: str) -> int | None:
    """smtp-sink -c: "sess=1 quit=0 mesg=3" -> 3."""
    for word in field_text.split():
        if word.startswith("mesg=") and word[5:].isdigit():
            return int(word[5:])
    return None


def source_messages(field_text: str) -> int | None:
    """smtp-source -c: "17" -> 17."""
    text = field_text.strip()
    return int(text) if text.isdigit() else None


class SmtpSink:
    """Postfix smtp-sink on 127.0.0.1 with counters (-c) and a large backlog, no -M limit; `arrivals.times`
    are the local times each message arrived. Its raw output is kept in `out`. smtp-sink serves 256 sessions
    at once by default and leaves the others waiting for their greeting; `max_sessions` (-m) raises that, since
    mailstream's delivery may hold up to `delivery.concurrency` connections per egress path and worker."""

    def __init__(self, tools: Tools, out: Path, port: int | None = None, max_sessions: int = 1000) -> None:
        self.port = port or free_port()
        self.address = ("127.0.0.1", self.port)
        user = ["-u", "nobody"] if os.geteuid() == 0 else []  # as root smtp-sink refuses to run without -u
        self._log = out.open("wb")
        self.proc = subprocess.Popen(
            [str(tools.sink), *user, "-m", str(max_sessions), "-c", f"127.0.0.1:{self.port}", "4096"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.proc.stdout is not None
        self.arrivals = CounterReader(self.proc.stdout, sink_messages, tee=self._log)
        self._out = out
        deadline = time.monotonic() + 5
        while not tcp_reachable(f"127.0.0.1:{self.port}", timeout=0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"smtp-sink did not start: {out.read_text(errors='replace')}")
            time.sleep(0.05)

    @property
    def received(self) -> int:
        return self.arrivals.count

    def sessions(self) -> int:
        """SMTP connections open to the sink right now."""
        try:
            conns = psutil.Process(self.proc.pid).net_connections(kind="tcp")
        except psutil.Error:
            return 0
        return sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.arrivals.join()
        self._log.close()


@contextlib.contextmanager
def smtp_sink(tools: Tools, out: Path) -> Iterator[SmtpSink]:
    sink = SmtpSink(tools, out)
    try:
        yield sink
    finally:
        sink.stop()


def smtp_source_command(tools: Tools, port: int, load: Load, *, messages: int | None = None) -> list[str]:
    """smtp-source with a running counter; -l is the body length, so it is cut by the header lines
    smtp-source writes (From, To, Date, Message-Id), which makes the message `load.size` bytes within a few."""
    return [
        str(tools.source),
        "-c",
        "-s",
        str(load.concurrency),
        "-m",
        str(messages or load.messages),
        "-l",
        str(max(load.size - smtp_source_header_bytes(), 1)),
        "-f",
        PEER_SENDER,
        "-t",
        PEER_RECIPIENT,
        "-M",
        PEER_HELO,
        f"127.0.0.1:{port}",
    ]


def smtp_source_header_bytes() -> int:
    """Bytes of the header block smtp-source sends, CRLF line ends and the blank line included."""
    lines = [
        f"From: <{PEER_SENDER}>",
        f"To: <{PEER_RECIPIENT}>",
        "Date: Tue,  1 Dec 2026 23:29:29 +0000 (UTC)",
        f"Message-Id: <0000.0000.0000@{PEER_HELO}>",
        "",
    ]
    return sum(len(line) + 2 for line in lines)


def run_smtp_source(
    tools: Tools, port: int, load: Load, *, messages: int | None = None, timeout: float = 600.0
) -> CounterReader:
    """Runs smtp-source to completion; its counter's times are when each DATA command completed."""
    proc = subprocess.Popen(
        smtp_source_command(tools, port, load, messages=messages), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    submits = CounterReader(proc.stdout, source_messages)
    try:
        err = proc.stderr.read()
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"smtp-source did not finish within {timeout:.0f} s") from None
    submits.join()
    if proc.returncode != 0:
        raise RuntimeError(f"smtp-source exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}")
    return submits


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def rank_latency(submitted: list[float], delivered: list[float]) -> dict[str, Any]:
    """The k-th delivery minus the k-th accepted submission: exact for a first-in first-out system, an
    estimate otherwise (reordering narrows the spread a little). Used when messages carry no identity."""
    lat = [d - s for s, d in zip(sorted(submitted), sorted(delivered), strict=False)]
    return {
        "p50": pct(lat, 0.5),
        "p99": pct(lat, 0.99),
        "max": max(lat, default=float("nan")),
        "method": "estimate: k-th arrival at the sink - k-th accepted submission",
    }


@dataclass
class _Seen:
    label: str
    cpu_first: float
    cpu_last: float


@dataclass
class ProcessSampler:
    """Samples, every `interval` s on a thread, the bench process, its descendants and the trees of `roots`
    (pid -> label prefix, e.g. a daemonised Postfix master): RSS summed per label (peak over samples) and
    CPU seconds per process. A process born after `start()` counts all its CPU; one that exits between two
    samples loses its last interval. `names` labels known pids (service instances)."""

    names: dict[int, str] = field(default_factory=dict)
    roots: dict[int, str] = field(default_factory=dict)
    gauges: dict[str, Callable[[], float]] = field(default_factory=dict)  # name -> reading; the peak is kept
    interval: float = 0.2
    gauge_peaks: dict[str, float] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=dict)
    processes: dict[str, set[int]] = field(default_factory=dict)
    _seen: dict[tuple[int, float], _Seen] = field(default_factory=dict)
    _started: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ProcessSampler:
        self._started = time.time()
        self._thread = threading.Thread(target=self._loop, name="process-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def _label(self, proc: psutil.Process, prefix: str) -> str:
        if proc.pid == os.getpid():
            return "bench"
        if proc.pid in self.names:
            return self.names[proc.pid]
        cmd = proc.cmdline()
        if "kafka.Kafka" in cmd:
            return "broker"
        service = next((s for s in ("ingest", "scheduler", "delivery") if f"mailstream.{s}" in cmd), None)
        return service or prefix + Path(cmd[0]).name

    def sample(self) -> None:
        me = psutil.Process()
        trees: list[tuple[psutil.Process, str]] = [(me, "")]
        for pid, prefix in self.roots.items():
            with contextlib.suppress(psutil.Error):
                trees.append((psutil.Process(pid), prefix))
        rss: dict[str, int] = {}
        for root, prefix in trees:
            try:
                members = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for proc in members:
                try:
                    key = (proc.pid, proc.create_time())
                    with proc.oneshot():
                        cpu, resident = sum(proc.cpu_times()[:2]), proc.memory_info().rss
                    seen = self._seen.get(key)
                    if seen is None:
                        born_during = key[1] >= self._started
                        seen = self._seen[key] = _Seen(self._label(proc, prefix), 0.0 if born_during else cpu, cpu)
                    seen.cpu_last = cpu
                    rss[seen.label] = rss.get(seen.label, 0) + resident
                    self.processes.setdefault(seen.label, set()).add(proc.pid)
                except (psutil.Error, IndexError):
                    continue
        for label, total in rss.items():
            self.peak_rss[label] = max(self.peak_rss.get(label, 0), total)
        for name, read in self.gauges.items():
            self.gauge_peaks[name] = max(self.gauge_peaks.get(name, 0.0), read())

    def cpu_seconds(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for seen in self._seen.values():
            out[seen.label] = out.get(seen.label, 0.0) + seen.cpu_last - seen.cpu_first
        return out

    def figures(self, wall: float, under_test: Callable[[str], bool]) -> dict[str, Any]:
        """CPU % of `wall` (200 % = both cores of a 2-core machine) and peak RSS per label, and the totals of
        the labels `under_test` says belong to the system measured (not the load generator or the sink)."""
        cpu = self.cpu_seconds()
        labels = sorted(self.peak_rss)
        sut = [label for label in labels if under_test(label)]
        return {
            "cpu_percent": {k: 100 * cpu.get(k, 0.0) / wall for k in labels},
            "peak_rss_mb": {k: self.peak_rss[k] / 2**20 for k in labels},
            "process_count": {k: len(self.processes.get(k, ())) for k in labels},
            "system_cpu_percent": 100 * sum(cpu.get(k, 0.0) for k in sut) / wall,
            "system_cpu_s": sum(cpu.get(k, 0.0) for k in sut),
            "system_peak_rss_mb": sum(self.peak_rss[k] for k in sut) / 2**20,
            "system_processes": sut,
            **{f"peak_{name}": value for name, value in self.gauge_peaks.items()},
        }


def fs_type(path: Path) -> str:
    """The file system `path` is on (queue files, Kafka logs): tmpfs would make fsync free."""
    best = max(
        (p for p in psutil.disk_partitions(all=True) if str(path.resolve()).startswith(p.mountpoint)),
        key=lambda p: len(p.mountpoint),
        default=None,
    )
    return f"{best.fstype} ({best.mountpoint})" if best else "unknown"
