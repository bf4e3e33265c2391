"""Every error the HTTP API answers, shaped in one place: ``{"error": "one line", "code":
"stable.code", ...details}``.

``serving.schemas.ErrorResponse`` documents the shape. ``error`` is for people; a client
branches on ``code``, which never changes wording. Handlers return these responses;
the ASGI middlewares (auth, body limit, readiness, request timeout) send them with
``await response(scope, receive, send)``. Every 429 and 503 says when to try again
(``Retry-After``, seconds), as the OpenAPI document (``serving.openapi``) promises.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

if TYPE_CHECKING:
    from features.intake.rules import Findings


# A 503 that cannot tell when it ends (a worker still loading its model, a store that is
# locked): long enough not to hammer the worker, short enough to notice it is back.
DEFAULT_RETRY_AFTER_S = 5
_RETRY_STATUSES = (429, 503)

# The ``code`` of an answer whose sender names no more precise one: one per status. Those that
# can say more pass their own (``batch.size``, ``auth.missing_key``; ErrorResponse lists them).
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "auth.unauthenticated",
    403: "auth.role",
    404: "not_found",
    405: "route.method",
    408: "body.timeout",
    409: "conflict",
    413: "body.too_large",
    415: "body.media_type",
    422: "unprocessable",
    429: "busy",
    431: "headers.too_large",
    503: "unavailable",
    504: "timeout",
}
VALIDATION_CODE = "validation"  # a body that is not the documented JSON (pydantic's refusal)
# A refused request names every refused row, so that a client can set them aside and send the
# rest in one round trip: each row's first problem always, the others up to this many in all
# (1,000 declarations breaking five rules each would be a megabyte of answer).
MAX_PROBLEMS = 1000


class ErrorJSONResponse(JSONResponse):
    """JSON that always renders: a NaN or infinity among the details (an id read as a float
    NaN from a missing value) is sent as null instead of failing the answer with a 500."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except ValueError:  # out-of-range floats are not JSON
            return super().render(json_finite(content))


def json_finite(value: Any) -> Any:
    """``value`` with every number JSON cannot hold (NaN, infinity) and pandas' missing values
    (NA, NaT) as None, through dicts, lists and tuples."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_finite(v) for v in value]
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas', without importing pandas
        return None
    return value


def _with_retry_after(status: int, headers: dict[str, str] | None) -> dict[str, str] | None:
    if status not in _RETRY_STATUSES or any(k.lower() == "retry-after" for k in headers or {}):
        return headers
    return {**(headers or {}), "Retry-After": str(DEFAULT_RETRY_AFTER_S)}


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    **details: Any,
) -> JSONResponse:
    """``{"error": message, "code": code, **details}`` with ``status`` (and ``Retry-After`` on
    429/503); ``code`` defaults to the status's (``STATUS_CODES``)."""
    return ErrorJSONResponse(
        {"error": message, "code": code or STATUS_CODES.get(status, f"http.{status}"), **details},
        status_code=status,
        headers=_with_retry_after(status, headers),
    )


def ready_response(model: dict[str, Any]) -> JSONResponse:
    """``/readyz`` of a worker that is ready: the model it decides with."""
    return JSONResponse({"ready": True, "model": model}, status_code=200)


def not_ready_response(reason: str) -> JSONResponse:
    """``/readyz`` of a worker that is not ready: why, not just a bare 503."""
    return JSONResponse(
        {"ready": False, "reason": reason},
        status_code=503,
        headers=_with_retry_after(503, None),
    )


def rejection_response(
    findings: Findings, records: list[Any], limit: int = MAX_PROBLEMS
) -> JSONResponse:
    """400 for a request with rule faults: its problems with their locations, as the gate
    words them for a file; every refused row among them (``listed_problems``)."""
    problems = rule_problems(findings, records)
    shown = "; ".join(f"declarations.{p['loc'][1]}.{p['msg']}" for p in problems[:3])
    more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
    rows = len({p["loc"][1] for p in problems})
    return error_response(
        400,
        f"{rows} declaration(s) break the contract: {shown}{more}",
        code="contract.rules",
        **listed_problems(problems, limit=limit),
    )


def two_contents_response(
    twice: list[dict[str, Any]], findings: Findings, records: list[Any], limit: int = MAX_PROBLEMS
) -> JSONResponse:
    """422 for a request holding one declaration id with two contents (``twice``: one problem
    per later row, as ``rule_problems`` gives them), listing every such row and every row the
    declaration rules refuse too, in one answer: named one at a time, a client setting the
    named rows aside took a round trip per row (probe 31: four for a batch of ten)."""
    problems = sorted([*twice, *rule_problems(findings, records)], key=lambda p: p["loc"][1])
    first = twice[0]
    row = first["loc"][1]
    more_rows = len({p["loc"][1] for p in problems}) - 1
    others = f"; {more_rows} more row(s) refused" if more_rows else ""
    return error_response(
        422,
        f"declarations.{row}.{first['msg']}; send one version of a declaration per request (a "
        f"correction in a later request is decided anew){others}: every refused row is in "
        "problems",
        code="declaration_id.two_contents",
        field=f"declarations.{row}.declaration_id",
        loc=["declarations", row, "declaration_id"],
        **listed_problems(problems, limit=limit),
    )


def rule_problems(findings: Findings, records: list[Any]) -> list[dict[str, Any]]:
    """The rule faults of a request, one problem per refused row and rule, in row order."""
    problems = []
    for finding in findings.faults:
        for row, message in zip(finding.rows.tolist(), finding.messages(), strict=True):
            problems.append(
                {
                    "loc": ["declarations", row, finding.rule.field],
                    "declaration_id": getattr(records[row], "declaration_id", None),
                    "rule": finding.rule.name,
                    "msg": message,
                }
            )
    problems.sort(key=lambda p: p["loc"][1])
    return problems


def validation_response(errors: list[dict[str, Any]]) -> JSONResponse:
    """400 for a body pydantic refused (``ValidationError.errors()`` without urls, context or
    input): the first error in one line, then each one (no values, no links), every refused
    row among them."""
    detail = [
        {
            "type": e["type"],
            "loc": [p if isinstance(p, int) else str(p) for p in e["loc"]],
            # pydantic says "Value error, <our message>" of a validator's refusal: ours is whole
            "msg": e["msg"].removeprefix("Value error, "),
        }
        for e in errors
    ]
    first = detail[0] if detail else {"loc": [], "msg": "invalid request body"}
    where = ".".join(str(part) for part in first["loc"])
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    extra = {"field": where} if where else {}
    listed = listed_problems(detail, max_rows=MAX_PROBLEMS, key="detail")
    return error_response(
        400,
        f"{where or 'request body'}: {first['msg']}{more}",
        code=VALIDATION_CODE,
        **listed,
        **extra,
    )


def listed_problems(
    problems: list[dict[str, Any]],
    *,
    limit: int = MAX_PROBLEMS,
    max_rows: int | None = None,
    key: str = "problems",
) -> dict[str, Any]:
    """``problems`` (each with a ``loc`` [collection, row, ...]) as an answer's details: the
    first problem of every row (of the first ``max_rows`` rows: a handler's request holds at
    most ``serve.max_batch``, a body pydantic refused any number), then the others in order
    while fewer than ``limit`` are listed; with ``{key}_total`` and ``truncated``."""
    chosen: set[int] = set()
    rows: set[tuple[Any, ...]] = set()
    for i, problem in enumerate(problems):
        if max_rows is not None and len(rows) >= max_rows:
            break
        if (row := _row_of(problem["loc"])) not in rows:
            rows.add(row)
            chosen.add(i)
    for i in range(len(problems)):
        if len(chosen) >= limit:
            break
        chosen.add(i)
    shown = [p for i, p in enumerate(problems) if i in chosen]
    return {key: shown, f"{key}_total": len(problems), "truncated": len(shown) < len(problems)}


def _row_of(loc: list[Any]) -> tuple[Any, ...]:
    """The item a location is in: ("declarations", 3) of ["declarations", 3, "quantity"]."""
    return tuple(loc[:2]) if len(loc) >= 2 and isinstance(loc[1], int) else tuple(loc[:1])
