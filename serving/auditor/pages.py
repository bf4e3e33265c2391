"""The auditor pages: Starlette routes under ``/auditor``, for the ``auditor`` role only.

A key is entered once in the sign-in form; the session then lives in a signed, expiring,
HttpOnly, SameSite=Strict cookie scoped to ``/auditor`` (``serving.auditor.session``), which
every worker process validates alike. The API-key middleware lets ``/auditor`` through
(``serving.auth``): these routes authenticate themselves, and refuse every other role.
Sign-in and sign-out are POST only and refuse a cross-site ``Origin``; the cookie is never sent
cross-site (SameSite=Strict); pages carry a CSP that allows no script at all. Signing out
records the session in the decision store, which every worker and replica asks before each
page: a copy of a signed-out cookie is refused everywhere (``_signed_in``).
Store reads, registry downloads and SHAP run in a thread, off the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from features.errors import ParcelriskError
from features.keys import key_id, load_key
from serving.audit.safe_text import scrub_uris
from serving.auditor import charts
from serving.auditor.disparity import (
    DIMENSIONS,
    MIN_RESULTS,
    TOLERANCE,
    flagged_groups,
    group_rates,
    read_lane_counts,
)
from serving.auditor.model_evidence import ModelEvidenceCache, web_link
from serving.auditor.query import (
    MAX_CHARS,
    Parser,
    QueryProblem,
    lane,
    model_version,
    parse_query,
    plain_text,
    shown,
    utc_time,
    utc_time_to,
    whole_number,
)
from serving.auditor.session import (
    COOKIE_NAME,
    Session,
    clearing_cookie_header,
    cookie_header,
    issue_token,
    session_secret,
    verify_token,
)
from serving.auditor.templates import render
from serving.auth import KeyRing, load_keyring
from serving.errors import DEFAULT_RETRY_AFTER_S
from serving.lanes import LANES
from serving.sqlite_store import DamagedRecord, StoreUnavailable

logger = logging.getLogger(__name__)

PREFIX = "/auditor"
SESSION_TTL_S = 8 * 3600  # a working day
# a sign-out is kept this long past its token's expiry before the store drops it: the worker
# that drops it may run ahead of the clock of one that still accepts the token
SIGN_OUT_CLOCK_SKEW_S = 300
PAGE_SIZE = 50
WATERFALL_TOP = 10
CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    # same-origin, not no-referrer: under no-referrer a browser sends `Origin: null` on the
    # sign-in post, which the cross-site check must refuse
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
# the decisions list's filters (the form's fields) and the page after which it starts
DECISION_FILTERS: dict[str, Parser] = {
    "from": utc_time,
    "to": utc_time_to,
    "lane": lane,
    "model_version": model_version,
    "declaration_id": plain_text,
}
DECISIONS_QUERY: dict[str, Parser] = {**DECISION_FILTERS, "after_seq": whole_number}
# MLflow's answers that mean the registry was reached and has no such name or version (an
# empty name, a version MLflow cannot read); anything else is the registry failing
_NOT_IN_REGISTRY = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


def page(html: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    """An HTML page with the security headers; a 503 also says when to try again."""
    extra = {"Retry-After": str(DEFAULT_RETRY_AFTER_S)} if status == 503 else {}
    return HTMLResponse(
        html, status_code=status, headers={**SECURITY_HEADERS, **extra, **(headers or {})}
    )


@dataclass
class Auditors:
    """The auditor keys of this configuration and the session secret derived from them."""

    keyring: KeyRing
    server_key: bytes

    @cached_property
    def keys(self) -> dict[str, bytes]:
        """key id -> auditor key."""
        return {key_id(key): key for role, key in self.keyring.entries if role == "auditor"}

    @cached_property
    def secret(self) -> bytes:
        return session_secret(self.server_key, self.keys.values())

    def session_of(self, request: Request) -> Session | None:
        if not self.keys:
            return None
        return verify_token(
            self.secret,
            request.cookies.get(COOKIE_NAME),
            int(time.time()),
            self.keys,
            SESSION_TTL_S,
        )


def _is_https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def _cross_site(request: Request) -> bool:
    """A POST sent by another site's page (its Origin is not this host)."""
    origin = request.headers.get("origin")
    if origin is None:  # not sent by every browser on a same-origin form post
        return False
    return origin == "null" or urlsplit(origin).netloc != request.headers.get("host", "")


def _downloads(service: Any, kind: str = "evidence") -> Path | None:
    """Where this worker's auditor pages download model artifacts: under the service's model
    root (removed at shutdown, so a stopped server leaves none behind); None outside one."""
    root = getattr(service, "_model_root", None)
    if root is None:
        return None
    path = Path(root) / f"auditor-{kind}"
    path.mkdir(parents=True, exist_ok=True)
    return path


class AuditorPages:
    """The routes, bound to the running service (``service()``: None while it starts)."""

    def __init__(self, service: Callable[[], Any]) -> None:
        self.service = service
        self._auditors: Auditors | None = None
        self._evidence: ModelEvidenceCache | None = None
        # the model versions decisions were made with (serving.audit.models), downloaded once
        # per worker; RecordedModels is not thread-safe, the page threads take turns
        self._recorded: Any = None
        self._recorded_lock = threading.Lock()
        self._champion: dict[tuple[str, str], Any] = {}

    # --- configuration, read on first use (the service's constructor checked the keys) ----

    @property
    def auditors(self) -> Auditors:
        if self._auditors is None:
            self._auditors = Auditors(load_keyring(), load_key("audit"))
        return self._auditors

    def evidence(self, service: Any) -> ModelEvidenceCache:
        if self._evidence is None:
            # downloads under the worker's model root, which it removes at shutdown
            self._evidence = ModelEvidenceCache(service._tracking_uri, _downloads(service))
        return self._evidence

    def routes(self) -> list[Route]:
        return [
            Route(PREFIX, self.home, methods=["GET"]),
            Route(f"{PREFIX}/", self.home, methods=["GET"]),
            Route(f"{PREFIX}/login", self.login_form, methods=["GET"]),
            Route(f"{PREFIX}/login", self.login, methods=["POST"]),
            Route(f"{PREFIX}/logout", self.logout, methods=["POST"]),
            Route(f"{PREFIX}/decisions", self.decisions, methods=["GET"]),
            Route(f"{PREFIX}/decisions/{{decision_id}}", self.decision, methods=["GET"]),
            Route(f"{PREFIX}/models/{{name}}/{{version}}", self.model, methods=["GET"]),
        ]

    # --- signing in and out -------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        # the query goes along: the list applies its filters or refuses them, never drops them
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"{PREFIX}/decisions{query}", status_code=303)

    async def login_form(self, request: Request) -> Response:
        return page(render("login", message=None, hours=SESSION_TTL_S // 3600))

    async def login(self, request: Request) -> Response:
        if _cross_site(request):
            return self._refused(request, 403, "sign-in from another site refused")
        form = await request.form()
        key = str(form.get("key") or "").strip()
        role = self.auditors.keyring.role_of(key) if key else None
        if role != "auditor":
            # the same answer for a wrong key and another role's key: no oracle for keys
            logger.info("auditor sign-in refused (role %s)", role or "none")
            # (the status too: 403 for another role's key told a valid key from a wrong one)
            return self._refused(request, 401, "refused: that is not an auditor key")
        token = issue_token(
            self.auditors.secret, key_id(key.encode()), int(time.time()), SESSION_TTL_S
        )
        response = RedirectResponse(f"{PREFIX}/decisions", status_code=303)
        response.headers.update(SECURITY_HEADERS)
        response.headers["set-cookie"] = cookie_header(
            token, max_age_s=SESSION_TTL_S, secure=_is_https(request)
        )
        logger.info("auditor signed in (key id %s)", key_id(key.encode()))
        return response

    async def logout(self, request: Request) -> Response:
        if _cross_site(request):
            return self._refused(request, 403, "sign-out from another site refused")
        session = self.auditors.session_of(request)
        if session is not None and not await self._revoke(session):
            return self._not_signed_out()
        # an invalid or expired cookie has no session left to end: cleared all the same
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.headers["set-cookie"] = clearing_cookie_header(secure=_is_https(request))
        return response

    async def _revoke(self, session: Session) -> bool:
        """Record the sign-out in the store; False when it could not be."""
        service = self.service()
        if service is None:  # starting: no store open yet
            logger.warning("auditor sign-out not recorded (key id %s): starting", session.key_id)
            return False
        try:
            await run_in_threadpool(
                service.store.revoke_session,
                session.session_id,
                session.expires_at + SIGN_OUT_CLOCK_SKEW_S,
            )
        except StoreUnavailable as exc:
            logger.warning("auditor sign-out not recorded (key id %s): %s", session.key_id, exc)
            return False
        logger.info("auditor signed out (key id %s)", session.key_id)
        return True

    @staticmethod
    def _not_signed_out() -> Response:
        """503: nothing recorded. The cookie is kept: the session still works (here and in
        any copy), and its holder must be able to sign it out once the store takes writes."""
        message = (
            "sign-out could not be recorded: the decision store cannot take it now, so this "
            "session is still valid (here and in any copy of its cookie). Sign out again in a "
            "moment."
        )
        html = render(
            "message", signed_in=True, champion=None, heading="Not signed out", message=message
        )
        return page(html, 503)

    def _refused(self, request: Request, status: int, message: str) -> Response:
        """The sign-in form with ``message``, and any session cookie cleared."""
        return page(
            render("login", message=message, hours=SESSION_TTL_S // 3600),
            status,
            {"set-cookie": clearing_cookie_header(secure=_is_https(request))}
            if request.cookies.get(COOKIE_NAME)
            else None,
        )

    async def _signed_in(self, request: Request) -> tuple[Any, Response | None]:
        """(the service, None) for a valid session not signed out; else (None, the refusal)."""
        session = self.auditors.session_of(request)
        if session is None:
            had = request.cookies.get(COOKIE_NAME) is not None
            message = "session expired or invalid: sign in again" if had else "sign in first"
            return None, self._refused(request, 401, message)
        service = self.service()
        if service is None:
            return None, page(
                render("message", heading="Starting", message="the service is starting"), 503
            )
        # Asked of the store on every page, with no cache in the worker: the primary-key lookup
        # took 4 us on SQLite and 0.7 ms on PostgreSQL over loopback (the pool's ping and the
        # query), little beside what any page reads; without a cache a sign-out holds on every
        # worker and replica from its commit on, with no window to state or to exploit. In a
        # thread: the SQLite review handle may be busy with another page's long read.
        try:
            revoked = await run_in_threadpool(
                service.review_store.session_revoked, session.session_id
            )
        except StoreUnavailable as exc:  # it cannot tell: fail closed, say why, not a 500
            logger.warning("auditor session not checked (key id %s): %s", session.key_id, exc)
            message = (
                "the decision store cannot be read now, so this session cannot be checked "
                "against sign-outs: try again in a moment"
            )
            return None, page(render("message", heading="Store unavailable", message=message), 503)
        if revoked:
            return None, self._refused(request, 401, "this session was signed out: sign in again")
        return service, None

    def _context(self, service: Any, **values: Any) -> dict[str, Any]:
        runtime = service.runtime
        champion = (
            {"name": runtime.model_name, "version": runtime.model_version} if runtime else None
        )
        return {"signed_in": True, "champion": champion, **values}

    def _message(self, service: Any, status: int, heading: str, message: str) -> Response:
        return page(
            render("message", **self._context(service, heading=heading, message=message)),
            status,
        )

    def _query_problem(self, service: Any, request: Request) -> Response | None:
        """The refusal of a query on a page that reads none (a filter there would be ignored)."""
        try:
            parse_query(request.query_params.multi_items(), {})
        except QueryProblem as exc:
            return self._message(service, 400, "Bad request", str(exc))
        return None

    @staticmethod
    async def _page_of_decisions(service: Any, query: dict[str, Any]) -> list[Any]:
        """The decisions of a page, the archived days included (``find_with_archive``), read
        off the event loop."""
        from serving.audit.archived import find_with_archive

        return await run_in_threadpool(
            find_with_archive,
            service.review_store,  # never the scoring path's reader (``ParcelRiskService``)
            answered_from=query.get("from"),
            answered_to=query.get("to"),
            lane=query.get("lane"),
            model_version=query.get("model_version"),
            declaration_id=query.get("declaration_id"),
            after_seq=query.get("after_seq", 0),
            limit=PAGE_SIZE,
        )

    # --- pages --------------------------------------------------------------------------

    async def decisions(self, request: Request) -> Response:
        service, refusal = await self._signed_in(request)
        if refusal is not None:
            return refusal
        params = request.query_params
        # the form shows the filters as typed; the store gets them parsed
        filters = {k: params.get(k, "").strip()[:MAX_CHARS] for k in DECISION_FILTERS}
        problem, records = None, []
        try:
            query = parse_query(params.multi_items(), DECISIONS_QUERY)
        except QueryProblem as exc:
            problem = str(exc)
        else:
            try:
                records = await self._page_of_decisions(service, query)
            except ParcelriskError as exc:  # an archived day gone or unreadable: said
                problem = str(exc)
        next_query = None
        if len(records) == PAGE_SIZE:
            kept = {k: v for k, v in filters.items() if v}
            next_query = urlencode({**kept, "after_seq": records[-1].seq})
        html = render(
            "decisions",
            **self._context(
                service,
                filters=filters,
                lanes=LANES,
                records=records,
                message=problem,
                next_query=next_query,
                page_size=PAGE_SIZE,
            ),
        )
        return page(html, 400 if problem else 200)

    async def decision(self, request: Request) -> Response:
        service, refusal = await self._signed_in(request)
        if refusal is not None:
            return refusal
        if (refusal := self._query_problem(service, request)) is not None:
            return refusal
        decision_id = request.path_params["decision_id"][:MAX_CHARS]
        try:
            found = await run_in_threadpool(service.review_store.get, decision_id)
        except DamagedRecord as exc:  # edited outside the service into something unreadable
            return self._message(service, 409, "Not intact", str(exc))
        if found is None:
            return self._message(service, 404, "Not found", "no such decision")
        record, intact = found
        view = await run_in_threadpool(self._decision_view, service, record)
        html = render(
            "decision",
            **self._context(
                service,
                r=record,
                intact=intact,
                declaration=record.declaration,
                tracking_uri=_tracking_shown(service),
                **view,
            ),
        )
        return page(html)

    def _decision_view(self, service: Any, record: Any) -> dict[str, Any]:
        """The explanation, its chart, the feature table and the run (blocking: a thread)."""
        from serving.audit.models import explain_record

        explanation, problem, run_id, run_link = None, "", None, None
        try:
            loaded = self._model_of(service, record)
            run_id, run_link = loaded.run_id, web_link(loaded.run_url)
            explanation = explain_record(record, loaded)
        except ParcelriskError as exc:  # a loading error may quote the registry's URI
            problem = (
                f"not explained with {record.model_name} v{record.model_version}: "
                + scrub_uris(str(exc))
            )
        except Exception as exc:  # the registry is unreachable: say so, show the rest
            logger.warning(
                "model %s v%s: %s", record.model_name, record.model_version, scrub_uris(str(exc))
            )
            problem = (
                f"the model registry did not answer for {record.model_name} "
                f"v{record.model_version}: {type(exc).__name__}"
            )
        if record.model_run_id:  # the run that decided, under the decision's MAC (probe 12)
            if run_id != record.model_run_id:  # the registry names another: no link to it
                run_link = None
            run_id = record.model_run_id
        if explanation is not None:
            steps = charts.waterfall_steps(explanation, top=WATERFALL_TOP)
            waterfall = Markup(charts.waterfall_svg(steps, risk=explanation["risk"]))
            features = sorted(
                explanation["contributions"], key=lambda c: abs(c["contribution"]), reverse=True
            )
        else:
            waterfall = None
            features = [
                {"feature": f"f{i}", "value": v, "contribution": None}
                for i, v in enumerate(record.feature_vector.tolist())
            ]
        return {
            "explanation": explanation,
            "explanation_problem": problem,
            "waterfall": waterfall,
            "features": features,
            "run_id": run_id,
            "run_link": run_link,
            # every result stored for the declaration, first to current, each with whether
            # its MAC still matches what it says
            "results": _checked_results(service, record.declaration_id),
        }

    def _model_of(self, service: Any, record: Any) -> Any:
        """The ``serving.audit.models.LoadedModel`` a decision was made with: the running
        champion when it is that version (no download), else that version from the registry."""
        from serving.audit.models import LoadedModel, RecordedModels, run_url

        key = (record.model_name, record.model_version)
        runtime = service.runtime
        if runtime is not None and (runtime.model_name, runtime.model_version) == key:
            found = self._champion.get(key)
            if found is None or found.model is not runtime.model:
                run_id = runtime.run_id or ""
                uri = _tracking_shown(service)
                experiment = (
                    self.evidence(service).client().get_run(run_id).info.experiment_id
                    if run_id and web_link(uri)
                    else None
                )
                found = LoadedModel(
                    name=runtime.model_name,
                    version=runtime.model_version,
                    run_id=run_id,
                    model=runtime.model,
                    state_dir=Path(runtime.model_dir or "."),
                    run_url=run_url(uri, experiment, run_id) if run_id else None,
                    bundle_sha256=runtime.bundle_sha256,
                )
                self._champion = {key: found}
            return found
        with self._recorded_lock:
            if self._recorded is None:
                self._recorded = RecordedModels(
                    service._tracking_uri, _downloads(service, "recorded")
                )
            return self._recorded.get(*key)

    async def model(self, request: Request) -> Response:
        service, refusal = await self._signed_in(request)
        if refusal is not None:
            return refusal
        if (refusal := self._query_problem(service, request)) is not None:
            return refusal
        name = request.path_params["name"][:MAX_CHARS]
        asked = request.path_params["version"][:MAX_CHARS]
        try:
            version = model_version(asked)
        except ValueError as exc:  # no registry holds it: not worth asking one
            message = f"no version {shown(asked)} of model {name}: a version is {exc}"
            return self._message(service, 404, "Not found", message)
        try:
            view = await run_in_threadpool(self._model_view, service, name, version)
        except Exception as exc:
            from mlflow.exceptions import MlflowException

            if not isinstance(exc, MlflowException):
                raise
            if exc.error_code in _NOT_IN_REGISTRY:
                message = f"model {name} version {version} is not in the registry"
                return self._message(service, 404, "Not found", message)
            logger.warning("registry, model %s v%s: %s", name, version, scrub_uris(str(exc)))
            message = f"the model registry did not answer for {name} v{version}: {exc.error_code}"
            return self._message(service, 503, "Registry unavailable", message)
        runtime = service.runtime
        is_champion = runtime is not None and (runtime.model_name, runtime.model_version) == (
            name,
            version,
        )
        html = render(
            "model",
            **self._context(
                service,
                is_champion=is_champion,
                tracking_uri=_tracking_shown(service),
                tolerance=TOLERANCE,
                min_results=MIN_RESULTS,
                **view,
            ),
        )
        return page(html)

    def _model_view(self, service: Any, name: str, version: str) -> dict[str, Any]:
        evidence = self.evidence(service).get(name, version)
        counts = read_lane_counts(service.config.audit_db, name, version)
        disparity = []
        for dimension, title in zip(
            DIMENSIONS, ("By origin country", "By channel", "By platform"), strict=True
        ):
            rates = group_rates(counts, dimension)[:30]
            chart = charts.grouped_bars_svg(
                [r.group for r in rates],
                {"red rate": [r.red_rate for r in rates], "hit rate": [r.hit_rate for r in rates]},
                title=f"{title}: red rate and hit rate",
                flagged=flagged_groups(rates),
            )
            disparity.append(
                {"dimension": dimension, "title": title, "rates": rates, "chart": Markup(chart)}
            )
        shap_bars = (
            Markup(charts.hbar_svg(evidence.shap_mean_abs[:20], "mean |SHAP| (log-odds)"))
            if evidence.shap_mean_abs
            else None
        )
        calibration = (
            Markup(charts.calibration_svg(evidence.calibration)) if evidence.calibration else None
        )
        return {
            "m": evidence,
            "shap_bars": shap_bars,
            "calibration": calibration,
            "disparity": disparity,
        }


def auditor_routes(service: Callable[[], Any]) -> list[Route]:
    """The auditor pages' routes, for the service's Starlette app."""
    return AuditorPages(service).routes()


def _checked_results(service: Any, declaration_id: str) -> list[dict[str, Any]]:
    """``result_history`` with ``intact`` on each result: its MAC checked against its content
    and link, as `audit verify` walks it (None: stored before results were chained). A result
    edited in the store (illicit made clean) was shown as genuine beside "integrity: intact",
    the decision's own (probe, 2026-12)."""
    store = service.outcome_store
    checked = []
    for result in store.result_history(declaration_id):
        link = next(iter(store.chain_rows(after_seq=result["seq"] - 1, page=1)), None)
        if link is None or link.seq != result["seq"] or not link.mac:
            intact = None
        else:
            intact = link.valid(service.store.key)
        checked.append({**result, "intact": intact})
    return checked


def _tracking_shown(service: Any) -> str:
    """The tracking store the service loads its models from, as the pages name it: the one
    given to `serve`, else MLflow's own setting or the default (probe 12: the pages told the
    auditor to open "mlflow ui --backend-store-uri " with nothing after it)."""
    from models.registry import resolve_tracking_uri

    return resolve_tracking_uri(service._tracking_uri)
