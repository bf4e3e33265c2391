"""Inspection results that come back after scoring: checked against the decisions, then stored.

One function, ``check_outcomes``, decides whether a batch of results may be stored; the HTTP
endpoint (``POST /outcomes``) and ``parcelrisk outcomes ingest`` both go through
``store_outcomes``, which runs it inside the store's write transaction, so a batch is stored
whole or not at all and two writers cannot both store a first, conflicting result for one id.

The field rules (types, offence codes, a finite, non-negative revenue no larger than
``validate.max_revenue`` (unset: ``max_value``), not more than ``MAX_CLOCK_SKEW_DAYS`` in the future, not before the
declaration, no offence type without an offence) are the contract's outcome rules
(``features.intake.rules``), run on the results as on a history file; this module adds what only
the store can answer: unknown declaration ids, an id twice in one batch, and a result that
contradicts the one already stored (an identical one is "unchanged", not an error).

``history_frame`` is the way back into training: the declarations as they were scored, with
their results, as a contract history file (``parcelrisk history export``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from features.errors import ParcelriskError
from features.intake.columns import FrameColumns
from features.intake.contract import (
    DECLARATION_COLUMNS,
    OUTCOME_COLUMNS,
    RANDOM_SELECTION,
    Contract,
    coerce_declarations,
    parse_declarations,
)
from features.intake.rules import Limits, Rule, check, parse_findings, rules_for, show
from features.params import FeatureParams
from serving.audit.chain import RESULT_FIELDS as STORED_RESULT_FIELDS
from serving.decision import iso_utc, parse_iso_us

logger = logging.getLogger(__name__)

# The results as now known, for a query that joins them to decisions (either store's SQL):
# each declaration's last stored result, a correction replacing the one before it.
CURRENT_RESULTS = (
    "(SELECT * FROM outcomes AS r WHERE NOT EXISTS (SELECT 1 FROM outcomes AS later "
    "WHERE later.declaration_id = r.declaration_id AND later.seq > r.seq))"
)

if TYPE_CHECKING:
    import pandas as pd

# What a result carries: the contract's outcome fields that an inspector records, and why the
# parcel was inspected when the sender knows it (an administration's results file says which
# inspections its random quota drew: the unbiased labels training calibrates on). The stored
# result's fields (``serving.audit.chain``) less ``source``, which the store adds: one list, so
# a field added to results is sent, checked and chained alike.
RESULT_FIELDS = tuple(f for f in STORED_RESULT_FIELDS if f not in ("source", "correction"))
REQUIRED_FIELDS = ("declaration_id", "inspected_at", "illicit")
# Why a result replaces the one stored for its declaration: an appeal upheld, a laboratory
# report, a keying error. Not a contract field (a history file holds each declaration's result
# as now known); sent beside the result fields, and required for a result that differs from the
# stored one, so a conflicting re-send by mistake is still refused rather than taken as a
# correction. Kept, chained, with the new result; the old one stays in the store as it was.
CORRECTION = "correction"
MAX_CORRECTION_CHARS = 500
# A result time written as a day alone ("2026-11-21"): read as midnight, it counted before the
# inspection, for the parcels declared earlier that day (probe 10)
DATE_ONLY = re.compile(r"\s*\d{4}-\d{2}-\d{2}\s*")


def end_of_day(day: str) -> str:
    """'2026-11-21' -> '2026-11-22T00:00:00Z': when a result known only by its day counts."""
    from datetime import date, timedelta

    return f"{date.fromisoformat(day.strip()) + timedelta(days=1)}T00:00:00Z"


def dated_results_at_end_of_day(raw: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """A results file's ``inspected_at`` written as days alone, read as the end of each day
    (UTC, as the file's other times without a zone), so a result counts from the next day
    on, never before that day's declarations (the drafted mappings' ``offset: 1 day``).
    Returns the frame and the days so read (a day that is no date is left for the rules)."""
    import pandas as pd

    if "inspected_at" not in raw.columns:
        return raw, []
    column = raw["inspected_at"]
    if not (column.dtype == object or isinstance(column.dtype, pd.StringDtype)):
        return raw, []
    text = column.astype("string")
    dated = text.str.fullmatch(DATE_ONLY.pattern).fillna(False).to_numpy(dtype=bool)
    if not dated.any():
        return raw, []
    day_text = text[dated].str.strip()
    # 2026-02-30 is no day: left as written, for the rules to name
    day = pd.to_datetime(day_text, format="%Y-%m-%d", errors="coerce")
    read = day.notna().to_numpy()
    if not read.any():
        return raw, []
    moved = column.astype(object).copy()
    rows = np.flatnonzero(dated)[read]
    moved.iloc[rows] = (day[read] + pd.Timedelta(days=1)).dt.strftime("%Y-%m-%dT00:00:00Z")
    raw = raw.copy()
    raw["inspected_at"] = moved
    return raw, day_text[read].tolist()


# selection_reason of a parcel inspected because the model sent it (not the random quota).
MODEL_SELECTION = "model"
# selection_reason of an inspected parcel the model sent green and the quota did not draw: an
# officer's own pick (a tip-off, a profile, a hunch). Calling it "model" credited the model with
# inspections it advised against, in every hit rate per selection reason. Training reads it as
# any targeted selection (neither "random" nor "rule:...").
MANUAL_SELECTION = "manual"
# The lanes the model sends to an inspection (``serving.lanes``); green clears the parcel.
MODEL_SELECTED_LANES = frozenset({"red", "yellow"})


@dataclass(frozen=True)
class OutcomeProblem:
    """Why one row of a batch of results was refused (``row``: 0-based position in the batch)."""

    row: int
    declaration_id: str | None
    field: str
    rule: str
    msg: str


class OutcomesRefused(ParcelriskError):
    """A batch of results was refused as a whole; nothing was stored."""

    def __init__(self, problems: list[OutcomeProblem], n_rows: int, hint: str = "") -> None:
        self.problems = sorted(problems, key=lambda p: p.row)
        self.n_rows = n_rows
        said = describe_problems(self.problems, lambda row: f"row {row + 1}")
        super().__init__(f"{said}. {hint}" if hint else said)


def describe_problems(
    problems: Sequence[OutcomeProblem],
    where: Callable[[int], str],
    shown: int = 3,
    nothing: str = "nothing stored",
) -> str:
    """One line: how many results were refused and the first few reasons, with their rows
    (``nothing``: what the refusal left undone)."""
    rows = len({p.row for p in problems})
    parts = [
        f"{where(p.row)}"
        + (f" ({_cut(p.declaration_id)})" if p.declaration_id else "")
        + f": {p.msg}"
        for p in problems[:shown]
    ]
    more = f" (+{len(problems) - shown} more)" if len(problems) > shown else ""
    return f"{rows} result(s) refused, {nothing}: {'; '.join(parts)}{more}"


# Characters of a client's id a refusal echoes (a 1 MB id was echoed whole in a 1 MB 404 of
# /decision; a 10,000-character one twice in a 20 KB /outcomes refusal)
SHOWN_ID_CHARS = 80


def _cut(declaration_id: str) -> str:
    """An id as a refusal names its row: cut short, its length said."""
    if len(declaration_id) <= SHOWN_ID_CHARS:
        return declaration_id
    return f"{declaration_id[:SHOWN_ID_CHARS]}... ({len(declaration_id):,} characters)"


@dataclass(frozen=True)
class StoredResult:
    """A result as the store holds it, in the form results are compared in."""

    inspected_at_us: int  # UTC microseconds since the epoch
    illicit: bool
    offence_type: str | None
    revenue_recovered: float | None
    # as given with the result (``random``, ``rule:...``, ...); None: not given, and history
    # export derives it from the first decision
    selection_reason: str | None = None
    # why this result replaced the one stored before it (None: the first result stored)
    correction: str | None = None
    # when the store received this result (UTC us; None: not read), a correction's own time:
    # the decisions made before it could not count it, whatever its inspected_at says
    known_at_us: int | None = dataclasses.field(default=None, compare=False)


def current_results(rows: Iterable[Sequence[Any]]) -> dict[str, StoredResult]:
    """Each declaration's last result of ``rows`` (declaration_id, inspected_at, illicit,
    offence_type, revenue_recovered, selection_reason, correction, recorded_at; in seq
    order), known from when it was recorded (a correction: when the correction was)."""
    out: dict[str, StoredResult] = {}
    for declaration_id, at, illicit, offence, revenue, given, fix, recorded_at in rows:
        # known from when this one was stored: a correction's label was not known before it
        # came (from the first result's arrival, the export counted a corrected offence for
        # the parcels served with the original, clean, probe 28)
        out[declaration_id] = StoredResult(
            parse_iso_us(at), bool(illicit), offence, revenue, given, fix, parse_iso_us(recorded_at)
        )
    return out


# A result that reached the store this long after its inspected_at was not counted by the
# decisions made meanwhile, while the history's features count it from inspected_at
LATE_RESULT_US = 86_400 * 1_000_000


def late_results(rows: Sequence[ScoredRow], known: Sequence[int | None]) -> dict[str, Any] | None:
    """How many results of ``rows`` the service had more than a day after their
    ``inspected_at`` (``known``: ``results_known_at(rows)``, in the declarations' clock), and
    how late (days); None when none.

    A decision counts a result only once the store holds it: a result sent days later with
    the inspection's time (a lab report, a weekly file) was not counted by the decisions made
    meanwhile. The history places it for features from then, so the next model learns as the
    service served; said, with the size, so the results feed is made prompt (those parcels
    went without the evidence). Labels stay at ``inspected_at``."""
    delays = np.array(
        [
            at - r.result.inspected_at_us
            for r, at in zip(rows, known, strict=True)
            if r.result is not None and at is not None
        ],
        dtype=np.int64,
    )
    late = delays[delays > LATE_RESULT_US] / (86_400 * 1_000_000)
    if not len(late):
        return None
    return {
        "results": len(late),
        "of": sum(r.result is not None for r in rows),
        "median_days_late": round(float(np.median(late)), 1),
        "max_days_late": round(float(late.max()), 1),
        "replay": _replayed(rows),
    }


# Scored this long after being declared, most of a store's parcels were replayed (last year's
# declarations scored today, a backfill), not decided live: pre-arrival declarations are scored
# within days, and /score takes none dated more than two days ahead
REPLAY_LAG_US = 7 * 86_400 * 1_000_000


def _replayed(rows: Sequence[ScoredRow]) -> bool:
    """Whether most of ``rows`` were scored long after they were declared (``REPLAY_LAG_US``):
    a replay, whose results came back after its scoring by construction, not late."""
    scored, declared = _decision_times([r for r in rows if r.scored_at])
    return bool(len(scored)) and float(np.median(scored - declared)) > REPLAY_LAG_US


def _decision_times(rows: Sequence[ScoredRow]) -> tuple[np.ndarray, np.ndarray]:
    """When each of ``rows`` (read with its ``scored_at``) was scored, and declared (UTC us)."""
    import orjson  # the whole export's declarations read once more: ~3x json's speed here

    scored = np.array([parse_iso_us(r.scored_at) for r in rows], dtype=np.int64)
    declared = np.array(
        [parse_iso_us(orjson.loads(r.declaration_json)["declared_at"]) for r in rows],
        dtype=np.int64,
    )
    return scored, declared


class ReplacedResult(NamedTuple):
    """The result a correction replaced, as the live state counted it."""

    seq: int
    inspected_at_us: int
    illicit: bool
    revenue_recovered: float | None


class ResultEvent(NamedTuple):
    """A stored result as the live state reads it (``results_since``): its seq, the declaration
    as first scored (stored JSON), the result, and for a correction the result it replaces."""

    seq: int
    declaration_json: str
    inspected_at_us: int
    illicit: bool
    revenue_recovered: float | None
    replaces: ReplacedResult | None = None


def result_event(
    seq: Any,
    declaration_json: str,
    inspected_at: str,
    illicit: Any,
    revenue: float | None,
    replaced_seq: Any = None,
    replaced_at: str | None = None,
    replaced_illicit: Any = None,
    replaced_revenue: float | None = None,
) -> ResultEvent:
    """A ``ResultEvent`` from a store's row (times as stored text)."""
    from serving.decision import parse_iso_us

    replaces = None
    if replaced_seq is not None:
        assert replaced_at is not None
        replaces = ReplacedResult(
            int(replaced_seq), parse_iso_us(replaced_at), bool(replaced_illicit), replaced_revenue
        )
    return ResultEvent(
        int(seq), declaration_json, parse_iso_us(inspected_at), bool(illicit), revenue, replaces
    )


def result_events(rows: Sequence[Sequence[Any]], decisions: Any = None) -> list[ResultEvent]:
    """``ResultEvent``s of a store's ``results_since`` rows, each ending with its
    ``declaration_id``. A row whose declaration is no longer among the hot decisions (``audit
    archive`` moved its day) takes the declaration from the archive of ``decisions`` (the
    decision store, None: the row is left out, as a result of no known declaration).

    A worker started after an archive, and `audit recompute` of an archived decision, read
    the archived declarations' results too: without them the live state missed every result
    of an archived day and an archived decision did not recompute (probe 12)."""
    missing = sorted({row[-1] for row in rows if row[1] is None})
    found: dict[str, str] = {}
    if missing and decisions is not None:
        from serving.audit.archived import archived_declarations

        found = archived_declarations(decisions, missing)
    events = []
    for row in rows:
        declaration_json = row[1] if row[1] is not None else found.get(row[-1])
        if declaration_json is not None:
            events.append(result_event(row[0], declaration_json, *row[2:-1]))
    return events


# What an auditor reads of each stored result of a declaration (``result_history``).
HISTORY_COLUMNS = (
    "seq",
    "recorded_at",
    "source",
    "inspected_at",
    "illicit",
    "offence_type",
    "revenue_recovered",
    "selection_reason",
    "correction",
)


def history_entry(row: dict[str, Any]) -> dict[str, Any]:
    """One stored result as ``result_history`` gives it (``HISTORY_COLUMNS``, typed)."""
    return {
        **row,
        "seq": int(row["seq"]),
        "illicit": bool(row["illicit"]),
        "revenue_recovered": None
        if row["revenue_recovered"] is None
        else float(row["revenue_recovered"]),
    }


@dataclass(frozen=True)
class CheckedOutcomes:
    """A batch that passed: the rows to store (canonical frame) and how many were already there."""

    new: pd.DataFrame
    unchanged: int


def _outcome_rules(now: datetime | None, limits: Limits | None) -> list[Rule]:
    # The outcome-scope rules only. Of the limits, only the bound of revenue_recovered is read
    # (validate.max_revenue, else max_value); without them, params.yaml's defaults.
    if now is None and limits is None:
        return _rules_on_the_clock()
    return _build_outcome_rules(now, limits)


@functools.cache
def _rules_on_the_clock() -> list[Rule]:
    """Built once: without a fixed ``now`` the rules read the clock when they check."""
    return _build_outcome_rules(None, None)


def _build_outcome_rules(now: datetime | None, limits: Limits | None) -> list[Rule]:
    limits = limits or Limits.from_params({}, FeatureParams())
    # a result sent to the store has no result_known_at: the store's own time of receiving it
    # is that (history export writes it)
    return [
        rule
        for rule in rules_for(limits, with_outcomes=True, now=now)
        if rule.scope == "outcome" and rule.field != "result_known_at"
    ]


def check_outcomes(
    raw: pd.DataFrame,
    declared_at_us: dict[str, int],
    stored: dict[str, StoredResult],
    *,
    now: datetime | None = None,
    limits: Limits | None = None,
    unknown: str = "has no decision in the store",
    default_correction: str | None = None,
) -> CheckedOutcomes:
    """The results of ``raw`` that may be stored, or ``OutcomesRefused`` naming every bad row.

    ``raw``: one row per result, columns of ``RESULT_FIELDS`` (text or typed; others ignored),
    and optionally ``correction``: why a row replaces the result stored for its declaration.
    A row that differs from the stored result is refused without one; with one it is stored as
    a correction (``selection_reason`` left empty keeps the stored one's: why the parcel was
    inspected does not change with what was found). A correction of a declaration that has no
    result stored is refused: it would stand for a result nobody sent.
    ``declared_at_us``: declaration id -> declared_at (UTC us) of the scored declarations
    among those ids. ``stored``: the results already stored for those ids. ``now`` fixes the
    clock of the "not in the future" rule (tests); by default it is read now. ``limits``: the
    plausibility limits of the gate (``Limits.from_settings``); by default params.yaml's
    defaults. ``unknown``: what a result of a declaration not in ``declared_at_us`` is told.
    ``default_correction``: as ``_checked_against_stored``'s.
    """
    fields = _checked_fields(raw, declared_at_us, now=now, limits=limits)
    return _checked_against_stored(fields, declared_at_us, stored, unknown, default_correction)


@dataclasses.dataclass
class _Fields:
    """A batch of results read and checked field by field (what needs no stored result)."""

    raw: pd.DataFrame
    frame: pd.DataFrame
    ids: pd.Series
    id_values: np.ndarray
    corrections: list[str | None]
    problems: list[OutcomeProblem]


def _checked_fields(
    raw: pd.DataFrame,
    declared_at_us: dict[str, int],
    *,
    now: datetime | None = None,
    limits: Limits | None = None,
) -> _Fields:
    """``check_outcomes``' reading and field rules: the costly part (pandas work, ~20 ms
    for one result), which reads no stored result, so ``store_outcomes`` runs it outside the
    store's write transaction (a result posted held the decision store's lock through it, and
    inspection systems posting one result at a time starved /score, probe)."""
    import pandas as pd

    missing = [name for name in REQUIRED_FIELDS if name not in raw.columns]
    if missing:
        raise ParcelriskError(
            f"results need the column(s) {', '.join(missing)} "
            f"(a result has: {', '.join(RESULT_FIELDS)})"
        )
    present = [name for name in RESULT_FIELDS if name in raw.columns]
    frame, bad_values, _ = parse_declarations(raw[present], with_outcomes=True, only=RESULT_FIELDS)
    frame = frame[[*RESULT_FIELDS]]
    corrections = _corrections(raw)
    ids = frame["declaration_id"]
    id_values = ids.to_numpy(dtype=object, na_value=None)  # None, never NaN: problems name it
    declared = ids.map(declared_at_us).astype("float64")  # NaN: unknown id
    frame["inspected"] = True
    frame["declared_at"] = pd.to_datetime(declared, unit="us", utc=True).astype(
        "datetime64[us, UTC]"
    )

    unreadable: dict[str, np.ndarray] = {}
    for bad in bad_values:
        mask = unreadable.setdefault(bad.field, np.zeros(len(frame), dtype=bool))
        mask[bad.rows] = True
    findings = check(FrameColumns(frame), _outcome_rules(now, limits), unreadable)
    problems = [
        OutcomeProblem(row, id_values[row], finding.rule.field, finding.rule.name, message)
        for finding in [*parse_findings(bad_values), *findings.faults]
        for row, message in zip(finding.rows.tolist(), finding.messages(), strict=True)
    ]
    for row, why in enumerate(corrections):
        if why is not None and len(why) > MAX_CORRECTION_CHARS:
            problems.append(
                OutcomeProblem(
                    row,
                    id_values[row],
                    CORRECTION,
                    "correction.length",
                    f"correction: {len(why)} characters, at most {MAX_CORRECTION_CHARS} "
                    "(say why in a sentence; the case file holds the rest)",
                )
            )
    return _Fields(raw, frame, ids, id_values, corrections, problems)


def _checked_against_stored(
    fields: _Fields,
    declared_at_us: dict[str, int],
    stored: dict[str, StoredResult],
    unknown: str = "has no decision in the store",
    default_correction: str | None = None,
) -> CheckedOutcomes:
    """``check_outcomes``' comparison with what is stored: ids known and sent once, a result
    that differs from the stored one only as a correction. Raises ``OutcomesRefused`` with
    every problem of the batch, the fields' ones included.

    ``default_correction``: the correction of a row that gives none of its own and differs
    from its stored result (``outcomes ingest --correction``); a row with nothing stored is a
    new result, an identical one unchanged."""
    raw, frame, ids, id_values = fields.raw, fields.frame, fields.ids, fields.id_values
    corrections, problems = list(fields.corrections), list(fields.problems)
    # A row refused for a field is not compared with the stored result: a missing or unreadable
    # value (illicit, inspected_at) is neither equal nor different, and its own problem is the
    # answer, as when nothing is stored yet.
    refused_rows = {p.row for p in problems}
    # an id that could not be read (a control character in it) is named by its own problem:
    # "a value is required" beside it contradicted it
    unreadable_id = {p.row for p in problems if p.field == "declaration_id"}

    counts = ids.value_counts()
    repeated = counts[counts > 1]
    # each repeated id's rows, so that every one of them names the others (probe 37)
    # one pass over the rows, not one per repeated id (a file of many repeats was n x k)
    rows_of: dict[Any, list[int]] = {}
    if len(repeated):
        for p in np.flatnonzero(ids.isin(repeated.index).to_numpy(dtype=bool)):
            rows_of.setdefault(ids.iat[p], []).append(row_number(raw, p))
    unchanged = np.zeros(len(frame), dtype=bool)
    for row, declaration_id in enumerate(id_values):
        if declaration_id is None or not str(declaration_id).strip():
            if row in unreadable_id:
                continue
            # the result rules leave ids to this loop: a blank one reached the store (a 500)
            problems.append(
                OutcomeProblem(
                    row,
                    None,
                    "declaration_id",
                    "declaration_id.required",
                    "declaration_id: a value is required (the id of a scored parcel)",
                )
            )
            continue
        if counts[declaration_id] > 1:
            problems.append(
                OutcomeProblem(
                    row,
                    declaration_id,
                    "declaration_id",
                    "declaration_id.unique",
                    f"declaration_id: {show(declaration_id)} has {counts[declaration_id]} "
                    f"results in this batch (rows {', '.join(map(str, rows_of[declaration_id]))})"
                    ", which differ; send one",
                )
            )
        elif declaration_id not in declared_at_us:
            problems.append(
                OutcomeProblem(
                    row,
                    declaration_id,
                    "declaration_id",
                    "declaration_id.known",
                    f"declaration_id: {show(declaration_id)} {unknown}",
                )
            )
        elif declaration_id not in stored:
            if corrections[row] is not None:
                problems.append(
                    OutcomeProblem(
                        row,
                        declaration_id,
                        CORRECTION,
                        "correction.nothing_stored",
                        f"correction: no result is stored for {show(declaration_id)}, so "
                        "there is nothing to correct; send it without a correction",
                    )
                )
        elif row not in refused_rows:
            before = stored[declaration_id]
            # a monthly file holds new results beside the few it corrects: --correction is the
            # reason of the rows that differ only, so the new ones are not refused as
            # "nothing to correct" (probe 37)
            why = corrections[row] if corrections[row] is not None else default_correction
            reason_at = frame.columns.get_loc("selection_reason")
            if why is not None and _optional(frame.iat[row, reason_at]) is None:
                frame.iat[row, reason_at] = before.selection_reason
            differs = _differences(before, frame.iloc[row])
            if not differs:
                unchanged[row] = True
            elif why is not None:
                corrections[row] = why
            else:
                # the likely case after an upgrade: a file ingested again for the reasons the
                # store used to drop; said, so nobody looks for a difference in the result
                stored_without = differs == ["selection_reason"] and before.selection_reason is None
                problems.append(
                    OutcomeProblem(
                        row,
                        declaration_id,
                        differs[0],
                        "result.conflict",
                        f"{differs[0]}: a different result is already stored for "
                        f"{show(declaration_id)} ({', '.join(differs)} differ)"
                        + ("; it was stored without one" if stored_without else "")
                        + ". A stored result is never edited: to replace it, send this one "
                        "with a correction saying why (kept with it, chained for audit); "
                        "else leave the row out",
                    )
                )
    if problems:
        # named by ``raw``'s row labels: a file's row positions, kept where empty rows were
        # left out (a request's batch: 0, 1, 2 ..., its positions)
        problems = [dataclasses.replace(p, row=row_number(raw, p.row) - 1) for p in problems]
        raise OutcomesRefused(problems, len(frame))
    frame[CORRECTION] = corrections
    new = frame.loc[~unchanged, [*RESULT_FIELDS, CORRECTION]].reset_index(drop=True)
    return CheckedOutcomes(new, int(unchanged.sum()))


def _corrections(raw: pd.DataFrame) -> list[str | None]:
    """Each row's ``correction`` (stripped text; None when absent or blank)."""
    if CORRECTION not in raw.columns:
        return [None] * len(raw)
    out: list[str | None] = []
    for value in raw[CORRECTION].tolist():
        text = None if _optional(value) is None else str(value).strip()
        out.append(text or None)
    return out


def _differences(stored: StoredResult, row: pd.Series) -> list[str]:
    """The fields in which a posted result differs from the stored one."""
    posted = result_of(row)
    out = []
    if posted.inspected_at_us != stored.inspected_at_us:
        out.append("inspected_at")
    if posted.illicit != stored.illicit:
        out.append("illicit")
    if posted.offence_type != stored.offence_type:
        out.append("offence_type")
    if posted.revenue_recovered != stored.revenue_recovered:
        out.append("revenue_recovered")
    # As the other optional fields: a reason given now for a result stored without one is a
    # difference, not a completion. Stored results are chained and never rewritten, and a
    # result re-sent without its reason must not pass as the same one either.
    if posted.selection_reason != stored.selection_reason:
        out.append("selection_reason")
    return out


def _optional(value: Any) -> Any:
    """None for every missing marker a frame cell may hold (None, NaN, pd.NA)."""
    import pandas as pd

    return None if pd.isna(value) else value


def result_of(row: pd.Series) -> StoredResult:
    """One canonical result row in the form results are compared and stored in."""
    return results_of(row.to_frame().T)[0]


def results_of(frame: pd.DataFrame) -> list[StoredResult]:
    """Each canonical result row in the form results are compared and stored in (column by
    column: a results file may hold a million rows).

    Every row must have passed ``check_outcomes``: a missing ``inspected_at`` or ``illicit``
    has no stored form (it would become a bogus time or raise on ``bool(NA)``), so it is refused.
    """
    import pandas as pd

    missing = [name for name in ("inspected_at", "illicit") if frame[name].isna().any()]
    if missing:
        raise ValueError(f"results_of: {', '.join(missing)} missing; check_outcomes refuses it")
    inspected = pd.to_datetime(frame["inspected_at"], utc=True).astype("datetime64[us, UTC]")
    revenue = pd.to_numeric(frame["revenue_recovered"]).astype("float64").to_numpy()
    offence = frame["offence_type"].astype(object).tolist()
    reasons = frame["selection_reason"].astype(object).tolist()
    corrections = (
        frame[CORRECTION].astype(object).tolist() if CORRECTION in frame else [None] * len(frame)
    )
    return [
        StoredResult(
            inspected_at_us=int(at),
            illicit=bool(illicit),
            offence_type=None if _optional(o) is None else str(o),
            revenue_recovered=None if np.isnan(r) else float(r),
            selection_reason=None if _optional(why) is None else str(why),
            correction=None if _optional(fix) is None else str(fix),
        )
        for at, illicit, o, r, why, fix in zip(
            inspected.astype("int64").tolist(),
            frame["illicit"].astype(bool).tolist(),
            offence,
            revenue.tolist(),
            reasons,
            corrections,
            strict=True,
        )
    ]


# --------------------------------------------------------------------------------------------
# Storing a batch: the check inside the store's write transaction
# --------------------------------------------------------------------------------------------


class OutcomeWrite(Protocol):
    """What ``store_outcomes`` needs of a store while it holds the write lock."""

    def declared_at(self, ids: Sequence[str]) -> dict[str, int]: ...

    def stored(self, ids: Sequence[str]) -> dict[str, StoredResult]: ...

    def insert(self, results: Sequence[StoredResult], ids: Sequence[str], source: str) -> None: ...


class OutcomeStore(Protocol):
    def write(self) -> AbstractContextManager[OutcomeWrite]: ...


def store_outcomes(
    store: OutcomeStore,
    raw: pd.DataFrame,
    *,
    source: str,
    now: datetime | None = None,
    limits: Limits | None = None,
    skip_unknown: bool = False,
    name_skipped: bool = False,
    default_correction: str | None = None,
) -> dict[str, Any]:
    """Check ``raw`` against the store and keep its new results, all or nothing.

    ``source``: who sent them (``api:inspector``, a file name), kept with each result.
    ``now``, ``limits``: as ``check_outcomes``.
    ``skip_unknown``: leave out, and count, the rows of declarations this store never decided
    (a national results file covers every inspected parcel, not only those scored here);
    every other problem still refuses the whole batch. ``name_skipped``: their ids too
    (``skipped_unknown_ids``, for an API answer; a national file's would be thousands).
    ``default_correction``: why a row without its own correction that differs from its stored
    result replaces it (``_checked_against_stored``).
    Returns ``{"stored": n, "unchanged": m}`` (and ``"corrected"``: how many of the stored
    replace a stored result, when any; ``"skipped_unknown"`` when asked;
    ``"repeated_results_read_once"``: rows that repeated an earlier one value for value, when
    any); raises ``OutcomesRefused`` and stores nothing.
    """
    from features.intake.contract import parse_text

    if len(raw) == 0:
        raise ParcelriskError("no results given: expected at least one row")
    # A result listed twice value for value says nothing new: read once, as a file's is and
    # as a re-post is "unchanged" (a client's retry loop that re-sends a row within its
    # batch must not have the whole batch refused). A repeat that differs is still refused.
    raw, repeats = drop_repeated_results(raw)
    raw, not_inspected = _inspected_only(raw)
    read_once = {"repeated_results_read_once": len(repeats)} if repeats else {}
    if len(raw) == 0:  # a file of parcels none of which was inspected
        return {"stored": 0, "unchanged": 0, "skipped_not_inspected": not_inspected} | read_once
    if "declaration_id" in raw.columns:
        ids = parse_text(raw["declaration_id"], narrow=True).dropna().unique().tolist()
    else:
        ids = []
    skipped = 0
    skipped_ids: list[str] = []
    lost_zeros: dict[str, str] = {}
    raw_ids = None  # the ids sent, when --skip-unknown left some out
    # Three steps, so the store's write lock (which /score's decisions wait for) is held for
    # reads and the insert only, never through the costly reading of the results: the
    # declarations' times (they never change once decided), then the results read and
    # checked field by field without the lock, then, in one transaction, the comparison with
    # what is stored and the insert.
    with store.write() as tx:
        declared = tx.declared_at(ids)
    if skip_unknown and ids:
        # the padding worked out without the lock, taken for each query only
        lost_zeros = ids_with_lost_zeros(
            [i for i in ids if i not in declared], declared, functools.partial(_declared, store)
        )
    if skip_unknown and "declaration_id" in raw.columns:
        parsed = parse_text(raw["declaration_id"], narrow=True)
        if lost_zeros:
            # A result of a declaration decided here, its id written without the zeros the
            # store's has (a spreadsheet that turned some cells into numbers), was left out
            # as "never decided", exit 0: a found offence gone from the training loop unsaid
            # (probe 39, 6). Refused rather than warned: a warning in a nightly job's log is
            # read after the next model trained without the offence, and the file, read
            # with the mapping's zero_pad or exported as text, is stored whole on a re-run.
            raise OutcomesRefused(_lost_zeros_problems(raw, parsed, lost_zeros), len(raw))
        unknown = (parsed.notna() & ~parsed.isin(list(declared))).to_numpy(dtype=bool)
        skipped = int(unknown.sum())
        skipped_ids = parsed[unknown].tolist()
        # the kept rows keep their labels: a refusal names the file's rows, not the
        # positions left after the skip
        raw_ids = raw["declaration_id"]
        raw = raw[~unknown]
    if len(raw) == 0:  # every row was of a declaration never decided here
        # not refused (a national file may hold none of this hub's parcels), but said; ids
        # that lost their leading zeros were refused above
        unknown_ids = (
            parse_text(raw_ids, narrow=True).dropna().unique().tolist()
            if raw_ids is not None
            else []
        )
        logger.warning(
            "none of the %d results names a declaration this store decided (e.g. %r): "
            "nothing stored",
            skipped,
            unknown_ids[0] if unknown_ids else None,
        )
        counts = {"stored": 0, "unchanged": 0, "skipped_unknown": skipped}
        if name_skipped:
            counts["skipped_unknown_ids"] = skipped_ids
        return (
            counts | ({"skipped_not_inspected": not_inspected} if not_inspected else {}) | read_once
        )
    fields = _checked_fields(raw, declared, now=now, limits=limits)
    with store.write() as tx:
        if (again := tx.declared_at(ids)) != declared:
            # decided or archived since the first read (rare): checked again under the lock
            declared = again
            fields = _checked_fields(raw, declared, now=now, limits=limits)
        try:
            checked = _checked_against_stored(
                fields, declared, tx.stored(ids), default_correction=default_correction
            )
        except OutcomesRefused as refused:
            hint = _lost_zeros_hint([i for i in ids if i not in declared], tx.declared_at)
            if not hint:
                raise
            raise OutcomesRefused(refused.problems, refused.n_rows, hint) from refused
        new = checked.new
        tx.insert(
            results_of(new),
            new["declaration_id"].tolist(),
            source,
        )
    counts = {"stored": len(new), "unchanged": checked.unchanged}
    if corrected := int(new[CORRECTION].notna().sum()):
        counts["corrected"] = corrected
    if skip_unknown:
        counts["skipped_unknown"] = skipped
        if name_skipped:
            counts["skipped_unknown_ids"] = skipped_ids
    if not_inspected:
        counts["skipped_not_inspected"] = not_inspected
    return counts | read_once


def skipped_before_store(
    raw: pd.DataFrame, skipped_ids: Sequence[str], first_declared_us: int | None
) -> list[bool]:
    """For each id ``--skip-unknown`` left out, whether its result was inspected before the
    first declaration the store decided (``first_declared_us``, UTC us; None: no decision).

    Such a parcel was declared before the service decided anything: a declaration of the
    history the champion was trained on (a late result of it), which only ``history join``
    onto that history takes; the others were never sent to the service (a fallback lane,
    another hub) or are not known to have been. An unreadable time counts as not before."""
    import pandas as pd

    from features.intake.contract import parse_text

    if first_declared_us is None or not len(skipped_ids) or "inspected_at" not in raw.columns:
        return [False] * len(skipped_ids)
    ids = parse_text(raw["declaration_id"], narrow=True)
    written = raw["inspected_at"]
    if isinstance(written.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(written):
        inspected = pd.to_datetime(written, utc=True)
    else:  # a contract file's text, read as the result rules read it
        inspected = pd.to_datetime(
            written.astype("string"), utc=True, errors="coerce", format="ISO8601"
        )
    first = pd.Timestamp(first_declared_us, unit="us", tz="UTC")
    earliest = (
        pd.Series((inspected < first).to_numpy(dtype=bool), index=ids.to_numpy(dtype=object))
        .groupby(level=0)
        .any()
    )
    return [bool(earliest.get(i, False)) for i in skipped_ids]


def drop_repeated_results(raw: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[int, int, str]]]:
    """``raw`` without the result rows that repeat an earlier one value for value, and each
    dropped one as (its row, the row it repeats, its id).

    A results export joined 1:n (a case's documents) or a row copied lists one result twice;
    refused whole, the file stopped for a row that says nothing new, while ``ingest`` reads a
    repeated declaration once and a result re-sent later "changes nothing" (probe 37). Rows
    that differ in any value stay, for ``check_outcomes`` to refuse naming both. Compared as
    read (after a mapping): the result is what is stored, not the file's other columns."""
    if len(raw) < 2 or "declaration_id" not in raw.columns:
        return raw, []
    as_text = raw.astype("string")  # NaN and None alike, and no unhashable cell
    has_id = raw["declaration_id"].notna().to_numpy(dtype=bool)
    repeated = as_text.duplicated(keep="first").to_numpy(dtype=bool) & has_id
    if not repeated.any():
        return raw, []
    first = as_text.groupby(list(as_text.columns), dropna=False, sort=False).ngroup()
    first_row = {g: p for p, g in reversed(list(enumerate(first.tolist())))}
    dropped = [
        (
            row_number(raw, p),
            row_number(raw, first_row[first.iat[p]]),
            str(raw["declaration_id"].iat[p]),
        )
        for p in np.flatnonzero(repeated)
    ]
    return raw[~repeated], dropped


def ids_with_lost_zeros(
    unknown: Sequence[str],
    known: Iterable[str],
    declared_at: Callable[[list[str]], dict],
    *,
    widths_tried: int = 3,
    sampled: int = 20,
) -> dict[str, str]:
    """The ``unknown`` ids (of digits) that name a decided declaration once written with the
    store's zeros (``72355`` for ``0000072355``; ``0072355`` as well), each with the id the
    store holds.

    Tried at the widths of the digit ids among ``known`` (those of the batch the store
    decided), the most common first; when none is known, at the widths a sample of
    ``unknown`` finds padded (a file none of whose ids kept their zeros). Both sides are
    compared without their leading zeros, so an id that kept some of them is found too.
    ``declared_at`` is asked once, twice for such a sample, whatever the number of ids: a
    national file's thousands of others' parcels are one query, not one each."""
    from collections import Counter

    import pandas as pd

    written = pd.Series(list(dict.fromkeys(unknown)), dtype=object).astype("string")
    written = written[written.str.fullmatch(r"[0-9]+").fillna(False).to_numpy(dtype=bool)]
    if not len(written):
        return {}
    widths = [w for w, _ in Counter(len(k) for k in known if _is_digits(k)).most_common()]
    if not widths:
        sample = written.iloc[:sampled].tolist()
        tried = [i.zfill(n) for i in sample for n in range(len(i) + 1, len(i) + 9)]
        widths = [w for w, _ in Counter(len(k) for k in declared_at(tried)).most_common()]
    if not widths:  # no id of the store's is digits, or none padded: nothing lost its zeros
        return {}
    bare = written.str.lstrip("0").replace("", "0")
    pairs = pd.concat(
        [
            pd.DataFrame({"written": written, "held": bare.str.zfill(width)})[
                (bare.str.len() <= width).to_numpy(dtype=bool)
            ]
            for width in widths[:widths_tried]
        ]
    )
    pairs = pairs[(pairs["held"] != pairs["written"]).to_numpy(dtype=bool)]
    if not len(pairs):
        return {}
    found = declared_at(pairs["held"].unique().tolist())
    pairs = pairs[pairs["held"].isin(list(found)).to_numpy(dtype=bool)]
    return dict(zip(pairs["written"].tolist(), pairs["held"].tolist(), strict=True))


def _declared(store: OutcomeStore, ids: list[str]) -> dict[str, int]:
    with store.write() as tx:
        return tx.declared_at(ids)


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _lost_zeros_problems(
    raw: pd.DataFrame, ids: pd.Series, lost_zeros: dict[str, str]
) -> list[OutcomeProblem]:
    """One refusal per row of ``raw`` whose id (``ids``, as read) is a key of ``lost_zeros``,
    naming the id the store holds and the mapping's way to write the zeros back."""
    problems = []
    for position in np.flatnonzero(ids.isin(list(lost_zeros)).to_numpy(dtype=bool)):
        written = ids.iat[position]
        held = lost_zeros[written]
        if len(held) > len(written):
            lost = f"{written!r} is the store's {held!r} without its leading zeros"
            fix = (
                f"have the mapping write the zeros back (declaration_id: {{column: ..., "
                f"zero_pad: {len(held)}}}) or export the ids as text"
            )
        else:
            lost = f"{written!r} is the store's {held!r} with leading zeros it has not"
            fix = "export the ids as the store writes them"
        problems.append(
            OutcomeProblem(
                row_number(raw, position) - 1,
                written,
                "declaration_id",
                "declaration_id.leading_zeros",
                f"declaration_id: {lost}, a declaration decided here: skipping unknown ids "
                f"leaves out only the results of declarations never decided; {fix}, then "
                "send the file again",
            )
        )
    return problems


def _lost_zeros_hint(
    unknown: list[str], declared_at: Callable[[list[str]], dict], holder: str = "The store"
) -> str:
    """When ids the store does not know are digits whose zero-padded form it does (a results
    file that wrote ids as numbers: 515428 for 000515428), say so: looked up for a few."""
    digits = [i for i in unknown if i.isdigit()][:20]
    padded = {i.zfill(n): i for i in digits for n in range(len(i) + 1, len(i) + 9)}
    found = declared_at(list(padded)) if padded else {}
    if not found:
        return ""
    example = next(p for p in padded if p in found)  # the first of the file's order
    return (
        f"Ids without their leading zeros? {holder} holds {example!r} for {padded[example]!r} "
        f"({len(found)} of the {len(digits)} looked up): the results file wrote the ids as "
        "numbers; export them as text, or have the mapping write the zeros back "
        f"(declaration_id: {{column: ..., zero_pad: {len(example)}}}), then send it again"
    )


def _inspected_only(raw: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``raw`` without the rows an ``inspected`` column says were not inspected, and how many.

    A national results file lists every parcel with its selectivity (``inspected: false`` for
    the green lane) and writes ``illicit = 0`` on all of them; stored, those rows would be
    clean inspections and train the next model as such. A row whose ``inspected`` is empty or
    not a yes/no is refused, naming it, rather than guessed either way.
    """
    import pandas as pd

    from features.intake.contract import parse_bool, parse_text

    if "inspected" not in raw.columns:
        return raw, 0
    flags, bad = parse_bool(raw["inspected"])
    unknown = (bad | flags.isna()).to_numpy(dtype=bool)
    if unknown.any():
        ids = (
            parse_text(raw["declaration_id"], narrow=True)
            if "declaration_id" in raw.columns
            else pd.Series(None, index=raw.index)
        )
        rows = [
            f"row {row_number(raw, i)} ({ids.iloc[i]}): {raw['inspected'].iloc[i]!r}"
            for i in np.flatnonzero(unknown)[:5]
        ]
        raise ParcelriskError(
            f"inspected: {int(unknown.sum())} row(s) say neither yes nor no, so whether they "
            f"hold a result is not known: {'; '.join(rows)}"
        )
    inspected = flags.fillna(False).to_numpy(dtype=bool)
    # the kept rows keep their labels: the results checked next are named by the file's rows
    kept = raw[inspected].drop(columns="inspected")
    return kept, int((~inspected).sum())


def row_number(frame: pd.DataFrame, position: int) -> int:
    """The 1-based row number of ``frame``'s row at ``position``: its label + 1 where the labels
    are the source's row positions (integers), else its position + 1."""
    import pandas as pd

    if pd.api.types.is_integer_dtype(frame.index.dtype):
        return int(frame.index[position]) + 1
    return position + 1


# --------------------------------------------------------------------------------------------
# The way back into training
# --------------------------------------------------------------------------------------------


def result_rows(
    ids: Sequence[str], results: Sequence[StoredResult], source: str
) -> list[tuple[Any, ...]]:
    """The stored values of new results (``serving.audit.chain.RESULT_FIELDS`` order), as
    either store inserts and chains them."""
    from serving.audit.chain import result_values

    return [
        result_values(
            declaration_id,
            iso_utc(result.inspected_at_us),
            result.illicit,
            result.offence_type,
            result.revenue_recovered,
            source,
            result.selection_reason,
            result.correction,
        )
        for declaration_id, result in zip(ids, results, strict=True)
    ]


@dataclass(frozen=True)
class ScoredRow:
    """The first decision of one declaration, with its stored result if any."""

    declaration_json: str
    exploration: bool
    lane: str
    result: StoredResult | None
    scored_at: str = ""  # when first scored, as stored ("": not read)


def selection_reason(exploration: bool, lane: str) -> str:
    """Why a scored parcel that has a result was inspected, from its first decision (when the
    result was stored without a reason of its own)."""
    if exploration:
        return RANDOM_SELECTION
    return MODEL_SELECTION if lane in MODEL_SELECTED_LANES else MANUAL_SELECTION


def results_known_at(rows: Sequence[ScoredRow]) -> list[int | None]:
    """For each row, when its stored result became known to the service, in the
    declarations' clock (UTC us), where that is later than its ``inspected_at``; else None
    (no result, or known from its ``inspected_at``: ``result_known_at`` stays empty).

    A decision counts a result only once the store holds it: a result received days after
    its ``inspected_at`` (a lab report, a weekly file) was not counted by the parcels decided
    meanwhile, and the next model must not learn from features better informed than they were
    served with (probe 23). The store's clock (when a result was received, when a decision was
    scored) is the machine's, not the declarations' (a replay or a simulation scores last
    year's declarations today), so the time goes through the decisions: a result received at
    W was counted by the decisions scored after W, so it is known from the newest
    ``declared_at`` of the decisions scored before W (features count it for parcels declared
    after that). A result received before any decision was scored, or after decisions of
    older declarations only, is known from its ``inspected_at``. A parcel declared before that
    time but scored after the result arrived (a backlog re-sent) counted it when served and is
    exported without it: the history under-counts there, it never counts what was not known."""
    known = [None] * len(rows)
    results = [
        i for i, r in enumerate(rows) if r.result is not None and r.result.known_at_us is not None
    ]
    if not results or any(not r.scored_at for r in rows):
        return known
    scored, declared = _decision_times(rows)
    # a declaration dated after it was scored (a trader's clock ahead; /score allows two days)
    # leaves the frontier where it was: at its own date one such parcel held back every result
    # received while it led, for every entity, and at its scoring time it still did for the
    # parcels declared hours before they are scored (pre-arrival; probe 28). Only that parcel
    # itself may then count a result received after it was scored: its clock was wrong. A
    # replay's declarations all predate their scoring, so this never moves them.
    declared = np.where(declared > scored, np.iinfo(np.int64).min, declared)
    order = np.argsort(scored, kind="stable")
    scored_sorted = scored[order]
    frontier = np.maximum.accumulate(declared[order])  # newest declaration scored so far
    for i in results:
        result = rows[i].result
        assert result is not None and result.known_at_us is not None
        before = int(np.searchsorted(scored_sorted, result.known_at_us, side="left"))
        if before and (newest := int(frontier[before - 1])) > result.inspected_at_us:
            known[i] = newest
    return known


def history_frame(
    rows: Sequence[ScoredRow],
    contract: Contract | None = None,
    known_at: Sequence[int | None] | None = None,
) -> pd.DataFrame:
    """The scored declarations as a contract history frame (declaration + outcome columns,
    and ``contract``'s extras: the stored declarations hold the model's mapped extras).

    A declaration with a result is ``inspected``; its ``selection_reason`` is the one stored
    with the result when it was given (the administration knows which inspections its own
    random quota or legacy rules chose: only it can say); else ``random`` when the exploration
    quota drew it (an unbiased label, as the training code reads it), ``model`` when its first
    decision sent it red or yellow, and ``manual`` when it was inspected although sent green.
    Declarations without a result are not inspected (outcomes null).
    Stored fields neither the contract nor ``contract`` names are refused, naming them: the
    next model would lose them without a word (``unnamed_fields``). A result the service had
    later than its ``inspected_at`` gets that time as ``result_known_at`` (``known_at``: by
    default ``results_known_at(rows)``).
    """
    import pandas as pd

    contract = contract or Contract()
    columns = [*DECLARATION_COLUMNS, *(e.name for e in contract.extras)]
    if known_at is None:
        known_at = results_known_at(rows)
    records = []
    unnamed: set[str] = set()
    for row, known in zip(rows, known_at, strict=True):
        declaration = json.loads(row.declaration_json)
        unnamed.update(declaration.keys() - set(columns))
        record = {name: declaration.get(name) for name in columns}
        result = row.result
        record["inspected"] = result is not None
        if result is not None:
            record["inspected_at"] = iso_utc(result.inspected_at_us)
            record["illicit"] = result.illicit
            record["offence_type"] = result.offence_type
            record["revenue_recovered"] = result.revenue_recovered
            record["result_known_at"] = None if known is None else iso_utc(known)
            record["selection_reason"] = result.selection_reason or selection_reason(
                row.exploration, row.lane
            )
        records.append(record)
    if unnamed:
        raise ParcelriskError(
            f"the stored declarations carry mapped extras ({', '.join(sorted(unnamed))}) the "
            "history's contract does not name: give --contract-from the declarations file they "
            "were ingested into (its extras, with their kinds), or the next model loses them"
        )
    raw = pd.DataFrame(records, columns=[*columns, *OUTCOME_COLUMNS], dtype="object")
    history = coerce_declarations(raw, with_outcomes=True, contract=contract)
    return history.sort_values(["declared_at", "declaration_id"], kind="stable").reset_index(
        drop=True
    )


def join_results(
    declarations: pd.DataFrame,
    results: pd.DataFrame,
    *,
    skip_unknown: bool = False,
    now: datetime | None = None,
    limits: Limits | None = None,
    row_names: Sequence[str] | None = None,
    default_correction: str | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """A history from an administration's declarations (canonical, no results) and its
    inspection results exported apart (``raw``: result fields, one row per result): each
    result checked as ``check_outcomes`` checks one sent to the store (unknown ids, two
    results for one declaration, a result before its declaration, bad codes: all refused,
    every row named), then joined; a declaration without one is not inspected.
    ``skip_unknown``: results of declarations the file does not hold are left out, counted.
    ``row_names``: what a refusal calls the row labelled i of ``results`` (its file and row
    there; ``results`` then labelled 0..n-1); by default ``row`` and its label + 1.
    ``default_correction``: why a row that differs from the result the history holds for its
    declaration replaces it (a row's own ``correction`` wins; without either it is refused).
    A result listed twice value for value (two files of overlapping months, a row copied) is
    read once. Also the counts: results joined, declarations, results skipped."""
    import pandas as pd

    # problems name ``results``' row labels (kept through the skip below)
    where = (lambda row: f"row {row + 1}") if row_names is None else row_names.__getitem__

    ids = declarations["declaration_id"].astype("string")
    declared = declarations["declared_at"]
    micros = (declared - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)
    declared_at_us = dict(zip(ids.tolist(), micros.tolist(), strict=True))
    # rows a results file marks not inspected (a national file lists every parcel with its
    # selectivity) hold no result: left out and counted, as `outcomes ingest` does
    results, repeats = drop_repeated_results(results)
    results, not_inspected = _inspected_only(results)
    skipped = 0
    if skip_unknown and "declaration_id" in results.columns:
        sent = results["declaration_id"].astype("string").str.strip()
        known = sent.isin(declared_at_us.keys()).to_numpy(dtype=bool, na_value=False)
        skipped = int((~known & sent.notna().to_numpy(dtype=bool)).sum())
        results = results.loc[known | sent.isna().to_numpy(dtype=bool)]
        if skipped and not known.any():
            # a history of these declarations with none of their results: a join on the
            # wrong file, or on ids written otherwise (Excel drops leading zeros)
            unknown_ids = sent.dropna().unique().tolist()
            hint = _lost_zeros_hint(
                unknown_ids,
                lambda ids: {i: declared_at_us[i] for i in ids if i in declared_at_us},
                holder="The declarations file",
            )
            raise ParcelriskError(
                f"none of the {skipped} results names a declaration of the file (e.g. "
                f"{unknown_ids[0]!r}), so nothing would be joined"
                + (f". {hint}" if hint else ": are they the results of these declarations?")
            )
    # said of the declarations joined to, not of a store (nothing is stored here)
    unknown = "is not among the declarations (--skip-unknown leaves such results out)"
    # A history that holds results already (the champion's own, to which results came back
    # late: a lab report, a post-clearance audit) takes results for its other declarations;
    # one it holds is compared as a store compares it: the same is unchanged, another is
    # refused unless sent as a correction. It was refused whole, and `history export --base`
    # then wrote those parcels as never inspected (probe 5g).
    held = _held_results(declarations)
    try:
        outcome = check_outcomes(
            results,
            declared_at_us,
            held,
            now=now,
            limits=limits,
            unknown=unknown,
            default_correction=default_correction,
        )
    except OutcomesRefused as exc:
        said = describe_problems(exc.problems, where, nothing="nothing joined")
        raise ParcelriskError(said) from None
    checked = outcome.new
    kept = [c for c in declarations.columns if c not in OUTCOME_COLUMNS]
    history = declarations[kept].merge(
        checked[list(RESULT_FIELDS)].assign(inspected=True),
        on="declaration_id",
        how="left",
        validate="one_to_one",
    )
    # when each joined result reached the risk system, where its file says (an entry time
    # mapped as result_known_at: a lab report entered days later); else from its inspected_at.
    # Dropped here, the entry times of a results file counted from the inspection (probe 28).
    history["result_known_at"] = _known_times(results, history["declaration_id"])
    if held:  # the rows no result was sent for keep the history's own
        before = declarations.set_index(ids.to_numpy())
        keep_own = ~history["declaration_id"].isin(checked["declaration_id"]).to_numpy()
        for column in OUTCOME_COLUMNS:
            if column in before.columns:
                own = before[column].reindex(history["declaration_id"])
                own.index = history.index
                history[column] = own.where(keep_own, history[column])
    history["inspected"] = history["inspected"].astype("boolean").fillna(False)
    counts = {
        "declarations": len(history),
        "results_joined": len(checked),
        "results_skipped_unknown": skipped,
    }
    if not_inspected:
        counts["results_skipped_not_inspected"] = not_inspected
    if repeats:
        counts["results_repeated_read_once"] = len(repeats)
    if held:
        counts["results_held_before"] = len(held)
        counts["results_unchanged"] = outcome.unchanged
        if corrected := int(checked[CORRECTION].notna().sum()):
            counts["results_corrected"] = corrected
    return history[[*kept, *OUTCOME_COLUMNS]].reset_index(drop=True), counts


def _known_times(results: pd.DataFrame, ids: pd.Series) -> pd.Series:
    """Each of ``ids``' ``result_known_at`` as ``results`` (a results file, one row per
    declaration once checked) gives it; NaT where it gives none."""
    import pandas as pd

    none = pd.Series(pd.NaT, index=ids.index, dtype="datetime64[us, UTC]")
    if "result_known_at" not in results.columns or "declaration_id" not in results.columns:
        return none
    given = results[["declaration_id", "result_known_at"]].dropna()
    if given.empty:
        return none
    known = pd.to_datetime(given["result_known_at"], utc=True).astype("datetime64[us, UTC]")
    by_id = pd.Series(known.to_numpy(), index=given["declaration_id"].astype("string").str.strip())
    by_id = by_id[~by_id.index.duplicated(keep="last")]
    return pd.Series(
        ids.astype("string").map(by_id).to_numpy(), index=ids.index, dtype="datetime64[us, UTC]"
    )


def _held_results(declarations: pd.DataFrame) -> dict[str, StoredResult]:
    """The results a history holds already (inspected, with a time and a verdict), by id."""
    if "inspected" not in declarations.columns:
        return {}
    held = declarations["inspected"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    held &= declarations["inspected_at"].notna().to_numpy(dtype=bool)
    held &= declarations["illicit"].notna().to_numpy(dtype=bool)
    if not held.any():
        return {}
    rows = declarations.loc[held, list(RESULT_FIELDS)]
    ids = rows["declaration_id"].astype("string").tolist()
    return dict(zip(ids, results_of(rows), strict=True))
