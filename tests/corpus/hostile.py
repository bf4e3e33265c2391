"""Hostile and malformed HTTP requests, each with the answers it may get and a marker for the logs.

Every case names its request (method, path, role whose key it carries, headers, body) and the
statuses a correct service may answer: a clear 4xx, or 200 where the input is legitimate. None
allows a 5xx. Each body carries the case's ``marker`` where a value goes (a description, an id,
the innermost element of a nested document): a log line that quotes the request would quote the
marker, and the runners look for it (the logs may carry the request id, status, field name and
error kind, never values).

One corpus, two runners: ``tests/test_serving/test_hostile_corpus.py`` sends every case to the
in-process service; ``scripts/reliability/hostile.py`` to the real ``parcelrisk serve``.
Legitimate declarations come from the runner (``Setting.declarations``): the serving tests'
``make_declarations`` in process, the champion's history (``fresh_payloads``) for the real server.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

JSON = "application/json"
ANY_4XX_OR_OK = frozenset({200, *range(400, 432)})


@dataclass(frozen=True)
class Setting:
    """What the cases need from the service they run against."""

    declarations: Callable[[int, str], list[dict[str, Any]]]  # n legitimate, ids f"{prefix}-{i}"
    keys: Mapping[str, str]  # role -> API key
    max_body_bytes: int
    max_batch: int = 1000


@dataclass(frozen=True)
class Request:
    """One request as sent; ``declared_length`` > len(body): the body is cut short (slow)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None
    declared_length: int | None = None


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


Builder = Callable[[Setting, str], bytes]  # (setting, marker) -> body
Check = Callable[[list[Answer]], str | None]  # the answers -> what is wrong, or None


@dataclass(frozen=True)
class HostileCase:
    """One hostile request; ``sends`` > 1 sends it again unchanged (a retry)."""

    name: str
    doc: str
    method: str
    path: str | Callable[[Setting], str]
    role: str | None
    allowed: frozenset[int]
    body: bytes | Builder | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = JSON
    sends: int = 1
    check: Check | None = None
    slow: bool = False  # send part of the body, then wait: the request timeout must answer

    @property
    def marker(self) -> str:
        """The value that must never appear in a log line."""
        return f"mark-{self.name}"

    def request(self, setting: Setting) -> Request:
        body = self.body(setting, self.marker) if callable(self.body) else self.body
        headers = {k: v.replace("{marker}", self.marker) for k, v in self.headers.items()}
        if self.role is not None:
            headers["X-API-Key"] = setting.keys[self.role]
        if self.content_type is not None and body is not None:
            headers["Content-Type"] = self.content_type
        path = self.path(setting) if callable(self.path) else self.path
        if self.slow and body is not None:
            # declare twice what is sent: the server waits for the rest
            return Request(self.method, path, headers, body[: len(body) // 2], len(body))
        return Request(self.method, path, headers, body)


# --- bodies ----------------------------------------------------------------------------------


def _declarations(setting: Setting, marker: str, n: int = 1) -> list[dict[str, Any]]:
    """``n`` legitimate declarations with the marker in their description (ids carry it too)."""
    out = setting.declarations(n, marker)
    for d in out:
        d["description"] = f"{(d.get('description') or 'goods')[:900]} {marker}"
    return out


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, allow_nan=True).encode()


def score(n: int = 1, **changes: Any) -> Builder:
    """``{"declarations": [...]}`` of ``n`` legitimate declarations, ``changes`` set on each;
    a change may be a function of the marker."""

    def build(setting: Setting, marker: str) -> bytes:
        declarations = _declarations(setting, marker, n)
        for d in declarations:
            for key, value in changes.items():
                d[key] = value(marker) if callable(value) else value
        return _dumps({"declarations": declarations})

    return build


def score_raw(value: str) -> Builder:
    """A legitimate declaration whose ``declared_value`` is the JSON text ``value`` (NaN...)."""

    def build(setting: Setting, marker: str) -> bytes:
        d = _declarations(setting, marker)[0]
        d["declared_value"] = "__VALUE__"
        return _dumps({"declarations": [d]}).replace(b'"__VALUE__"', value.encode())

    return build


def score_bytes(raw: bytes) -> Builder:
    """A legitimate declaration whose description holds ``raw`` (bytes, not text) + marker."""

    def build(setting: Setting, marker: str) -> bytes:
        d = _declarations(setting, marker)[0]
        d["description"] = "__TEXT__"
        return _dumps({"declarations": [d]}).replace(b"__TEXT__", raw + marker.encode())

    return build


def padded_to(extra: int) -> Builder:
    """One legitimate declaration, padded with whitespace to ``max_body_bytes + extra``."""

    def build(setting: Setting, marker: str) -> bytes:
        body = score()(setting, marker)
        return body + b" " * (setting.max_body_bytes + extra - len(body))

    return build


def nested(depth: int, *, in_field: bool = False) -> Builder:
    """JSON ``depth`` levels deep (lists as the declarations, or objects as a description)."""

    def build(setting: Setting, marker: str) -> bytes:
        if not in_field:
            inner = b"[" * depth + json.dumps(marker).encode() + b"]" * depth
            return b'{"declarations": ' + inner + b"}"
        d = _declarations(setting, marker)[0]
        d["description"] = "__NESTED__"
        inner = b'{"a": ' * depth + json.dumps(marker).encode() + b"}" * depth
        return _dumps({"declarations": [d]}).replace(b'"__NESTED__"', inner)

    return build


def duplicate_json_keys(setting: Setting, marker: str) -> bytes:
    a, b = _declarations(setting, marker, 2)
    return b'{"declarations": ' + _dumps([a]) + b', "declarations": ' + _dumps([b]) + b"}"


def duplicate_field(spelled: str) -> Builder:
    """One declaration giving ``declared_value`` twice, the second key spelled ``spelled``
    (JSON escapes in a key decode to the same key)."""

    def build(setting: Setting, marker: str) -> bytes:
        d = _declarations(setting, marker)[0]
        d["declared_value"] = 9.5
        body = _dumps({"declarations": [d]})
        return body.replace(
            b'"declared_value": 9.5', b'"declared_value": 9.5, "' + spelled.encode() + b'": 99999'
        )

    return build


def twice_in_one_request(*, same: bool) -> Builder:
    """One declaration twice; ``same=False``: the second copy declares another value."""

    def build(setting: Setting, marker: str) -> bytes:
        d = _declarations(setting, marker)[0]
        other = dict(d) if same else {**d, "declared_value": float(d["declared_value"]) + 1}
        return _dumps({"declarations": [d, other]})

    return build


def explain_both(setting: Setting, marker: str) -> bytes:
    return _dumps({"decision_id": marker, "declaration": _declarations(setting, marker)[0]})


def outcomes(**changes: Any) -> Builder:
    def build(setting: Setting, marker: str) -> bytes:
        result = {
            "declaration_id": f"{marker}-never-scored",
            "inspected_at": "2026-05-03T09:00:00Z",
            "illicit": True,
            "offence_type": "undervaluation",
            "revenue_recovered": 12.5,
            **changes,
        }
        return _dumps({"outcomes": [result]})

    return build


def text(template: str) -> Builder:
    return lambda setting, marker: template.replace("{marker}", marker).encode()


# --- checks of the answers ---------------------------------------------------------------------


def _decisions(answer: Answer) -> list[dict[str, Any]]:
    return answer.json()["decisions"] if answer.status == 200 else []


def same_decision_twice(answers: list[Answer]) -> str | None:
    """A declaration sent twice unchanged gets one decision back (idempotency)."""
    ids = [d["decision_id"] for a in answers for d in _decisions(a)]
    if len(ids) != 2:
        return f"expected 2 decisions back, got {len(ids)}"
    return None if ids[0] == ids[1] else f"two decisions for one declaration: {ids}"


def one_decision_each(answers: list[Answer]) -> str | None:
    """Every 200 carries exactly one decision per declaration sent is checked by the runner;
    here: the decisions are distinct when the declarations differ."""
    ids = [d["decision_id"] for a in answers for d in _decisions(a)]
    return None if len(set(ids)) == len(ids) else f"one decision for different content: {ids}"


def warns(words: str) -> Check:
    """A 200 must carry a warning containing ``words`` (kept, but said)."""

    def check(answers: list[Answer]) -> str | None:
        warnings = [w for a in answers for d in _decisions(a) for w in d["warnings"]]
        if answers[0].status == 200 and not any(words in w for w in warnings):
            return f"accepted without a warning about {words!r}: {warnings}"
        return None

    return check


# --- the corpus ------------------------------------------------------------------------------

OK = frozenset({200})
BAD = frozenset({400})
BAD_OR_UNPROCESSABLE = frozenset({400, 422})
NO_ROUTE = frozenset({404, 405})
DECISION_BAD_ID = frozenset({404, 422})


def _case(
    name: str,
    doc: str,
    method: str,
    path: str | Callable[[Setting], str],
    role: str | None,
    allowed: frozenset[int] | set[int],
    body: bytes | Builder | None = None,
    **options: Any,
) -> HostileCase:
    return HostileCase(name, doc, method, path, role, frozenset(allowed), body, **options)


# One case a line: the table reads as a table.
# fmt: off
CASES: tuple[HostileCase, ...] = (
    # --- size and count
    _case("one_legit", "one legitimate declaration", "POST", "/score", "scorer", OK, score()),
    _case("max_batch", "serve.max_batch declarations in one request (1,000)", "POST", "/score", "scorer", OK, lambda s, m: score(s.max_batch)(s, m)),
    _case("over_max_batch", "one declaration more than serve.max_batch (1,001)", "POST", "/score", "scorer", {413, 422}, lambda s, m: score(s.max_batch + 1)(s, m)),
    _case("no_declarations", "an empty list", "POST", "/score", "scorer", {422}, text('{"declarations": []}')),
    _case("body_at_limit", "exactly serve.max_body_bytes (whitespace-padded, legitimate)", "POST", "/score", "scorer", OK, padded_to(0)),
    _case("body_over_limit", "one byte over serve.max_body_bytes", "POST", "/score", "scorer", {413}, padded_to(1)),
    _case("nested_10000", "the declarations as lists nested 10,000 deep", "POST", "/score", "scorer", BAD, nested(10_000)),
    _case("nested_in_field", "a description of objects nested 10,000 deep", "POST", "/score", "scorer", BAD, nested(10_000, in_field=True)),
    # --- encoding and syntax
    _case("not_utf8", "latin-1 bytes in a description", "POST", "/score", "scorer", BAD, score_bytes(b"caf\xe9 cr\xe8me ")),
    _case("overlong_utf8", "an overlong UTF-8 encoding of '/' (C0 AF)", "POST", "/score", "scorer", BAD, score_bytes(b"..\xc0\xaf..\xc0\xaf")),
    _case("lone_surrogate", "an unpaired UTF-16 surrogate escape (\\ud800) in a description", "POST", "/score", "scorer", ANY_4XX_OR_OK, score_bytes(b"\\ud800 ")),
    _case("nul_bytes", "NUL characters in a description and an id", "POST", "/score", "scorer", ANY_4XX_OR_OK, score(description=lambda m: f"a\u0000b {m}", seller_id="S\u00001")),
    _case("bidi_override", "right-to-left override and isolates in text fields", "POST", "/score", "scorer", ANY_4XX_OR_OK, score(description=lambda m: f"\u202e{m}\u2066x\u2069", seller_id="S\u202e1")),
    # read as its ASCII digits, as a mapped file's code is (probe 40): scored, not refused
    _case("fullwidth_digits", "an HS code in full-width digits", "POST", "/score", "scorer", OK, score(hs_code="\uff16\uff11\uff10\uff19\uff11\uff10")),
    _case("arabic_indic_digits", "an HS code in Arabic-Indic digits", "POST", "/score", "scorer", OK, score(hs_code="\u0666\u0661\u0660\u0669\u0661\u0660")),
    _case("arabic_indic_short_code", "an HS code of 5 Arabic-Indic digits", "POST", "/score", "scorer", BAD, score(hs_code="\u0666\u0661\u0660\u0669\u0661")),
    _case("invalid_json", "a body cut off mid-document", "POST", "/score", "scorer", BAD, lambda s, m: score()(s, m)[:-7]),
    _case("empty_body", "no body at all", "POST", "/score", "scorer", BAD, b""),
    _case("top_level_list", "the declarations without their envelope", "POST", "/score", "scorer", BAD, lambda s, m: _dumps(_declarations(s, m))),
    _case("declarations_not_list", "a string where the list goes", "POST", "/score", "scorer", BAD, text('{"declarations": "{marker}"}')),
    _case("duplicate_json_keys", "the envelope key twice", "POST", "/score", "scorer", BAD, duplicate_json_keys),
    _case("duplicate_field", "a declared value given twice in one declaration", "POST", "/score", "scorer", BAD, duplicate_field("declared_value")),
    _case("duplicate_field_escaped", "the second declared value's key written with a \\u escape", "POST", "/score", "scorer", BAD, duplicate_field("declared\\u005fvalue")),
    # --- numbers
    _case("nan_literal", "NaN as a declared value", "POST", "/score", "scorer", BAD, score_raw("NaN")),
    _case("infinity_literal", "Infinity as a declared value", "POST", "/score", "scorer", BAD, score_raw("Infinity")),
    _case("minus_infinity", "-Infinity as a declared value", "POST", "/score", "scorer", BAD, score_raw("-Infinity")),
    _case("overflow_1e309", "1e309 (infinite as a double)", "POST", "/score", "scorer", BAD, score_raw("1e309")),
    _case("negative_value", "a negative declared value", "POST", "/score", "scorer", BAD, score(declared_value=-5.0)),
    _case("zero_quantity", "zero items", "POST", "/score", "scorer", BAD, score(quantity=0)),
    _case("absurd_value", "a declared value of 1e300 EUR", "POST", "/score", "scorer", BAD | OK, score(declared_value=1e300), check=warns("declared_value")),
    _case("huge_int", "a quantity of 10^30 items (beyond int64)", "POST", "/score", "scorer", BAD_OR_UNPROCESSABLE, score(quantity=10**30)),
    _case("negative_weight", "a negative gross weight", "POST", "/score", "scorer", BAD, score(gross_weight_kg=-1.0)),
    # --- text and dates
    _case("description_10000", "a 10,000-character description", "POST", "/score", "scorer", BAD, score(description=lambda m: (m + " ") * (10_000 // (len(m) + 1)))),
    _case("id_10000", "a 10,000-character declaration id", "POST", "/score", "scorer", BAD, score(declaration_id=lambda m: m * (10_000 // len(m)))),
    _case("date_without_zone", "declared_at in local time, no zone", "POST", "/score", "scorer", BAD, score(declared_at="2026-05-01T10:00:00")),
    _case("date_year_9999", "declared_at far in the future", "POST", "/score", "scorer", BAD, score(declared_at="9999-12-31T23:59:59Z")),
    _case("date_words", "declared_at that is no date", "POST", "/score", "scorer", BAD, score(declared_at=lambda m: m)),
    _case("unknown_field", "a field the contract does not know", "POST", "/score", "scorer", OK, score(x_internal_note=lambda m: m), check=warns("not in the contract")),
    _case("unknown_top_level_key", "a key beside the declarations (a guessed dry_run): refused, not scored", "POST", "/score", "scorer", BAD, lambda s, m: _dumps({"declarations": _declarations(s, m), "dry_run": True, "note": m})),
    _case("outcome_on_score", "an inspection result sent for scoring", "POST", "/score", "scorer", {422}, score(illicit=True)),
    # --- idempotency
    _case("same_twice_in_request", "one declaration twice in one request: one decision", "POST", "/score", "scorer", OK, twice_in_one_request(same=True), check=same_decision_twice),
    _case("id_twice_other_content", "one id twice with different values in one request", "POST", "/score", "scorer", ANY_4XX_OR_OK, twice_in_one_request(same=False), check=one_decision_each),
    _case("same_across_requests", "one declaration sent again (a retry): the same decision", "POST", "/score", "scorer", OK, score(), sends=2, check=same_decision_twice),
    # --- content types
    _case("no_content_type", "legitimate JSON without a Content-Type", "POST", "/score", "scorer", OK, score(), content_type=None),
    _case("text_plain", "JSON declared as text/plain", "POST", "/score", "scorer", {415}, score(), content_type="text/plain"),
    _case("form_urlencoded", "a form", "POST", "/score", "scorer", {415}, text("declarations={marker}"), content_type="application/x-www-form-urlencoded"),
    _case("multipart", "multipart with a boundary", "POST", "/score", "scorer", {415}, text('--b\r\nContent-Disposition: form-data; name="declarations"\r\n\r\n{marker}\r\n--b--\r\n'), content_type="multipart/form-data; boundary=b"),
    _case("bentoml_pickle", "BentoML's pickle media type (code execution if unpickled)", "POST", "/score", "scorer", {415}, text("\x80\x04{marker}."), content_type="application/vnd.bentoml+pickle"),
    _case("vendor_json", "a +json media type", "POST", "/score", "scorer", OK | {415}, score(), content_type="application/vnd.parcelrisk+json"),
    # --- keys and roles
    _case("no_key", "no API key", "POST", "/score", None, {401}, score()),
    _case("empty_key", "an empty X-API-Key", "POST", "/score", None, {401}, score(), headers={"X-API-Key": ""}),
    _case("empty_bearer", "'Authorization: Bearer' with no token", "POST", "/score", None, {401}, score(), headers={"Authorization": "Bearer"}),
    _case("invalid_key", "a key nobody was given", "POST", "/score", None, {401}, score(), headers={"X-API-Key": "{marker}-0123456789abcdef"}),
    _case("key_in_query", "a valid key in the query string, not a header", "POST", lambda s: f"/score?api_key={s.keys['scorer']}&x-api-key={s.keys['scorer']}", None, {401}, score()),
    _case("auditor_scores", "the auditor's key on /score", "POST", "/score", "auditor", {403}, score()),
    _case("scorer_reads_decision", "the scorer's key on GET /decision", "GET", "/decision?decision_id=mark-scorer_reads_decision", "scorer", {403}),
    _case("scorer_posts_outcomes", "the scorer's key on /outcomes", "POST", "/outcomes", "scorer", {403}, outcomes()),
    # the docs page, its files and its document open in a browser, which sends no key; nothing else does
    _case("docs_page_no_key", "the docs page without a key", "GET", "/", None, OK),
    _case("docs_json_no_key", "the OpenAPI document without a key", "GET", "/docs.json", None, OK),
    _case("docs_json_post_no_key", "a POST to the document without a key", "POST", "/docs.json", None, {401}, text('{"x": "{marker}"}')),
    _case("docs_asset_traversal", "a dot-dot path out of the docs page's files, no key", "GET", "/static_content/%2e%2e/decision?decision_id=mark-docs_asset_traversal", None, {401, 404}),
    _case("docs_prefix_lookalike", "a path that only starts like the docs page's files, no key", "GET", "/static_contentx/../metrics", None, {401, 404}),
    _case("huge_header", "a 64 KB header beside a legitimate request", "POST", "/score", "scorer", {200, 400, 413, 431}, score(), headers={"X-Padding": "p" * 65_536 + "{marker}"}),
    # --- routes and ids
    _case("get_score", "GET on POST /score", "GET", "/score", "scorer", NO_ROUTE),
    _case("get_outcomes", "GET on POST /outcomes", "GET", "/outcomes", "inspector", NO_ROUTE),
    _case("get_explain", "GET on POST /explain", "GET", "/explain", "scorer", NO_ROUTE),
    _case("put_score", "PUT on POST /score", "PUT", "/score", "scorer", NO_ROUTE, score()),
    _case("traversal_get", "path traversal as a decision_id", "GET", "/decision?decision_id=..%2F..%2F..%2Fetc%2Fpasswd", "auditor", DECISION_BAD_ID),
    _case("traversal_post", "path traversal as a decision_id (POST)", "POST", "/decision", "auditor", DECISION_BAD_ID, text('{"decision_id": "../../../../etc/passwd{marker}"}')),
    _case("sql_get", "SQL in a decision_id", "GET", "/decision?decision_id=%27%20OR%20%271%27%3D%271", "auditor", DECISION_BAD_ID),
    _case("sql_post", "SQL that drops the table, as a decision_id", "POST", "/decision", "auditor", DECISION_BAD_ID, text("{\"decision_id\": \"x'; DROP TABLE decisions;-- {marker}\"}")),
    _case("decision_without_id", "GET /decision without its id", "GET", "/decision", "auditor", {400, 422}),
    _case("explain_both", "a decision_id and a declaration", "POST", "/explain", "scorer", {422}, explain_both),
    _case("explain_neither", "an empty explain request", "POST", "/explain", "scorer", {400, 422}, b"{}"),
    _case("outcome_unknown_id", "a result for a declaration never scored", "POST", "/outcomes", "inspector", BAD, outcomes()),
    _case("outcome_nan_revenue", "NaN revenue in a result", "POST", "/outcomes", "inspector", BAD, lambda s, m: outcomes()(s, m).replace(b"12.5", b"NaN")),
    # --- slow clients
    _case("slow_partial_body", "half the declared body, then silence", "POST", "/score", "scorer", {400, 408}, score(), slow=True),
)

# fmt: on

CASES_BY_NAME = {case.name: case for case in CASES}
assert len(CASES_BY_NAME) == len(CASES), "case names must be unique"


def judge(case: HostileCase, setting: Setting, answers: list[Answer]) -> list[str]:
    """What is wrong with the answers to ``case`` (empty: all is well)."""
    problems = []
    for answer in answers:
        if answer.status not in case.allowed:
            detail = answer.body[:160].decode("utf-8", "replace").replace("\n", " ")
            problems.append(
                f"{case.name}: {answer.status} not in {sorted(case.allowed)} ({detail})"
            )
        elif (
            answer.status >= 400
            and answer.status not in NO_ROUTE
            and not _is_error_body(answer.body)
        ):
            problems.append(f"{case.name}: {answer.status} without a JSON error message")
        elif answer.status == 200 and case.path == "/score":
            sent = _sent_declarations(case, setting)
            got = len(_decisions(answer))
            if sent is not None and got != sent:
                problems.append(f"{case.name}: {sent} declarations sent, {got} decisions back")
    if case.check is not None and not problems and (found := case.check(answers)):
        problems.append(f"{case.name}: {found}")
    return problems


def _is_error_body(body: bytes) -> bool:
    try:
        payload = json.loads(body)
    except ValueError:
        return False
    # one line for people and a stable code to branch on (probe 14 F-06)
    return isinstance(payload, dict) and bool(payload.get("error")) and bool(payload.get("code"))


def _sent_declarations(case: HostileCase, setting: Setting) -> int | None:
    request = case.request(setting)
    try:
        payload = json.loads(request.body or b"")
    except ValueError:
        return None
    found = payload.get("declarations") if isinstance(payload, dict) else None
    return len(found) if isinstance(found, list) else None
