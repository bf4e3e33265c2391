"""Every error the HTTP API answers, shaped in one place: ``{"error": "one line", ...details}``.

``serving.schemas.ErrorResponse`` documents the shape. Handlers return these responses;
the ASGI middlewares (auth, body limit, readiness, request timeout) send them with
``await response(scope, receive, send)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

if TYPE_CHECKING:
    from features.intake.rules import Findings


def error_response(
    status: int, message: str, *, headers: dict[str, str] | None = None, **details: Any
) -> JSONResponse:
    """``{"error": message, **details}`` with ``status``."""
    return JSONResponse({"error": message, **details}, status_code=status, headers=headers)


def not_ready_response(reason: str) -> JSONResponse:
    """``/readyz`` of a worker that is not ready: why, not just a bare 503."""
    return JSONResponse({"ready": False, "reason": reason}, status_code=503)


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
