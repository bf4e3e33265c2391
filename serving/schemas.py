"""Request and response types of the HTTP API (the request side reuses the contract's model)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from features.intake.contract import (
    FIELDS_BY_NAME,
    Declaration,
    parse_bool_value,
    read_ascii_digits,
    require_utc_time,
)
from features.notes import CODES
from serving.outcomes import (
    DATE_ONLY,
    MAX_CORRECTION_CHARS,
    REQUIRED_FIELDS,
    RESULT_FIELDS,
    end_of_day,
)

__all__ = [
    "Contribution",
    "Decision",
    "Declaration",
    "Delivery",
    "ErrorResponse",
    "Explanation",
    "ModelRef",
    "NotReady",
    "OutcomeResult",
    "OutcomesResponse",
    "Problem",
    "Ready",
    "ReasonOut",
    "RecordedModelRef",
    "ScoreRequest",
    "ScoreResponse",
    "ServingModel",
    "StoredDecision",
    "ValidationDetail",
]


def rule_warning_codes() -> list[str]:
    """The codes of the declaration rules that warn (``features.intake.rules``), as a request
    meets them: each rule's name. A client must know every code it may meet (probe 31: the
    document gave three as examples)."""
    from features.intake.rules import Limits, rules_for
    from features.params import FeatureParams

    rules = rules_for(Limits.from_params({}, FeatureParams()), with_outcomes=False)
    return sorted({r.name for r in rules if r.severity == "warning"})


def _warning_codes_doc() -> str:
    listed = "; ".join(f"`{code}`: {text}" for code, text in CODES.items())
    rules = ", ".join(f"`{code}`" for code in rule_warning_codes())
    return (
        "The stable code of each of `warnings`, in the same order: branch on these, not on the "
        "text (reworded between releases). `lane.*`: the lane was set by policy, not by the "
        f"risk alone. A declaration rule's warning has the rule's name as its code: {rules}, "
        "and `EXTRA.plausible` for each amount extra a mapping declares; the others: " + listed
    )


WARNING_CODES_DOC = _warning_codes_doc()


class ModelRef(BaseModel):
    name: str
    version: str


class RecordedModelRef(ModelRef):
    """The model a stored decision was made with, as its record says (under its MAC)."""

    run_id: str | None = Field(
        description="The MLflow run of the model that decided; null when recorded before "
        "decisions kept it (then only the name and version say which model it was)."
    )
    bundle_sha256: str | None = Field(
        description="SHA-256 of that model's bundle.json (which pins each bundle file by its "
        "digest): the registry's version today is that model only if its bundle matches."
    )


class ReasonOut(BaseModel):
    feature: str
    text: str = Field(description="Readable reason with the actual values.")
    contribution: float = Field(description="Log-odds this feature added to the raw risk score.")


# what serving.scoring.new_decision_ids makes: 128 random bits in hex
DECISION_ID_PATTERN = "^[0-9a-f]{32}$"


class Decision(BaseModel):
    decision_id: str = Field(
        description="Id of this decision in the audit store (32 hex digits).",
        pattern=DECISION_ID_PATTERN,
    )
    declaration_id: str = Field(
        description="The declaration's id as the service reads identifiers: spaces around it "
        "trimmed and Unicode NFKC-normalised (a full-width '７' is '7'), the form it is stored "
        "and deduplicated under. Decisions come back in the order the declarations were sent: "
        "match answers to requests by position, not by this text."
    )
    risk: float = Field(
        ge=0, le=1, description="Calibrated probability that the parcel is illicit."
    )
    expected_revenue: float = Field(ge=0, description="risk x expected revenue if illicit, EUR.")
    lane: Literal["red", "yellow", "green"]
    exploration: bool = Field(
        description="Drawn by the random exploration quota (lane at least the exploration lane)."
    )
    reasons: list[ReasonOut] = Field(
        description="Up to five reasons, for red and yellow decisions; POST /explain for green."
    )
    model: ModelRef
    thresholds_version: str
    warnings: list[str] = Field(description="E.g. codes never seen in history (priors used).")
    warning_codes: list[str] = Field(description=WARNING_CODES_DOC)


class ScoreRequest(BaseModel):
    """The body of ``POST /score``: the declarations and no other key (``BentoML``'s input
    spec of the endpoint). An unknown key is refused (400, ``extra_forbidden``, nothing
    scored): ``{"declarations": [...], "dry_run": true}`` was scored and recorded."""

    model_config = ConfigDict(extra="forbid")

    declarations: list[Declaration]  # type: ignore[valid-type]


class ExplainRequest(BaseModel):
    """The body of ``POST /explain``: exactly one of the two (422 otherwise), and no other
    key (400, ``extra_forbidden``: a misspelt ``decisionId`` was read as neither)."""

    model_config = ConfigDict(extra="forbid")

    decision_id: str | None = Field(None, description="A stored decision.")
    declaration: Declaration | None = Field(  # type: ignore[valid-type]
        None, description="A declaration, explained without storing anything."
    )


class DecisionRequest(BaseModel):
    """The body of ``POST /decision``: the decision's id and no other key."""

    model_config = ConfigDict(extra="forbid")

    decision_id: str


class ScoreResponse(BaseModel):
    decisions: list[Decision]


class Contribution(BaseModel):
    feature: str
    value: Any = Field(description="The value the model saw (category label; null if missing).")
    contribution: float
    unit: str | None = Field(
        default=None,
        description="The currency of a money value (present for money features only): the "
        "`*_eur` features of declared values hold amounts in the base currency "
        "(features.base_currency), those of recovered revenue in EUR.",
    )


class Explanation(BaseModel):
    decision_id: str | None
    declaration_id: str
    model: ModelRef
    base_value: float = Field(description="Expected raw score; base + sum(contributions) = raw.")
    raw_score: float = Field(description="Log-odds of the risk model.")
    risk: float = Field(ge=0, le=1)
    contributions: list[Contribution]
    reasons: list[ReasonOut]
    stored_raw_score: float | None = Field(
        default=None, description="For a stored decision: the raw score it recorded."
    )
    intact: bool | None = Field(
        default=None,
        description="For a stored decision: its link in the tamper-evident chain holds.",
    )


class Delivery(BaseModel):
    """A decision whose answer was not sent: a retry of the same declaration returns it."""

    reason: str
    marked_at: str = Field(description="When the lost answer was noticed (UTC).")
    redelivered_at: str | None = Field(
        description="When a retry was answered with this decision (UTC); null until then."
    )


class StoredDecision(BaseModel):
    decision_id: str
    scored_at: str
    declaration_id: str
    declaration: dict[str, Any]
    features: dict[str, float | None]
    model: RecordedModelRef
    thresholds_version: str
    lane_policy: dict[str, Any] = Field(
        description="AEO discount, exploration rate/seed/lane, the lane of implausible numbers "
        "and the bounds that judged them."
    )
    raw_score: float
    risk: float = Field(ge=0, le=1)
    expected_revenue: float = Field(ge=0)
    lane: str
    exploration: bool
    reasons: list[ReasonOut]
    warnings: list[str]
    warning_codes: list[str] = Field(description=WARNING_CODES_DOC)
    request_id: str = Field(description="The request that asked (its X-Request-ID).")
    api_key_id: str = Field(description="The id (a fingerprint, never the key) of its API key.")
    known_seq: int = Field(description="The decision log the live entity state held (its seq).")
    known_results_seq: int = Field(description="The inspection results it held (their seq).")
    seq: int | None = Field(description="The decision's place in the store's chain.")
    answered_at: str | None = Field(description="When it was committed and released (UTC).")
    intact: bool = Field(
        description="Its link in the tamper-evident chain holds: its MAC matches its content and "
        "its neighbours name it (the whole chain: `parcelrisk audit verify`)."
    )
    delivery: Delivery | None = Field(
        default=None,
        description="Set when the decision was recorded but its answer was not sent (the "
        "request timed out or was cancelled first); null when it was answered.",
    )


class Problem(BaseModel):
    loc: list[str | int] = Field(description='["declarations", row, field]')
    declaration_id: str | None
    rule: str
    msg: str


class ValidationDetail(BaseModel):
    """One error of the request-body validation (a 400 before any rule runs)."""

    type: str = Field(description="Pydantic's error kind, e.g. missing, string_type, json_invalid.")
    loc: list[str | int] = Field(
        description='Where in the body, e.g. ["declarations", 0, "quantity"].'
    )
    msg: str


class ErrorResponse(BaseModel):
    """Every error answer (``serving.errors``): one line for people, a stable ``code`` to
    branch on, and details where they help. A refused request changed nothing: none of its
    declarations was scored or stored, none of its results stored."""

    error: str = Field(description="One line for people; its wording may change.")
    code: str = Field(
        description="What went wrong, stable across releases. Body: `validation` (400, "
        "`detail`), `contract.rules` (400, `problems`), `body.too_large` (413), "
        "`body.media_type`, `body.encoding` (415), `body.timeout` (408), "
        "`body.duplicate_key` (400: an object gives a key twice). Keys: "
        "`auth.missing_key`, `auth.invalid_key`, `auth.several_credentials` (401), "
        "`auth.role` (403). /score: `batch.size`, `outcome_field`, "
        "`declaration_id.two_contents` (422), `features.failed` (500). /explain: "
        "`explain.one_of` (422), `explain.other_model` (409). /decision, /explain: "
        "`decision.not_found` (404), `decision.damaged` (409), `decision_id.missing` (422), "
        "`decision.archive_unavailable` (503). "
        "/outcomes: `outcomes.rules` (400), `outcomes.conflict` (409), `batch.size` (422). "
        "Any path: `busy.queue`, `busy.concurrency`, `busy.bodies` (429), `not_ready`, "
        "`store.unavailable`, `store.damaged` (503), `timeout` (504), `route.not_found` "
        "(404), `route.method` (405), `headers.too_large` (431); an answer without a more "
        "precise one carries its status's (`bad_request`, `conflict`, `unprocessable`, "
        "`busy`, `unavailable`).",
        examples=["contract.rules", "batch.size"],
    )
    field: str | None = Field(
        default=None,
        description="The offending input as a dotted path, rows by number, as in every "
        "answer: declarations.0.illicit, declarations.3.declaration_id.",
    )
    loc: list[str | int] | None = Field(
        default=None,
        description='The same path as a list, the row a number: ["declarations", 3, '
        '"declaration_id"].',
    )
    problems: list[Problem] | None = Field(
        default=None,
        description="The rules the declarations (results) break (400; 409 for results that "
        "only contradict stored ones): every refused row with at least its first problem, "
        "then further problems up to 1,000 in all. The whole request is refused: drop the "
        "rows named and send the rest.",
    )
    problems_total: int | None = Field(
        default=None, description="How many problems there are; more than listed if truncated."
    )
    detail: list[ValidationDetail] | None = Field(
        default=None,
        description="The validation errors of a body that is not the documented JSON (400): "
        "every refused row with at least its first error, then further errors up to 1,000 in "
        "all (a body of at most serve.max_batch rows always has every refused row named).",
    )
    detail_total: int | None = Field(
        default=None, description="How many validation errors there are."
    )
    truncated: bool | None = Field(
        default=None,
        description="With `problems` or `detail`: whether some of them were left out "
        "(`problems_total`, `detail_total` count them all).",
    )


class NotReady(BaseModel):
    """``/readyz`` of a worker that cannot score (yet): why."""

    ready: Literal[False]
    reason: str


class ServingModel(ModelRef):
    """The model a worker decides with."""

    run_id: str | None = Field(description="The MLflow run of the model.")
    thresholds_version: str = Field(description="The lane thresholds version in force.")


class Ready(BaseModel):
    """``/readyz`` of a worker that can score: the model it decides with. Behind a balancer,
    a promotion reaches each replica within ``serve.champion_check_s``: wait until every
    replica names the new version."""

    ready: Literal[True]
    model: ServingModel


# --- inspection results (POST /outcomes) ------------------------------------------------------

_TYPES: dict[str, Any] = {
    "str": str,
    "category": str,
    "datetime": datetime,
    "bool": bool,
    "float": float,
}


def _result_field(name: str) -> tuple[Any, Any]:
    """Type and documentation from the contract; the domain is checked by ``serving.outcomes``
    with the contract's rules, so every field is optional here and a missing one gets the
    same message as in a file."""
    spec = FIELDS_BY_NAME[name]
    required = name in REQUIRED_FIELDS
    domain: dict[str, Any] = {}
    if spec.allowed:  # null is a value of an optional field: its enum must list it
        domain["enum"] = list(spec.allowed) + ([] if required else [None])
    if spec.min_value is not None:
        domain["minimum"] = spec.min_value
    if spec.max_length and spec.scope == "outcome":  # the outcome rules check it on results
        domain["maxLength"] = spec.max_length

    def document(schema: dict[str, Any]) -> None:
        if required:  # documented as required and non-null, as the rules enforce it
            (typed,) = [s for s in schema.pop("anyOf", []) if s.get("type") != "null"] or [{}]
            schema.update(typed)
            schema.pop("default", None)
            if name == "declaration_id":
                schema["minLength"] = 1
        schema.update(domain)

    description = spec.description.split("; null if")[0].rstrip(".") + "."
    return _TYPES[spec.kind] | None, Field(
        None, description=description, json_schema_extra=document
    )


class _ResultBase(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"required": list(REQUIRED_FIELDS)}
    )

    @model_validator(mode="before")
    @classmethod
    def _revenue_is_in_eur(cls, data: Any) -> Any:
        # a currency beside the revenue was refused as an "extra input" unexplained, and an
        # integrator who dropped the key sent BRL as EUR (x5.9), the revenue model's labels
        # (probe 10)
        if isinstance(data, dict) and "currency" in data:
            raise ValueError(
                "currency: revenue_recovered is in EUR, the contract's unit, and a result "
                "carries no currency: send it converted, or store the results file with "
                "`parcelrisk outcomes ingest FILE --mapping MAPPING.yaml`, whose "
                "revenue_recovered: {column: ..., currency: BRL} converts it"
            )
        return data

    @field_validator("illicit", mode="before", check_fields=False)
    @classmethod
    def _read_bool(cls, value: Any) -> Any:
        return parse_bool_value(value)  # the file reader's words

    @field_validator("revenue_recovered", mode="before", check_fields=False)
    @classmethod
    def _sent_nan_is_no_missing_value(cls, value: Any, info: Any) -> Any:
        # NaN in JSON was stored as "not recorded" (where a frame holds missing as NaN), with
        # a 200: the amount sent was lost, and only a correction could give it back. null is
        # how a result says it has none; the rules judge infinities (not finite).
        if info.mode == "json" and isinstance(value, float) and math.isnan(value):
            raise ValueError("must be a number or null, not NaN")
        # true was stored as 1.0 EUR recovered (pydantic's lax float), chained and learned
        # from as the revenue label; /score refuses it for its numbers in the same words
        if isinstance(value, bool):
            raise ValueError(f"must be a number or null, not {str(value).lower()}")
        # in Arabic-Indic digits (١٢٫٥), read as a mapped results file's
        return read_ascii_digits(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _require_declaration_id(self) -> Any:
        # The outcome rules check every other field; an absent id reached the store's NOT NULL
        # constraint as a 500 (serving.outcomes skips the row, trusting a rule that does not
        # run on results).
        declaration_id = getattr(self, "declaration_id", None)
        if declaration_id is None or not str(declaration_id).strip():
            raise ValueError("declaration_id: a value is required (the id of a scored parcel)")
        return self

    @field_validator("inspected_at", mode="before", check_fields=False)
    @classmethod
    def _a_date_is_no_time(cls, value: Any) -> Any:
        # "2026-11-21" was refused as lacking a time zone, the wrong problem (probe 10); a
        # result known only by its day counts from the end of that day, as `outcomes ingest`
        # reads such a file, never before that day's declarations
        if isinstance(value, str):  # in Arabic-Indic digits, read as a mapped file's times
            value = read_ascii_digits(value)
        if isinstance(value, str) and DATE_ONLY.fullmatch(value):
            day = value.strip()
            raise ValueError(
                f"inspected_at {day!r} is a date without a time: send the time of the result "
                f"with its zone (e.g. '{day}T09:00:00Z'), or for a result known only by its "
                f"day the end of that day ('{end_of_day(day)}'), so that it never counts "
                "before that day's declarations"
            )
        return value

    @field_validator("inspected_at", check_fields=False)
    @classmethod
    def _require_time_zone(cls, value: datetime | None) -> datetime | None:
        return require_utc_time(value, "inspected_at", "2026-05-03T09:00:00Z")


OutcomeResult: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "OutcomeResult",
    __base__=_ResultBase,
    __doc__="The result of one inspection, keyed by the declaration id of a stored decision.",
    **{name: _result_field(name) for name in RESULT_FIELDS},
    correction=(
        str | None,
        Field(
            None,
            description="Why this result replaces the one stored for the declaration (an "
            "appeal upheld, a laboratory report, a keying error): required to send a result "
            "that differs from the stored one, refused when none is stored. The stored result "
            "is kept as it was; this one, with its reason, becomes the current result.",
            json_schema_extra={"maxLength": MAX_CORRECTION_CHARS},
        ),
    ),
)


class OutcomesResponse(BaseModel):
    stored: int = Field(description="Results stored by this request.")
    unchanged: int = Field(
        description="Results identical to one already stored (a re-post): nothing new stored."
    )
    corrected: int = Field(
        default=0,
        description="Of the results stored, those that replace a stored result (a correction); "
        "present when any did.",
    )
    skipped_unknown: int = Field(
        default=0,
        description="With skip_unknown: results of declarations this service never decided, "
        "left out (present when asked).",
    )
    skipped_unknown_ids: list[str] = Field(
        default_factory=list,
        description="Their declaration ids (present when asked).",
    )
    repeated_results_read_once: int = Field(
        default=0,
        description="Results listed a second time value for value in this request, read once "
        "(present when any were).",
    )
