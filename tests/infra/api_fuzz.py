"""Schemathesis against a running ingest service: every operation of its /openapi.json, fuzzed with each API key,
in both generation modes (data the schema allows, and data it does not), every response checked against the
document. Deterministic (derandomized, no example database) so that a CI failure reproduces.

Every call's response is checked; a failure is recorded and the run goes on, so one run lists every distinct
failure (by operation, key, check and status) with the first request that showed it.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Err
from schemathesis.schemas import APIOperation, BaseSchema
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


Known = tuple[str, str, dict[str, Any]]  # (path, method, Case arguments: path_parameters, headers, query, body)


def fuzz(
    base_url: str, keys: dict[str, str], max_examples: int, known: Sequence[Known] = (), timeout: float = 30.0
) -> FuzzReport:
    """Run every operation of `base_url`/openapi.json with each of `keys` (name -> bearer token), then the
    document's links as stateful sequences (inject, then read or cancel what it made; create a webhook, then
    read and delete it), `max_examples` sequences per key; then the `known` requests (of things that exist, so
    their success answers are checked too)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=timeout)
    schema.validate()  # the document itself is valid OpenAPI
    report = FuzzReport()
    with requests.Session() as session:
        for name, token in keys.items():
            caller = _Caller(base_url, name, token, session, timeout, report)
            for result in schema.get_all_operations():
                if isinstance(result, Err):
                    raise result.err()  # an operation the document describes so that nothing can be generated
                for mode in MODES:
                    caller.examples(result.ok(), mode, max_examples)
            caller.sequences(schema, max_examples)
            for path, method, parts in known:
                caller.call(schema[path][method].Case(**parts))
    return report


def _settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: every failure is kept as found
        suppress_health_check=list(HealthCheck),
        stateful_step_count=5,
    )


@dataclass
class _Caller:
    base_url: str
    key: str
    token: str
    session: requests.Session
    timeout: float
    report: FuzzReport

    def call(self, case: schemathesis.Case[Any]) -> schemathesis.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        response = case.call(base_url=self.base_url, session=self.session, headers=headers, timeout=self.timeout)
        label = case.operation.label
        self.report.operations.add(label)
        self.report.calls += 1
        self.report.statuses[label, response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Failure, FailureGroup) as exc:
            for failure in exc.exceptions if isinstance(exc, FailureGroup) else [exc]:
                kind = type(failure).__name__
                self.report.server_errors += kind == "ServerError"
                self.report.undocumented += kind == "UndefinedStatusCode"
                where = (label, self.key, kind, response.status_code)
                request = case.as_curl_command(headers)
                self.report.failures.setdefault(where, f"{request}\n  -> {response.text[:300]}")
        return response

    def examples(
        self, operation: APIOperation[Any, Any, Any, Any], mode: schemathesis.GenerationMode, max_examples: int
    ) -> None:
        @_settings(max_examples)
        @given(operation.as_strategy(generation_mode=mode))
        def run(case: schemathesis.Case[Any]) -> None:
            self.call(case)

        with contextlib.suppress(Unsatisfiable):  # nothing of this operation can be negated (no parameters, body)
            run()

    def sequences(self, schema: BaseSchema, max_examples: int) -> None:
        caller = self

        class Machine(schema.as_state_machine()):  # type: ignore[misc]
            def call(self, case: schemathesis.Case[Any], **kwargs: Any) -> schemathesis.Response:
                return caller.call(case)

            def validate_response(self, *args: Any, **kwargs: Any) -> None:
                pass  # checked in call, where each failure is recorded and the sequence goes on

        Machine.run(settings=_settings(max_examples))
