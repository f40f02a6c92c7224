"""A tiny authoritative DNS server on loopback (UDP, dnspython) answering from a table, for MX tests.

Names in the table answer their records; a name with records of other types answers NOERROR with
no data; any other name is NXDOMAIN. A (name, type) in `silent` is never answered (the client times out),
one in `failing` answers SERVFAIL.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from types import TracebackType

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class LoopbackDns:
    def __init__(
        self,
        records: dict[tuple[str, str], list[str]],
        host: str = "127.0.0.1",
        *,
        silent: Iterable[tuple[str, str]] = (),
        failing: Iterable[tuple[str, str]] = (),
        ttl: int = 60,
    ) -> None:
        self._records = {_name(name, kind): values for (name, kind), values in records.items()}
        self._silent = {_name(name, kind) for name, kind in silent}
        self._failing = {_name(name, kind) for name, kind in failing}
        self._ttl = ttl  # 0: resolvers may not cache, so a changed record is seen at once
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="loopback-dns", daemon=True)

    def set(self, name: str, kind: str, values: list[str]) -> None:
        """Change (or add) a record set while the server runs, as a zone update would."""
        self._records[_name(name, kind)] = values

    @property
    def address(self) -> str:
        host, port = self._sock.getsockname()
        return f"{host}:{port}"

    def _answer(self, wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name, kind = _name(question.name.to_text(), dns.rdatatype.to_text(question.rdtype))
        if (name, kind) in self._silent:
            return None
        values = self._records.get((name, kind))
        if (name, kind) in self._failing:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif values:
            response.answer.append(dns.rrset.from_text(question.name, self._ttl, "IN", kind, *values))
        elif not any(n == name for n, _ in self._records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            answer = self._answer(wire)
            if answer is not None:
                self._sock.sendto(answer, peer)

    def __enter__(self) -> LoopbackDns:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


def _name(name: str, kind: str) -> tuple[str, str]:
    return name.rstrip(".").lower(), kind.upper()
