"""The OpenAPI document this service publishes at ``GET /docs.json``, built from its own models.

BentoML generates one from the API signatures, but it declares OpenAPI 3.0.2 while holding
JSON Schema 2020-12 (pydantic's numeric ``exclusiveMinimum``, ``anyOf [..., {type: null}]``), so
schema-driven clients generated no bodies from it; it documents BentoML's error bodies instead
of this service's, none of the statuses the middlewares answer, no security scheme, and its
description loads badge images from third-party sites. This document is OpenAPI 3.1.0: 3.1's
schema dialect *is* JSON Schema 2020-12, what pydantic emits, so the request and response
models (``serving.schemas``, the contract's ``Declaration``) go in as they are, with no lossy
conversion. Every status each path can answer is listed with its real body: the statuses come
from the middlewares and handlers named beside them, and the serving tests check the document
against the server (schemathesis). BentoML's ``/schema.json``, which its clients read, is left
as it is.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, Field, create_model
from pydantic.json_schema import models_json_schema

from serving.auth import ROUTE_ROLES
from serving.config import worker_settings
from serving.patches import REQUEST_ID_FORM
from serving.schemas import (
    DecisionRequest,
    Declaration,
    ErrorResponse,
    ExplainRequest,
    Explanation,
    NotReady,
    OutcomeResult,
    OutcomesResponse,
    Ready,
    ScoreRequest,
    ScoreResponse,
    StoredDecision,
)

DOCS_PATH = "/docs.json"
OPENAPI_VERSION = "3.1.0"
_REF = "#/components/schemas/{model}"

DESCRIPTION = """\
Risk targeting for e-commerce parcels, for the clearance system that lodges their
declarations.

* `POST /score` (role *scorer*): 1 to `serve.max_batch` declarations in, one decision each
  out: lane (red = inspect, yellow = document check, green = release), calibrated risk,
  expected revenue, readable reasons. Every decision is stored before it is answered; sending
  the same declaration again returns the same decision (safe to retry after a timeout).
* `POST /explain` (*scorer*, *auditor*): every feature's contribution to one decision.
* `GET|POST /decision` (*auditor*): a stored decision as recorded, with its integrity check.
* `POST /outcomes` (*inspector*): inspection results, all or nothing.

Authenticate with `X-API-Key: KEY` or `Authorization: Bearer KEY`; the probes `/livez`,
`/readyz`, `/healthz`, the docs page `/` and this document (`GET /docs.json`) are open. Every
error is JSON `{"error": "one line", "code": "stable.code", ...}` (`ErrorResponse`): branch
on `code`, not on the wording; `field` and `loc` name the offending input (rows by number).
A refused request changes nothing: none of its declarations is scored or stored, none of its
results stored. 400 names each field or contract rule a request breaks, every refused row at
least once; 429 and 503 carry `Retry-After` (seconds): wait that long and send the same
request again. Every answer carries `X-Request-ID`: the request's own when it sent one of the
form `[A-Za-z0-9._:-]{1,64}`, else a new one; quote it to the operator. Any path answers 404
(`route.not_found`) when it does not exist, 405 (`route.method`) to a method it does not
take, and 431 (`headers.too_large`) to headers over 64 KiB. Safe to send again: 408, 429,
500, 503, 504 and a connection reset on `/score` (a declaration already decided returns its
decision); a 4xx other than 408 and 429 fails the same way again. Decisions come back in the
order sent: match them to declarations by position (`declaration_id` comes back as read,
trimmed and NFKC-normalised). An idle keep-alive connection is closed after
`serve.keep_alive_s` (75 s by default): keep a client pool's idle time below it. Nothing on
this server calls any other site.
"""


# --- request bodies: what BentoML builds from the endpoint signatures in serving.service ----


def _request_models(max_batch: int) -> dict[str, type[BaseModel]]:
    declarations = (
        list[Declaration],  # type: ignore[valid-type]
        Field(min_length=1, max_length=max_batch, description="1 to serve.max_batch (422)."),
    )
    outcomes = (
        list[OutcomeResult],  # type: ignore[valid-type]
        Field(min_length=1, max_length=max_batch, description="1 to serve.max_batch (422)."),
    )
    return {
        # the endpoint's own input spec (no key but declarations), with the batch size
        "ScoreRequest": create_model(
            "ScoreRequest",
            __base__=ScoreRequest,
            __doc__=ScoreRequest.__doc__,
            declarations=declarations,
        ),
        # the endpoints' own input specs: no other key (400)
        "ExplainRequest": ExplainRequest,
        "DecisionRequest": DecisionRequest,
        "OutcomesRequest": create_model(
            "OutcomesRequest",
            outcomes=outcomes,
            skip_unknown=(
                bool,
                Field(
                    False,
                    description="Leave out (and name in skipped_unknown_ids) the results of "
                    "declarations this service never decided, e.g. parcels sent to the "
                    "fallback lane after a 504, instead of refusing the batch.",
                ),
            ),
        ),
    }


_RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    ScoreResponse,
    Explanation,
    StoredDecision,
    OutcomesResponse,
    ErrorResponse,
    NotReady,
    Ready,
)


# --- responses ------------------------------------------------------------------------------

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before sending the same request again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
_ERRORS: dict[int, tuple[str, dict[str, Any] | None]] = {
    400: (
        "The body is not the documented JSON (`validation`: `detail` lists the errors, an "
        "unknown key among them), or a declaration breaks a contract rule (`contract.rules`: "
        "`problems` lists the rules broken with their row and field, every refused row at "
        "least once; `truncated` says whether more were left out). Nothing of the request is "
        "scored or stored.",
        None,
    ),
    401: (
        "No API key, or an unknown one.",
        {
            "WWW-Authenticate": {
                "description": 'Always `Bearer realm="parcelrisk"`.',
                "required": True,
                "schema": {"type": "string"},
            }
        },
    ),
    403: ("The key's role may not call this path.", None),
    404: ("No stored decision has this id.", None),
    409: ("The request contradicts what is stored.", None),
    431: (
        "The request's headers are over 64 KiB: the connection is closed (answered before "
        "the request has an id: no `X-Request-ID`).",
        None,
    ),
    413: ("The body is larger than `serve.max_body_bytes`.", None),
    415: ("The body is declared as something other than JSON.", None),
    422: ("Well-formed, but not processable as asked (see `error`).", None),
    500: (
        "The service failed on declarations that passed every check (`features.failed`: the "
        "online features could not be computed for a batch, which may hold other requests' "
        "declarations): nothing was scored or stored; retrying is safe, a bounded number of "
        "times.",
        None,
    ),
    429: ("Too much work queued: retry after `Retry-After` seconds.", _RETRY_AFTER),
    503: ("Not ready (model loading) or the decision store cannot write.", _RETRY_AFTER),
    408: (
        "The request's body did not arrive whole within `serve.request_timeout_s` (the "
        "client stalled, or declared more than it sent): nothing was scored; retrying is "
        "safe.",
        None,
    ),
    504: ("Not answered within `serve.request_timeout_s`; retrying is safe.", None),
}


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF.format(model=schema)}}}


def _error(status: int, why: str | None = None) -> dict[str, Any]:
    text, headers = _ERRORS[status]
    out: dict[str, Any] = {"description": why or text, "content": _json("ErrorResponse")}
    if headers:
        out["headers"] = headers
    return out


def _operation(
    operation_id: str,
    summary: str,
    tag: str,
    ok: dict[str, Any],
    errors: dict[int, str | None],
    *,
    path: str,
    body: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One API operation: its roles from ``serving.auth``, 401/403 from the key check, 413/415
    from the body limit (POST), 408 for a body not sent within the request timeout (POST), 504
    for a request not answered within it, and its own ``errors``."""
    roles = sorted(ROUTE_ROLES[path])
    statuses = {**errors, 401: None, 403: None, 431: None, 504: None}
    if body is not None:
        statuses.update({400: statuses.get(400), 408: None, 413: None, 415: None})
    op: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "description": f"Roles: {', '.join(roles)}.",
        "tags": [tag],
        "x-roles": roles,
    }
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json(body)}
    op["responses"] = {"200": ok} | {
        str(status): _error(status, statuses[status]) for status in sorted(statuses)
    }
    return op


def _ok(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": _json(schema)}


def _probe(operation_id: str, summary: str, not_ready: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {
            "description": "OK (an empty line).",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    }
    if not_ready:
        responses["200"] = {
            "description": "This worker can score, with the model it names.",
            "content": _json("Ready"),
        }
        responses["503"] = {
            "description": "This worker cannot score (yet): the reason.",
            "headers": _RETRY_AFTER,
            "content": _json("NotReady"),
        }
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["operations"],
        "security": [],
        "responses": responses,
    }


def _paths() -> dict[str, Any]:
    decision_id = {
        "name": "decision_id",
        "in": "query",
        "required": True,
        "description": "Id of a stored decision (`decision_id` of a /score answer).",
        "schema": {"type": "string", "minLength": 1},
    }
    stored = _ok("StoredDecision", "The decision as recorded; `intact` checks its hash.")
    paths = {
        "/score": {
            "post": _operation(
                "score",
                "Score declarations: lane, risk, expected revenue, reasons.",
                "scoring",
                _ok("ScoreResponse", "One decision per declaration, in the order sent."),
                {
                    400: None,
                    422: "Not 1 to `serve.max_batch` declarations (`batch.size`), an outcome "
                    "field sent for scoring (`outcome_field`), one `declaration_id` with two "
                    "contents (`declaration_id.two_contents`: `problems` lists every such row "
                    "and every row the contract rules refuse too). Nothing scored or stored.",
                    429: None,
                    500: None,
                    503: None,
                },
                path="/score",
                body="ScoreRequest",
            )
        },
        "/explain": {
            "post": _operation(
                "explain",
                "Every feature's contribution to a stored decision or to a declaration.",
                "scoring",
                _ok("Explanation", "base_value + sum(contributions) = raw_score."),
                {
                    400: None,
                    404: None,
                    409: "The decision was made by another model than this server's "
                    "(`explain.other_model`), or its stored record cannot be read: damaged or "
                    "edited (`decision.damaged`).",
                    422: "Not exactly one of `decision_id` and `declaration`.",
                    503: "Not ready (model loading), or the decision store's archive cannot "
                    "be read (`decision.archive_unavailable`: moved, deleted, damaged).",
                },
                path="/explain",
                body="ExplainRequest",
            )
        },
        "/decision": {
            "get": _operation(
                "getDecision",
                "A stored decision as recorded.",
                "audit",
                stored,
                {
                    404: None,
                    409: _DAMAGED,
                    422: "No `decision_id` given.",
                    503: "Not ready (service starting), or the store's archive cannot be read "
                    "(`decision.archive_unavailable`).",
                },
                path="/decision",
                parameters=[decision_id],
            ),
            "post": _operation(
                "postDecision",
                "A stored decision as recorded (the id in a JSON body).",
                "audit",
                stored,
                {400: None, 404: None, 409: _DAMAGED, 503: _ARCHIVE_UNAVAILABLE},
                path="/decision",
                body="DecisionRequest",
            ),
        },
        "/outcomes": {
            "post": _operation(
                "storeOutcomes",
                "Store inspection results, all or nothing; an identical re-post is a no-op.",
                "inspection",
                _ok("OutcomesResponse", "Every result stored (or already stored)."),
                {
                    400: "A result breaks a rule (`problems` names every refused row); "
                    "nothing stored.",
                    409: "Each refused result only contradicts one already stored.",
                    422: "Not 1 to `serve.max_batch` results.",
                    503: "The decision store cannot write: nothing stored, send it again.",
                },
                path="/outcomes",
                body="OutcomesRequest",
            )
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (any valid key; Prometheus sends it as bearer).",
                "tags": ["operations"],
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": _error(401),
                },
            }
        },
        "/docs.json": {
            "get": {
                "operationId": "openapiDocument",
                "summary": "This document (open, as is the docs page at `/` that shows it).",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document of this service.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/livez": {"get": _probe("livez", "The process is alive.")},
        "/readyz": {"get": _probe("readyz", "This worker can score.", not_ready=True)},
        "/healthz": {"get": _probe("healthz", "Alias of /livez (deprecated by Kubernetes).")},
    }
    for item in paths.values():
        for operation in item.values():
            _add_request_id(operation)
    return paths


_ARCHIVE_UNAVAILABLE = (
    "The decision may be archived, and the store's archive cannot be read (moved, deleted, "
    "not mounted, damaged: `decision.archive_unavailable`); `parcelrisk audit verify` names it."
)
_DAMAGED = (
    "The stored record cannot be read (damaged, or edited outside the service): its "
    "integrity cannot be checked (`decision.damaged`); `parcelrisk audit verify` names it."
)
_REQUEST_ID_SCHEMA = {"type": "string", "pattern": f"^{REQUEST_ID_FORM.pattern}$"}


def _add_request_id(operation: dict[str, Any]) -> None:
    """``X-Request-ID`` on ``operation``: an optional request header, and a header of every
    answer (``serving.patches.RequestTimeoutMiddleware`` adds it) but the 431, which is sent
    before the request has one."""
    operation.setdefault("parameters", []).append(
        {
            "name": "X-Request-ID",
            "in": "header",
            "required": False,
            "description": "Your id for this request, echoed in the answer and named in the "
            "service's log lines; one of another form is replaced by a new id.",
            "schema": _REQUEST_ID_SCHEMA,
        }
    )
    for status, response in operation["responses"].items():
        if status != "431":
            response["headers"] = {
                **response.get("headers", {}),
                "X-Request-ID": {
                    "description": "The request's id: the one sent, or a new one.",
                    "required": True,
                    "schema": _REQUEST_ID_SCHEMA,
                },
            }


def _allow_null_in_enums(schema: dict[str, Any]) -> None:
    """Add null to the ``enum`` of a property that may be null.

    The contract's ``Declaration`` documents an optional code field (``category``) as
    ``anyOf [string, null]`` beside an ``enum`` of the codes only, which refuses the null (its
    own default) that the API accepts.
    """
    for prop in schema.get("properties", {}).values():
        nullable = {"type": "null"} in prop.get("anyOf", [])
        if nullable and "enum" in prop and None not in prop["enum"]:
            prop["enum"] = [*prop["enum"], None]


def build_document(max_batch: int, max_body_bytes: int | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of this service (plain JSON data). ``max_body_bytes``: the
    configured body limit, stated on every body and its 413 (a batch of ``max_batch``
    declarations at their longest texts can exceed it: a client must know where to split,
    probe 31)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("parcelrisk")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        release = "0"
    requests = _request_models(max_batch)
    models = [(m, "validation") for m in requests.values()]
    models += [(m, "serialization") for m in _RESPONSE_MODELS]
    _, defs = models_json_schema(models, ref_template=_REF)  # type: ignore[arg-type]
    for schema in defs["$defs"].values():
        _allow_null_in_enums(schema)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "parcelrisk", "version": release, "description": DESCRIPTION},
        "tags": [
            {"name": "scoring", "description": "Decisions for new declarations."},
            {"name": "audit", "description": "Stored decisions, as recorded."},
            {"name": "inspection", "description": "Inspection results coming back."},
            {"name": "operations", "description": "Probes and metrics."},
        ],
        "paths": _with_body_limit(_paths(), max_body_bytes),
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The same API key as a bearer token (BentoML clients' token=).",
                },
            },
        },
        "security": [{"apiKey": []}, {"bearer": []}],
    }


def _with_body_limit(paths: dict[str, Any], limit: int | None) -> dict[str, Any]:
    """``paths`` with the body limit on each request body (``x-max-body-bytes``) and in its
    413's description."""
    if limit is None:
        return paths
    for operations in paths.values():
        for operation in operations.values():
            if "requestBody" not in operation:
                continue
            operation["requestBody"]["x-max-body-bytes"] = limit
            operation["responses"]["413"]["description"] = (
                f"The body is larger than {limit:,} bytes (`serve.max_body_bytes`): nothing was "
                "scored. Text escaped as `\\uXXXX` takes up to six bytes a character, UTF-8 "
                "two to four: send UTF-8, or split the batch."
            )
    return paths


# A model's extras as the document gives them: (name, kind, read by its features, amount)
ModelExtras = tuple[tuple[str, str, bool, bool], ...]


def with_model_extras(document: dict[str, Any], extras: ModelExtras) -> dict[str, Any]:
    """``document`` with the served model's mapped extras among ``Declaration``'s properties:
    a generated client got no name or type for them, and was not told that leaving one out
    weakens the decision (probe 35). Optional all: one not sent is scored as unknown, warned
    (``extras.missing``) when the model reads it."""
    if not extras:
        return document
    declaration = document["components"]["schemas"]["Declaration"]
    properties = declaration.setdefault("properties", {})
    for name, kind, read, amount in extras:
        typed = (
            {"type": ["number", "null"]}
            if kind == "numeric"
            else {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]}
        )
        said = {
            "numeric": "a number" + (", an amount in the declaration's currency" if amount else ""),
            "categorical": "a code (one the model never saw is read as unknown)",
            "entity": "an identifier whose history the model reads",
        }[kind]
        properties[name] = {
            **typed,
            "description": f"Mapped extra field of the model served: {said}. "
            + (
                "Optional; left out or null, it is scored as unknown and warned (`extras.missing`)."
                if read
                else "Optional; the model served does not read it."
            ),
            "x-parcelrisk-extra": {"kind": kind, "read_by_model": read},
        }
    return document


@functools.cache
def document_bytes(extras: ModelExtras = ()) -> bytes:
    """The document as served, built once per process and served model's extras (the
    settings do not change)."""
    serve = worker_settings().serve
    document = build_document(serve.max_batch, serve.max_body_bytes)
    return json.dumps(with_model_extras(document, extras), separators=(",", ":")).encode()


class OpenApiDocumentMiddleware:
    """``GET /docs.json``: this document instead of BentoML's (``serving.auth`` lets it be
    read without a key: it holds no secret, and a browser opening the docs page sends none)."""

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        extras: Callable[[], ModelExtras] | None = None,
    ) -> None:
        self.app = app
        self.extras = extras or (lambda: ())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope.get("method") == "GET"
            and scope.get("path") == DOCS_PATH
        ):
            from starlette.responses import Response

            response = Response(document_bytes(self.extras()), media_type="application/json")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
