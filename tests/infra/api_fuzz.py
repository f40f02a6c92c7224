"""Schemathesis against a running ingest service: every operation of its /openapi.json, fuzzed with each API key,
in both generation modes (data the schema allows, and data it does not), every response checked against the
document. Deterministic (derandomized, no example database) so that a CI failure reproduces.

Every call's response is checked; a failure is recorded and the run goes on, so one run lists every distinct
failure (by operation, key, check and status) with the first request that showed it.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Err
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


@dataclass
class FuzzReport:
    operations: set[str] = field(default_factory=set)
    calls: int = 0
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)  # by (operation, status)
    failures: dict[tuple[str, str, str, int], str] = field(default_factory=dict)  # first request of each
    server_errors: int = 0
    undocumented: int = 0

    def summary(self) -> str:
        lines = [
            f"schemathesis {schemathesis.__version__}: {len(self.operations)} operations, {self.calls} calls, "
            f"{len(self.failures)} distinct failures, {self.server_errors} server errors, "
            f"{self.undocumented} undocumented status codes",
        ]
        for op in sorted(self.operations):
            seen = sorted((code, n) for (o, code), n in self.statuses.items() if o == op)
            lines.append(f"  {op}: " + ", ".join(f"{code}×{n}" for code, n in seen))
        for (op, key, check, status), request in sorted(self.failures.items()):
            lines.append(f"FAIL {op} [{key}] {check} (HTTP {status}): {request}")
        return "\n".join(lines)


def fuzz(base_url: str, keys: dict[str, str], max_examples: int, timeout: float = 30.0) -> FuzzReport:
    """Run every operation of `base_url`/openapi.json with each of `keys` (name -> bearer token)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=timeout)
    schema.validate()  # the document itself is valid OpenAPI
    report = FuzzReport()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            if isinstance(result, Err):
                raise result.err()  # an operation the document describes so that nothing can be generated
            operation = result.ok()
            report.operations.add(operation.label)
            for name, token in keys.items():
                for mode in MODES:
                    _run(operation, mode, name, token, session, base_url, max_examples, timeout, report)
    return report


def _run(
    operation: APIOperation[Any, Any, Any, Any],
    mode: schemathesis.GenerationMode,
    key: str,
    token: str,
    session: requests.Session,
    base_url: str,
    max_examples: int,
    timeout: float,
    report: FuzzReport,
) -> None:
    @settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: every failure is kept as found
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=mode))
    def call(case: schemathesis.Case[Any]) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=timeout)
        report.calls += 1
        report.statuses[operation.label, response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Failure, FailureGroup) as exc:
            for failure in exc.exceptions if isinstance(exc, FailureGroup) else [exc]:
                kind = type(failure).__name__
                report.server_errors += kind == "ServerError"
                report.undocumented += kind == "UndefinedStatusCode"
                where = (operation.label, key, kind, response.status_code)
                report.failures.setdefault(where, f"{case.as_curl_command(headers)}\n  -> {response.text[:300]}")

    with contextlib.suppress(Unsatisfiable):  # nothing of this operation can be negated (no parameters, no body)
        call()
