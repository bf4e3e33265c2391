"""The published OpenAPI document against the real server: valid, and what it answers.

A real `parcelrisk serve` is fuzzed by schemathesis from its own ``/docs.json``: valid and
invalid requests for every documented operation, each one sent with every role's key and with
none. Promise: no 5xx, and every answer's status, content type, headers and body as documented.
Generation is derandomized (same cases every run).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from scripts.reliability.server import KEYS, Champion, RealServer

FULL_CASES = 2_000
QUICK_CASES = 200
BUDGET_S = {False: 900.0, True: 240.0}  # the fuzzing itself; a start adds ~30 s
ROLES: dict[str, str | None] = {**KEYS, "no-key": None}


class _OutOfTime(Exception):
    pass


def run(champion: Champion, work: Path, quick: bool = False) -> dict[str, Any]:
    started = time.monotonic()
    target = QUICK_CASES if quick else FULL_CASES
    failures: list[str] = []
    with RealServer(champion, work, name="schema") as server:
        document, document_valid = _fetch_document(server.url, failures)
        fuzz = _fuzz(server.url, document, target, BUDGET_S[quick], failures) if document else {}
    by_status = fuzz.get("by_status", {})
    cases = sum(by_status.values())
    if cases < target:
        failures.append(f"only {cases} cases of {target} ran (budget {BUDGET_S[quick]:g} s)")
    result = {
        "ok": False,
        "cases": cases,
        "by_status": {str(k): v for k, v in sorted(by_status.items())},
        "operations": fuzz.get("operations", 0),
        "server_errors": fuzz.get("server_errors", 0),
        "schema_mismatches": fuzz.get("schema_mismatches", 0),
        "document_valid": document_valid,
        "seconds": round(time.monotonic() - started, 1),
        "failures": failures[:20],
    }
    result["ok"] = (
        document_valid
        and cases >= target
        and result["server_errors"] == 0
        and result["schema_mismatches"] == 0
        and not failures
    )
    return result


def _fetch_document(url: str, failures: list[str]) -> tuple[dict[str, Any] | None, bool]:
    """The served document and whether it is valid OpenAPI naming no other site."""
    from openapi_spec_validator import validate

    response = httpx.get(f"{url}/docs.json", headers={"X-API-Key": KEYS["auditor"]}, timeout=30)
    if response.status_code != 200:
        failures.append(f"GET /docs.json answered {response.status_code}")
        return None, False
    document = response.json()
    valid = True
    try:
        validate(document)
    except Exception as exc:  # the validator's errors have no common base worth naming
        failures.append(f"/docs.json is not valid OpenAPI: {str(exc).splitlines()[0][:200]}")
        valid = False
    urls = re.findall(r"https?://[^\s\"')]+", json.dumps(document))
    foreign = [u for u in urls if not re.match(r"https?://(localhost|127\.0\.0\.1)\b", u)]
    if foreign:
        failures.append(f"/docs.json names other sites: {', '.join(sorted(set(foreign))[:3])}")
        valid = False
    return document, valid


def _fuzz(
    url: str, document: dict[str, Any], target: int, budget_s: float, failures: list[str]
) -> dict[str, Any]:
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import FailureGroup  # a BaseExceptionGroup
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ]
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    plan = []  # (operation, mode): invalid requests only where there is an input to break
    for op in operations:
        spec = document["paths"][op.path][op.method]
        plan.append((op, GenerationMode.POSITIVE))
        if "requestBody" in spec or "parameters" in spec:
            plan.append((op, GenerationMode.NEGATIVE))
    with_input = sum(1 for _, mode in plan if mode is GenerationMode.NEGATIVE) * 2
    # Operations without input give one distinct request; the rest share the target.
    per_pair = math.ceil(1.15 * target / len(ROLES) / max(1, with_input))
    by_status: Counter[int] = Counter()
    counts = {"server_errors": 0, "schema_mismatches": 0}
    deadline = time.monotonic() + budget_s
    seen_failures: set[str] = set()

    def sender(op: Any, mode: Any, session: requests.Session) -> Any:
        @given(case=op.as_strategy(generation_mode=mode))
        @settings(
            max_examples=per_pair,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def send(case: Any) -> None:
            for role, key in ROLES.items():
                if time.monotonic() > deadline:
                    raise _OutOfTime
                headers = {"X-API-Key": key} if key else {}
                try:
                    response = case.call(base_url=url, session=session, headers=headers)
                except requests.RequestException as exc:
                    _note(failures, seen_failures, f"{op.method} {op.path} ({role}): {exc}")
                    continue
                by_status[response.status_code] += 1
                if response.status_code >= 500:
                    counts["server_errors"] += 1
                try:
                    case.validate_response(response, checks=checks, headers=headers)
                except (Exception, FailureGroup) as exc:  # a failure group: one line of it
                    if response.status_code < 500:
                        counts["schema_mismatches"] += 1
                    first = str(exc).strip().splitlines()[0][:160]
                    _note(
                        failures,
                        seen_failures,
                        f"{op.method.upper()} {op.path} ({role}) -> "
                        f"{response.status_code}: {first}; body {case.body!r:.200}",
                    )

        return send

    with requests.Session() as session:
        for op, mode in plan:
            try:
                sender(op, mode, session)()
            except _OutOfTime:
                break
    return {"by_status": by_status, "operations": len(operations), **counts}


def _note(failures: list[str], seen: set[str], line: str) -> None:
    key = line.split(":")[0]
    if key not in seen and len(failures) < 20:
        seen.add(key)
        failures.append(line)
