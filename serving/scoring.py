"""The one scoring code path, shared by the HTTP service and offline file scoring.

declarations (canonical frame) -> online features -> one predict call -> lanes -> reasons for
red/yellow (TreeSHAP on those rows only) -> one decision record per row (``serving.decision``).
Everything is vectorised per batch; only the few rows that need reasons are explained.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from features.errors import ParcelriskError
from features.intake.columns import RecordColumns, columns_of, frame_records
from features.intake.rules import Findings, Limits, Rule, check, check_records, rules_for
from features.notes import (
    EXTRA_BEYOND_TRAINING,
    LANE_AEO_FACILITATION,
    LANE_EXPLORATION,
    LANE_IMPLAUSIBLE,
    LANE_UNVALUED_CURRENCY,
    UNCLASSIFIED,
    RowNote,
)
from serving.audit.archived import since_with_archive
from serving.auth import Caller
from serving.decision import DecisionRecord, features_for_storage
from serving.lanes import (
    assign_lanes,
    exploration_note,
    facilitation_notes,
    implausible_note,
    implausible_rows,
    unvalued_rows,
)
from serving.reasons import Reason, explain_decisions

if TYPE_CHECKING:
    import pandas as pd

    from features.intake.columns import FrameColumns
    from features.intake.contract import Contract
    from features.params import ServeParams, Settings
    from features.pipeline.live import LiveState
    from features.pipeline.online import OnlineFeatures
    from models.bundle import LaneThresholds, RiskModel
    from serving.outcome_store import SqliteOutcomeStore
    from serving.outcomes import ResultEvent
    from serving.postgres_store import PostgresOutcomeStore
    from serving.store import DecisionStore

logger = logging.getLogger(__name__)

UNVALIDATED_WARNING = "scored without the validation gate (--no-validate)"
# Decisions read from the log per step of a replay: bounded memory however long the log.
REPLAY_PAGE = 20_000


@dataclass
class ScoringRuntime:
    """A loaded champion: model, the online feature function bound to its entity state, config."""

    model: RiskModel
    # declarations -> (online features, [(row, warning, code)])
    compute_features: Callable[
        [pd.DataFrame | FrameColumns | RecordColumns],
        tuple[OnlineFeatures, list[RowNote]],
    ]
    model_name: str
    model_version: str
    config: ServeParams
    run_id: str | None = None
    # SHA-256 of the model's bundle.json: with run_id, what each decision records of its model
    bundle_sha256: str = ""
    # the pseudonym key id the entity state (and so every request) is keyed with: recorded with
    # each decision
    pseudonym_key_id: str = ""
    contract: Contract | None = None  # extras the model's features use (from the entity state)
    # those of the contract's extras the model's features read (None: all): only these are
    # warned when a declaration leaves them out
    extras_read: frozenset[str] | None = None
    # each of the model's features -> the declaration fields it reads (a reason names the one
    # a parcel left empty, ``EntityState.inputs_of``)
    features_inputs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The declaration rules (features.intake.rules), built once: faults refuse a declaration before
    # scoring, warnings travel with its decision.
    fault_rules: list[Rule] = field(default_factory=list)
    warning_rules: list[Rule] = field(default_factory=list)
    limits: Limits | None = None
    # The live entity state behind compute_features (None: features from the snapshot alone)
    # and the last decision-store sequence appended to it (catch_up).
    live: LiveState | None = None
    log_seq: int = 0
    results_seq: int = 0  # the last inspection result (outcomes table) appended to it
    _replayed: bool = field(default=False, repr=False)  # the first catch_up replays the log
    model_dir: Path | None = None  # where its files were downloaded (removed when replaced)
    _catch_up_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _recorded: list[ScoredBatch] = field(default_factory=list, repr=False)
    _own_texts: set[str] = field(default_factory=set, repr=False)  # recorded, not yet read back
    # Numeric extras (feature name -> (extra, the largest magnitude of the model's reference
    # traffic)): a value far beyond it is warned (``beyond_training_warnings``)
    extra_ranges: dict[str, tuple[str, float]] = field(default_factory=dict)
    # The lane cut-offs in force: the model's, until a new thresholds version is set on the
    # running champion (``install_thresholds``). A batch reads this once (``score_frame``), so
    # its lanes and its records never mix two versions.
    thresholds: LaneThresholds = field(default=None, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.thresholds is None:
            self.thresholds = self.model.thresholds

    def install_thresholds(self, thresholds: LaneThresholds) -> None:
        """Put another thresholds version in force from the next batch on, model unchanged."""
        from models.lane_versions import check_applies

        check_applies(thresholds, self.model.thresholds)
        self.thresholds = thresholds  # one assignment: a batch has read the old or the new

    @property
    def model_ref(self) -> dict[str, str]:
        return {"name": self.model_name, "version": self.model_version}

    def lane_policy(self) -> dict[str, Any]:
        """``ServeParams.lane_policy`` and, when implausible numbers raise a lane, the bounds
        that judged them: what an auditor needs to recompute the lane (``audit recompute``)."""
        policy = self.config.lane_policy()
        if self.limits is not None and self.config.implausible_lane != "green":
            policy["plausible_bounds"] = self.limits.bounds()
            # a currency without a rate raises the lane too (probe 14); decisions recorded
            # before it did lack the key, and recompute leaves such rows as they were
            policy["unvalued_currency"] = True
        return policy

    def catch_up(
        self, store: DecisionStore, results: SqliteOutcomeStore | PostgresOutcomeStore | None = None
    ) -> int:
        """Append to the live state what was decided since the last call: this worker's own
        recorded batches (``recorded``) and, from the store, every worker's decisions (this
        one's are skipped: a declaration enters once); then the inspection results stored since
        (``results``), at their ``inspected_at``. Call it before scoring a batch.

        The first call replays the store from the snapshot's cutoff on (``replay``): a new
        worker, or a new champion whose snapshot is younger than the log, starts from
        everything the system has seen since the snapshot was cut.
        Returns how many declarations were new to the live state."""
        if self.live is None:
            return 0
        with self._catch_up_lock:
            if not self._replayed:
                return self._replay(store, results)
            added = self._catch_up_decisions(store)
            if results is not None:
                self._catch_up_results(results, store)
            return added

    def _replay(
        self, store: DecisionStore, results: SqliteOutcomeStore | PostgresOutcomeStore | None
    ) -> int:
        """The log from the live state's ``replay_from_us`` on (the snapshot's last declaration,
        less the days late entries may come from), in pages: declarations declared since, then
        results recorded since (what the snapshot may not hold: the live state skips what it
        does, by id for the late-entry span)."""
        assert self.live is not None
        cutoff = self.live.replay_from_us
        # everything up to the head is read below (rows failing the time filter are skipped)
        head = store.last_seq()
        added = 0
        # the archived days too: an archive may have moved days past the snapshot's cutoff
        while rows := since_with_archive(store, self.log_seq, cutoff, REPLAY_PAGE):
            added += self._append_logged(rows)
            self.log_seq = rows[-1][0]
        self.log_seq = max(self.log_seq, head)
        if results is not None:
            self._catch_up_results(results, store, inspected_from_us=cutoff)
        self._replayed = True
        return added

    def _catch_up_results(
        self,
        results: SqliteOutcomeStore | PostgresOutcomeStore,
        store: DecisionStore,
        inspected_from_us: int | None = None,
    ) -> None:
        """``store``: the decisions, whose archive holds the declarations of results whose
        days were archived."""
        assert self.live is not None
        head = results.last_seq() if inspected_from_us is not None else 0
        if inspected_from_us is not None:  # the replay of a new snapshot
            rows = results_to_replay(
                results, inspected_from_us, self.live.snapshot.results_seq, store
            )
        else:
            rows = results.results_since(self.results_seq, decisions=store)
        if rows:
            self.live.append_outcomes(*outcome_events(rows, self.contract))
            self.results_seq = rows[-1][0]
        self.results_seq = max(self.results_seq, head)

    def _catch_up_decisions(self, store: DecisionStore) -> int:
        assert self.live is not None
        added = 0
        while self._recorded:
            batch = self._recorded.pop(0)
            added += self.live.append(batch.declarations, batch.features.prep)
        rows = store.since(self.log_seq)
        if not rows:
            return added
        added += self._append_logged(rows)
        self.log_seq = rows[-1][0]
        return added

    def _append_logged(self, rows: list[tuple[int, str]]) -> int:
        """Append the declarations of logged decisions that are new to the live state."""

        from features.intake.columns import StoredColumns

        assert self.live is not None
        # this worker's rows are known by their exact stored text: no JSON to parse
        own = self._own_texts
        others = []
        for seq, text in rows:
            if text in own:
                own.discard(text)
                continue
            # every sibling worker's decision passes here: orjson reads one in ~3 us, json.loads
            # in ~11; the stored JSON is canonical, so it is not validated again (~10 us more)
            values = read_stored(text)
            if values is None:
                damaged_in_log(f"decision seq {seq}")
                continue
            others.append(values)
        if others:  # those appended already (a re-sent declaration) not read into columns
            ids = np.array([v.get("declaration_id") for v in others], dtype=object)
            seen = self.live.seen_ids.among(ids)
            others = [v for v, known in zip(others, seen.tolist(), strict=True) if not known]
        if not others:
            return 0
        return self.live.append(StoredColumns(others, self.contract))

    def recorded(self, batch: ScoredBatch, records: list[DecisionRecord]) -> None:
        """A batch this worker scored is in the store (as ``records``): the next ``catch_up``
        appends it from its prepared arrays, and skips its rows when it reads the store."""
        if self.live is not None:
            self._own_texts.update(r.declaration_json for r in records)
            self._recorded.append(batch)

    def observe(self, batch: ScoredBatch) -> None:
        """Append a scored batch to the live state at once (offline scoring, one process)."""
        if self.live is not None:
            self.live.append(batch.declarations, batch.features.prep)


def damaged_in_log(what: str) -> None:
    """A logged declaration edited outside the service into something that does not read
    (NOT INTACT: `audit verify` names it) is left out of the live state, said in the log: one
    damaged record kept every worker from loading its champion (probe 12). The audit's
    replay (``serving.audit.recompute``) leaves it out the same way."""
    logger.error(
        "%s: its stored declaration cannot be read (edited outside the service, NOT INTACT): "
        "left out of the live entity state; run `parcelrisk audit verify`",
        what,
    )


def read_stored(text: str) -> dict[str, Any] | None:
    """A stored declaration's values, None for one that does not read (``damaged_in_log``)."""
    import orjson

    try:
        values = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return values if isinstance(values, dict) else None


def readable(texts: list[str]) -> list[dict[str, Any] | None]:
    """``read_stored`` of each text."""
    return [read_stored(text) for text in texts]


def outcome_events(
    rows: list[ResultEvent], contract: Any
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``LiveState.append_outcomes``'s arguments for stored results: one event per result, and
    for a correction a second one taking back the result it replaced (at that one's time,
    sign -1, the correction's seq: see ``append_outcomes``)."""
    from features.intake.columns import StoredColumns

    texts, times, illicit, revenue, seqs, signs = [], [], [], [], [], []

    def event(text: str, t: int, hit: bool, euros: float | None, seq: int, sign: int) -> None:
        texts.append(text)
        times.append(t)
        illicit.append(hit)
        revenue.append(np.nan if euros is None else euros)
        seqs.append(seq)
        signs.append(sign)

    parsed = readable([r.declaration_json for r in rows])  # as stored: canonical
    declarations = []
    for r, values in zip(rows, parsed, strict=True):
        if values is None:  # its declaration's record was damaged: the result has no entities
            damaged_in_log(f"the decision of result seq {r.seq}")
            continue
        event(r.declaration_json, r.inspected_at_us, r.illicit, r.revenue_recovered, r.seq, 1)
        declarations.append(values)
        if (old := r.replaces) is not None:
            event(r.declaration_json, old.inspected_at_us, old.illicit, old.revenue_recovered,
                  r.seq, -1)  # fmt: skip
            declarations.append(values)
    cents = np.round(np.nan_to_num(np.array(revenue, dtype=float), nan=0.0) * 100)
    return (
        StoredColumns(declarations, contract),
        np.array(times, dtype=np.int64),
        np.array(illicit, dtype=bool),
        cents.astype(np.int64),  # as prepare
        np.array(seqs, dtype=np.int64),
        np.array(signs, dtype=np.int64),
    )


QUOTA_TOLERANCE = 0.9  # serve.exploration_rate below this share of the history's: a warning


def load_runtime(settings: Settings, tracking_uri: str | None, model_dir: Path) -> ScoringRuntime:
    """Load the champion and its entity-state snapshot; refuse anything inconsistent.

    ``settings.serve`` says which model and how to lane; ``settings.validation`` sets the
    plausibility limits of the rules (the currency table is the model's own, from its state).
    """
    from features.intake.contract import fold_online
    from features.intake.pseudonym import require_same_key
    from features.pipeline.live import LiveState
    from features.pipeline.snapshot import EntityState
    from models.registry import load_champion, version_artifact_error

    config = settings.serve
    model, state_dir, info = load_champion(
        tracking_uri, name=config.model_name, alias=config.model_alias, dst=Path(model_dir)
    )
    try:
        state = EntityState.load(state_dir)
    except ParcelriskError as exc:
        raise version_artifact_error(
            info["name"], info["version"], info["run_id"], state_dir, exc
        ) from None
    # before anything else: under another key no consignee would find its history
    require_same_key(state.pseudonym_key_id, f"entity state {state_dir}")
    expected = model.metadata.get("entity_state_fingerprint")
    if expected is None or expected != state.fingerprint:
        raise ParcelriskError(
            f"entity-state snapshot {state_dir} (fingerprint {state.fingerprint}) does not "
            f"match the model {info.get('name')} v{info.get('version')} (expects {expected})"
        )
    # The model may use a subset of the manifest (features constant at training are dropped);
    # the snapshot must match the manifest its features were built with.
    built_with = model.metadata.get("feature_manifest_fingerprint", model.manifest.fingerprint)
    if state.manifest.fingerprint != built_with:
        raise ParcelriskError(
            f"feature manifest of the entity state ({state.manifest.fingerprint}) differs from "
            f"the model's ({built_with}): rebuild features or promote again"
        )
    fitted_with = model.thresholds.aeo_discount
    if model.thresholds.fitted_on and fitted_with != config.aeo_risk_discount:
        logger.warning(
            "serve.aeo_risk_discount %.4g is not the %.4g lane thresholds %s were fitted with: "
            "the lanes will not hold their configured shares (set them again: `parcelrisk "
            "lanes set`)",
            config.aeo_risk_discount,
            fitted_with,
            model.thresholds.version,
        )
    history_rate = model.metadata.get("history_exploration_rate")
    if (
        history_rate
        # the share a quota drew in a history scatters around the quota (2.513% of 300k
        # parcels at 2.5%): warn only clearly below it
        and config.exploration_rate < QUOTA_TOLERANCE * history_rate
        and not model.metadata.get("inspection_census")
    ):
        logger.warning(
            "serve.exploration_rate %.4g is below the %.4g random quota model %s v%s was trained "
            "with: offences no rule targets will get fewer labels for the next model",
            config.exploration_rate,
            history_rate,
            info.get("name"),
            info.get("version"),
        )
    if model.metadata.get("inspection_census") and config.exploration_rate > 0:
        logger.info(
            "exploration off: model %s v%s was trained on a census (every parcel inspected), "
            "so every parcel gets an inspection result anyway",
            info.get("name"),
            info.get("version"),
        )
        config = config.replace(exploration_rate=0.0)

    # a file or a request must hold the extras the model reads, not those only its build did
    state.extras_read = state.read_by(model.manifest.names)
    state.features_inputs = state.inputs_of(model.manifest.names)
    # the fields its history was read with fold: true, folded in every request validated here
    fold_online(state.contract.folded if state.contract is not None else ())
    # every declaration scored from now on (catch_up, observe) enters the entity state
    live = LiveState(state)
    live.release_snapshot_copies()  # a served snapshot is never saved

    def compute(
        declarations: pd.DataFrame | FrameColumns | RecordColumns,
    ) -> tuple[OnlineFeatures, list[RowNote]]:
        warnings: list[RowNote] = []
        features = live.features(declarations, warnings)
        return features, warnings

    limits = Limits.from_params(settings.validation, state.params)
    rules = rules_for(limits, with_outcomes=False, contract=state.contract)
    return ScoringRuntime(
        extra_ranges=extra_ranges(model, state.contract),
        model=model,
        compute_features=compute,
        model_name=str(info.get("name", config.model_name)),
        model_version=str(info.get("version", "?")),
        config=config,
        run_id=info.get("run_id"),
        bundle_sha256=str(info.get("bundle_sha256") or ""),
        pseudonym_key_id=state.pseudonym_key_id or "",
        contract=state.contract,
        extras_read=frozenset(state.extras_read),
        features_inputs=state.features_inputs,
        fault_rules=[r for r in rules if r.severity == "fault"],
        warning_rules=[r for r in rules if r.severity == "warning"],
        limits=limits,
        live=live,
        model_dir=Path(model_dir),
    )


# A numeric extra this many times beyond the largest the model learnt from is warned: a unit
# or decimal error (1e300 of taxes moved the revenue at stake 300-fold, unsaid; probe 9)
BEYOND_TRAINING = 1_000.0


def extra_ranges(model: RiskModel, contract: Contract | None) -> dict[str, tuple[str, float]]:
    """``ScoringRuntime.extra_ranges`` of a model: its numeric extras' features whose reference
    (the traffic it was judged on) holds a value other than 0."""
    from features.families.extras import PREFIX

    reference = model.reference
    if reference is None or contract is None:
        return {}
    known = {f.name: f for f in reference.features}
    out = {}
    for extra in contract.extras:
        ref = known.get(f"{PREFIX}{extra.name}")
        if extra.kind != "numeric" or ref is None or not ref.percentiles:
            continue
        largest = max(abs(ref.percentiles[0]), abs(ref.percentiles[-1]))
        if largest > 0 and math.isfinite(largest):
            out[ref.name] = (extra.name, largest)
    return out


def beyond_training_warnings(
    features: OnlineFeatures, ranges: dict[str, tuple[str, float]]
) -> list[RowNote]:
    """Notes (row, warning, code) for each numeric extra over ``BEYOND_TRAINING`` times the largest the
    model learnt from: trees score it as the largest, whatever it is."""
    from features.pipeline.prepare import MAX_VALUE_EUR

    def shown(value: float) -> str:
        # an amount's feature is held at MAX_VALUE_EUR: 1e12 was said as "1e+10" (probe 27)
        return f"{value:.4g}" if abs(value) != MAX_VALUE_EUR else f"{value:.4g} or more"

    notes = []
    for name, (extra, largest) in ranges.items():
        values = np.asarray(features.values.get(name, ()), dtype=np.float64)
        with np.errstate(invalid="ignore"):
            far = np.flatnonzero(np.abs(values) > BEYOND_TRAINING * largest)
        notes += [
            RowNote(
                int(i),
                f"{extra}: {shown(values[i])} is over {BEYOND_TRAINING:,.0f} times the largest "
                f"the model learnt from ({largest:,.4g}): a unit or decimal error? It is scored "
                "as the largest",
                EXTRA_BEYOND_TRAINING,
            )
            for i in far.tolist()
        ]
    return notes


def check_request(records: list[Any], runtime: ScoringRuntime) -> Findings:
    """The fault rules over one request's validated declarations (before it is scored)."""
    return check_records(records, runtime.contract, runtime.fault_rules)


@dataclass
class ScoredBatch:
    """Everything decided for one batch, row-aligned with the input declarations."""

    declarations: FrameColumns | RecordColumns
    features: OnlineFeatures
    X: np.ndarray
    declaration_ids: list[str]
    decision_ids: list[str]
    scores: dict[str, np.ndarray]  # raw, risk, expected_revenue, priority
    lanes: np.ndarray
    exploration: np.ndarray
    reasons: list[list[Reason]]
    warnings: list[list[str]]
    scored_at: str
    # the stable code of each warning, row by row and in the same order (``features.notes``)
    warning_codes: list[list[str]] = field(default_factory=list)
    # What the live state held when the features were computed: the decision log up to this
    # seq and the inspection results up to that one (``DecisionRecord.known_seq``), so an
    # auditor can rebuild it (``parcelrisk audit recompute``).
    known_seq: int = 0
    known_results_seq: int = 0
    thresholds_version: str = ""  # the cut-offs its lanes were assigned with

    def __len__(self) -> int:
        return len(self.decision_ids)

    def warn(self, row: int, code: str, text: str) -> None:
        """One more warning on a row, with its stable code (``features.notes``)."""
        if not self.warning_codes:  # a batch made without codes (tests, old callers)
            self.warning_codes = [[UNCLASSIFIED] * len(w) for w in self.warnings]
        self.warnings[row].append(text)
        self.warning_codes[row].append(code)


def new_decision_ids(n: int) -> list[str]:
    """Random 128-bit ids (hex), unique per decision even when a declaration is re-scored."""
    raw = os.urandom(16 * n).hex()
    return [raw[i : i + 32] for i in range(0, 32 * n, 32)]


class _Warnings:
    """A batch's warnings row by row, each with its stable code (``features.notes``)."""

    def __init__(self, n: int) -> None:
        self.texts: list[list[str]] = [[] for _ in range(n)]
        self.codes: list[list[str]] = [[] for _ in range(n)]

    def add(self, row: int, code: str, text: str) -> None:
        if 0 <= row < len(self.texts):
            self.texts[row].append(str(text))
            self.codes[row].append(code)


def score_frame(
    declarations: pd.DataFrame | FrameColumns | RecordColumns,
    runtime: ScoringRuntime,
    *,
    reasons_for_all: bool = False,
) -> ScoredBatch:
    """Score a canonical declarations frame (``features.intake.contract.coerce_declarations``) or
    validated API models (``RecordColumns``)."""
    declarations = columns_of(declarations)
    n = len(declarations)
    # read before the features: a catch-up racing this batch can only add to what it saw
    known = (runtime.log_seq, runtime.results_seq)
    features, feature_warnings = runtime.compute_features(declarations)
    if runtime.extra_ranges:
        feature_warnings += beyond_training_warnings(features, runtime.extra_ranges)
    notes = _Warnings(n)
    for row, text, *code in feature_warnings:  # a (row, text) pair from an older producer
        notes.add(int(row), code[0] if code else UNCLASSIFIED, text)
    implausible = None
    unvalued = np.zeros(n, dtype=bool)
    if runtime.warning_rules:
        found = (
            check_records(declarations.records, declarations.contract, runtime.warning_rules)
            if isinstance(declarations, RecordColumns)
            else check(declarations, runtime.warning_rules)
        )
        for row, coded in found.coded_messages_by_row("warning").items():
            for code, message in coded:  # a rule's warning: its name is its code
                notes.add(row, code, message)
        unvalued = unvalued_rows(found)
        implausible = implausible_rows(found) | unvalued  # both raise the lane (lanes.py)
    if len(features) != n:
        raise ParcelriskError(f"online features returned {len(features)} rows for {n}")
    model = runtime.model
    thresholds = runtime.thresholds  # once: a set installed meanwhile waits for the next batch
    X = model.manifest.matrix_of(features.values, len(features))
    scores = model.score(X)
    decision_ids = new_decision_ids(n)
    declaration_ids = declarations.text("declaration_id").tolist()
    aeo = declarations.numbers("aeo_operator") == 1.0
    lanes, exploration = assign_lanes(
        scores["priority"], aeo, declaration_ids, thresholds, runtime.config, implausible
    )
    if implausible is not None and implausible.any() and runtime.config.implausible_lane != "green":
        plain, _ = assign_lanes(
            scores["priority"], aeo, declaration_ids, thresholds, runtime.config
        )
        for row in np.flatnonzero(implausible & (plain != lanes)).tolist():
            notes.add(
                row,
                LANE_UNVALUED_CURRENCY if unvalued[row] else LANE_IMPLAUSIBLE,
                implausible_note(str(lanes[row]), unvalued=bool(unvalued[row])),
            )
    if exploration.any():  # a lane the draw raised says so (about 1 row in 100)
        undrawn = runtime.config.model_copy(update={"exploration_rate": 0.0})
        without, _ = assign_lanes(
            scores["priority"], aeo, declaration_ids, thresholds, undrawn, implausible
        )
        rate = runtime.config.exploration_rate
        for row in np.flatnonzero(exploration & (without != lanes)).tolist():
            notes.add(
                row, LANE_EXPLORATION, exploration_note(str(lanes[row]), str(without[row]), rate)
            )
    for row, note in facilitation_notes(
        scores["priority"], aeo, lanes, thresholds, runtime.config
    ).items():
        notes.add(row, LANE_AEO_FACILITATION, note)
    reasons: list[list[Reason]] = [[] for _ in range(n)]
    explain = np.arange(n) if reasons_for_all else np.flatnonzero(lanes != "green")
    if len(explain):
        contrib = model.contributions(X[explain])
        rows = explain_decisions(
            contrib,
            X[explain],
            {name: values[explain] for name, values in features.context.items()},
            model.manifest,
            top_k=runtime.config.reasons_per_decision,
            inputs_of=runtime.features_inputs,
        )
        for i, r in zip(explain.tolist(), rows, strict=True):
            reasons[i] = r
    return ScoredBatch(
        declarations=declarations,
        features=features,
        X=X,
        declaration_ids=declaration_ids,
        decision_ids=decision_ids,
        scores=scores,
        lanes=lanes,
        exploration=exploration,
        reasons=reasons,
        warnings=notes.texts,
        warning_codes=notes.codes,
        scored_at=datetime.now(UTC).isoformat(timespec="microseconds"),
        known_seq=known[0],
        known_results_seq=known[1],
        thresholds_version=thresholds.version,
    )


def declarations_as_json(declarations: pd.DataFrame) -> list[str]:
    """One JSON object per row (ISO-8601 UTC timestamps, null for missing): ``frame_records``
    encoded, the text the decision store keeps."""
    import json

    return [json.dumps(row, default=str) for row in frame_records(declarations)]


def decision_records(
    batch: ScoredBatch,
    runtime: ScoringRuntime,
    declarations_json: list[str] | None = None,
    *,
    callers: Sequence[Caller | None] | None = None,
) -> list[DecisionRecord]:
    """The decision record of each row of the batch: every view of a decision reads these.

    ``declarations_json``: the declarations already as stored JSON (``models_as_json``), else
    they are serialised from the batch's frame. ``callers``: who sent each row (the service's
    requests; None offline).
    """
    if declarations_json is None:
        declarations_json = declarations_as_json(batch.declarations.frame())
    import json

    fingerprint = runtime.model.manifest.fingerprint
    thresholds_version = batch.thresholds_version or runtime.thresholds.version
    lane_policy = json.dumps(runtime.lane_policy(), sort_keys=True)
    features = features_for_storage(batch.X)
    declaration_ids = batch.declaration_ids
    raw = batch.scores["raw"].tolist()
    risk = batch.scores["risk"].tolist()
    revenue = batch.scores["expected_revenue"].tolist()
    lanes = batch.lanes.tolist()
    exploration = batch.exploration.tolist()
    nobody = Caller("")
    who = [c or nobody for c in callers] if callers is not None else [nobody] * len(batch)
    return [
        DecisionRecord(
            decision_id=batch.decision_ids[i],
            scored_at=batch.scored_at,
            declaration_id=declaration_ids[i],
            declaration_json=declarations_json[i],
            features=features[i],
            manifest_fingerprint=fingerprint,
            model_name=runtime.model_name,
            model_version=runtime.model_version,
            thresholds_version=thresholds_version,
            lane_policy=lane_policy,
            raw_score=raw[i],
            risk=risk[i],
            expected_revenue=revenue[i],
            lane=lanes[i],
            exploration=exploration[i],
            reasons=[r.as_dict() for r in batch.reasons[i]],
            warnings=batch.warnings[i],
            warning_codes=batch.warning_codes[i] if batch.warning_codes else [],
            request_id=who[i].request_id,
            api_key_id=who[i].api_key_id,
            known_seq=batch.known_seq,
            known_results_seq=batch.known_results_seq,
            model_run_id=runtime.run_id or "",
            model_bundle_sha256=runtime.bundle_sha256,
            pseudonym_key_id=runtime.pseudonym_key_id,
        )
        for i in range(len(batch))
    ]


def results_frame(records: list[DecisionRecord], priority: np.ndarray) -> pd.DataFrame:
    """Offline output: one row per decision, reasons and warnings as JSON text.

    ``priority``: what the lanes ranked on (``RiskModel.score``), row-aligned with ``records``;
    it is not part of a stored decision.
    """
    import json

    import pandas as pd

    return pd.DataFrame(
        {
            "declaration_id": [r.declaration_id for r in records],
            "decision_id": [r.decision_id for r in records],
            "risk": np.array([r.risk for r in records], dtype=np.float64),
            "expected_revenue": np.array([r.expected_revenue for r in records], dtype=np.float64),
            "priority": priority,
            "lane": np.array([r.lane for r in records], dtype=str),
            "exploration": np.array([r.exploration for r in records], dtype=bool),
            # as text, not \u escapes: an officer reading the file saw '\u5b50\u70df' where
            # /score says '子烟' (probe 39, 8)
            "reasons": [json.dumps(r.reasons, ensure_ascii=False) for r in records],
            "warnings": [json.dumps(r.warnings, ensure_ascii=False) for r in records],
            "warning_codes": [json.dumps(r.codes_of_warnings) for r in records],
            "model_name": [r.model_name for r in records],
            "model_version": [r.model_version for r in records],
            "thresholds_version": [r.thresholds_version for r in records],
        }
    )


def score_file(
    source: Path,
    out: Path,
    runtime: ScoringRuntime,
    *,
    chunk_size: int = 1000,
    store: DecisionStore | None = None,
    results: Any = None,
    progress: bool = True,
    unvalidated: bool = False,
) -> dict[str, Any]:
    """Score a CSV/Parquet declarations file in chunks through ``score_frame``; write atomically.
    ``store``: the decision store decisions are recorded in and the live state reads;
    ``results``: its inspection results (``open_outcome_store``), which the live state reads
    too, as the service's catch-up does.

    The file must have passed the gate (``features.intake.validation.require_valid``); with
    ``unvalidated`` (``--no-validate``) every decision says it was not.
    """
    import pandas as pd
    from tqdm import tqdm

    from features.intake.io import atomic_write, read_declarations, spreadsheet_safe

    out = Path(out)
    suffix = out.suffix.lower()
    # refused before anything is scored or recorded: a bad name must not leave decisions behind
    if suffix not in (".parquet", ".pq", ".csv"):
        raise ParcelriskError(f"--out {out}: use a .csv or .parquet file name")
    declarations, _ = read_declarations(Path(source), with_outcomes=False)
    if len(declarations) == 0:
        raise ParcelriskError(f"{source}: no declarations to score")
    # Chunks in declaration time order, each appended to the live state once scored: every
    # declaration sees those of the file declared before it, whatever the chunk size. The
    # output keeps the file's row order.
    order = np.lexsort(
        (declarations["declaration_id"].to_numpy(str), declarations["declared_at"].to_numpy())
    )
    declarations = declarations.iloc[order]
    parts: list[pd.DataFrame] = []
    filled: dict[str, int] = {}  # model feature -> declarations that gave it a value
    # who asked, as the service records a request and its key: this run of `score` and the
    # account that ran it (probe 12: 1,500 offline decisions said "asked by request - api key -")
    import getpass
    import uuid

    try:
        account = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        account = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    caller = Caller(
        f"score-{uuid.uuid4().hex[:16]}:{Path(source).name}"[:200], f"offline:{account}"
    )
    with tqdm(total=len(declarations), unit="parcel", disable=not progress, desc="scoring") as bar:
        for start in range(0, len(declarations), chunk_size):
            chunk = declarations.iloc[start : start + chunk_size].reset_index(drop=True)
            if store is not None:  # what was known: the log and results, as the service's
                runtime.catch_up(store, results)
            batch = score_frame(chunk, runtime)
            given = np.isfinite(batch.X).sum(axis=0)
            for name, n in zip(runtime.model.manifest.names, given.tolist(), strict=True):
                filled[name] = filled.get(name, 0) + n
            if unvalidated:
                for row in batch.warnings:
                    row.append(UNVALIDATED_WARNING)
            records = decision_records(batch, runtime, callers=[caller] * len(batch))
            priority = batch.scores["priority"]
            # the next chunks see this one: results do not depend on the chunk size
            if store is not None:
                # a file scored again (a re-run after a failure half-way) gets the decisions
                # stored for its declarations by this model version, as the service answers a
                # retry: one decision per declaration in the store
                taken = store.record(records, first_wins=True)
                runtime.recorded(batch, records)
                if taken:
                    keys = [(r.declaration_id, r.declaration_json) for r in records]
                    ours = [r.decision_id for r in records]
                    records = [taken.get(k, r) for k, r in zip(keys, records, strict=True)]
                    # what the lanes ranked on is not stored: unknown for a decision taken
                    # back (not for one of ours the store found amended)
                    back = [r.decision_id != d for r, d in zip(records, ours, strict=True)]
                    priority = np.where(back, np.nan, priority)
            else:
                runtime.observe(batch)
            parts.append(results_frame(records, priority))
            bar.update(len(chunk))
    result = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(result):
        result = result.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
    if suffix == ".csv":  # opened in a spreadsheet: no cell runs as a formula
        atomic_write(out, lambda tmp: spreadsheet_safe(result).to_csv(tmp, index=False))
    else:
        atomic_write(out, lambda tmp: result.to_parquet(tmp, index=False))
    empty = evidence_missing_throughout(declarations, filled, runtime)
    if empty:
        logger.warning(
            "%s missing (or a code the model never saw) on every one of the %d declarations "
            "scored, though the model's training traffic held it on most parcels: scored with "
            "priors in its place for all of them (a feed without the field, or a mapping "
            "reading a column only the history fills); the risks are the model's without that "
            "evidence",
            ", ".join(empty),
            len(declarations),
        )
    lanes = result["lane"].value_counts().to_dict() if len(result) else {}
    return {
        "declarations": len(result),
        **({"missing_on_every_declaration": empty} if empty else {}),
        "out": str(out),
        "lanes": {k: int(lanes.get(k, 0)) for k in ("red", "yellow", "green")},
        "exploration": int(result["exploration"].sum()) if len(result) else 0,
        "model": runtime.model_ref,
    }


# Below this many declarations a field empty on all of them is not remarkable (a few parcels
# of private senders carry no seller); a file of this many without it is.
MIN_DECLARATIONS_FOR_EMPTY_INPUTS = 20
# ... and a field is one the model relied on when its training traffic held it on at least
# this share of the parcels
RELIED_ON_SHARE = 0.5


def evidence_missing_throughout(
    declarations: pd.DataFrame, filled: dict[str, int], runtime: ScoringRuntime
) -> list[str]:
    """The inputs and features the model's training traffic held on most parcels
    (``RELIED_ON_SHARE``) that a batch of at least ``MIN_DECLARATIONS_FOR_EMPTY_INPUTS``
    lacks on every one: input fields (``input_fill`` of the model's metadata, the ids of its
    training frame) empty in ``declarations``, and model features (their reference's missing
    share) that no declaration gave a value (``filled``: feature -> rows with one).

    An empty value is "unknown" and gets a prior, which is right for one parcel; for a whole
    file it means the feed lacks the field (a pre-arrival message without the seller) or the
    mapping reads a column only the history fills (a delay written after the control), and
    the model scores without evidence it was trained to rely on, unsaid: a probe's arrivals
    got one risk for every parcel (AUC 0.50 against the truth), no decision with a warning."""
    if len(declarations) < MIN_DECLARATIONS_FOR_EMPTY_INPUTS:
        return []
    missing = [
        name
        for name, share in (runtime.model.metadata.get("input_fill") or {}).items()
        if share >= RELIED_ON_SHARE
        and (name not in declarations.columns or bool(declarations[name].isna().all()))
    ]
    reference = runtime.model.reference
    if reference is not None:
        missing += [
            f.name
            for f in reference.features
            if f.name in filled and filled[f.name] == 0 and f.missing_share <= 1 - RELIED_ON_SHARE
        ]
    return missing


def explain_matrix(
    X: np.ndarray, context: pd.DataFrame | dict[str, np.ndarray], runtime: ScoringRuntime
) -> list[dict[str, Any]]:
    """Full TreeSHAP vector, base value, raw score, risk and reasons for each row of ``X``.

    ``context``: the same rows' reason context (``OnlineFeatures.context`` or a feature frame).
    """
    from serving.reasons import contribution_table

    model = runtime.model
    contrib = model.contributions(X)
    raw = model.raw_score(X)
    risk = model.risk(X, raw)
    reasons = explain_decisions(
        contrib,
        X,
        context,
        model.manifest,
        top_k=runtime.config.reasons_per_decision,
        inputs_of=runtime.features_inputs,
    )
    return [
        {
            "model": runtime.model_ref,
            "base_value": float(contrib[i, -1]),
            "raw_score": float(raw[i]),
            "risk": float(risk[i]),
            "contributions": contribution_table(contrib[i, :-1], X[i], model.manifest),
            "reasons": [r.as_dict() for r in reasons[i]],
        }
        for i in range(len(X))
    ]


def results_to_replay(
    results: Any, cutoff_us: int, results_seq: int | None, decisions: Any = None
) -> list[ResultEvent]:
    """The stored results a new snapshot's live state replays, in seq order: those inspected
    from its cutoff on (the snapshot has none of them), and, when it knows the store's last
    result its history held (``EntityState.results_seq``), every one stored after that,
    whenever inspected (``LiveState.append_outcomes`` keeps the rest out). Corrections come
    whatever their time: whether what they replace was counted is for the live state to say.
    ``decisions``: the decision store, whose archive holds the declarations of archived days."""
    rows = results.results_since(0, inspected_from_us=cutoff_us, decisions=decisions)
    if results_seq is None:
        return rows
    seen = {r[0] for r in rows}
    later = [r for r in results.results_since(results_seq, decisions=decisions) if r[0] not in seen]
    return sorted(rows + later, key=lambda r: r[0]) if later else rows
