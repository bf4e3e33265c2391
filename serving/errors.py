"""Every error the HTTP API answers, shaped in one place: ``{"error": "one line", ...details}``.

``serving.schemas.ErrorResponse`` documents the shape. Handlers return these responses;
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
    status: int, message: str, *, headers: dict[str, str] | None = None, **details: Any
) -> JSONResponse:
    """``{"error": message, **details}`` with ``status`` (and ``Retry-After`` on 429/503)."""
    return ErrorJSONResponse(
        {"error": message, **details},
        status_code=status,
        headers=_with_retry_after(status, headers),
    )


def not_ready_response(reason: str) -> JSONResponse:
    """``/readyz`` of a worker that is not ready: why, not just a bare 503."""
    return JSONResponse(
        {"ready": False, "reason": reason},
        status_code=503,
        headers=_with_retry_after(503, None),
    )


def rejection_response(findings: Findings, records: list[Any], limit: int = 20) -> JSONResponse:
    """400 for a request with rule faults: every problem with its location, as the gate words
    it for a file."""
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
    shown = "; ".join(f"declarations.{p['loc'][1]}.{p['msg']}" for p in problems[:3])
    more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
    rows = len({p["loc"][1] for p in problems})
    return error_response(
        400,
        f"{rows} declaration(s) break the contract: {shown}{more}",
        problems=problems[:limit],
    )
