"""Recompute recorded decisions with their own model version: the auditor's proof that a stored
decision is what that model made of that declaration with what was known then.

Two paths per decision:

(a) **from the stored feature vector**: the recorded model version scores the stored vector; the
    raw score must equal the stored one (bit for bit, or within ``RAW_TOLERANCE``) and the lane,
    assigned by ``serving.lanes.assign_lanes`` with the model's cut-offs and the decision's
    stored lane policy, must be the stored lane.
(b) **from the stored declaration**: the live entity state is rebuilt as the scorer held it, the
    version's snapshot, plus the decision log up to the record's ``known_seq`` (declared since
    the snapshot's cutoff, as ``ScoringRuntime._replay`` reads it), plus the inspection results
    up to ``known_results_seq``; the decision's whole batch (the rows recorded with it: same
    ``scored_at``, answer time and model version) is scored together, as the service scored it,
    since the rows of one batch see each other by ``declared_at``. Then features -> model ->
    lanes, compared as in (a), and the rebuilt feature vector against the stored one.

Decisions are processed in (model version, ``known_seq``, ``known_results_seq``) order, so one
forward pass over the log serves a whole sample; only a decision that knew fewer results than
the one before it (two workers catching up at different moments) starts a new pass.

The exploration seed is not stored (only its digest, ``exploration_seed_version``): with the
seed of the settings matching that digest the exploration draw is recomputed; otherwise the
stored exploration flag is taken as drawn and said so in the notes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from features.errors import ParcelriskError
from models.lane_versions import ThresholdsAltered

if TYPE_CHECKING:
    from features.params import ServeParams
    from features.pipeline.live import LiveState
    from features.pipeline.snapshot import EntityState
    from models.bundle import LaneThresholds
    from serving.audit.models import LoadedModel, RecordedModels
    from serving.decision import DecisionRecord
    from serving.outcome_store import SqliteOutcomeStore
    from serving.postgres_store import PostgresOutcomeStore
    from serving.store import DecisionStore

RAW_TOLERANCE = 1e-12  # log-odds; LightGBM on the same input and build is bit-exact in practice
_LOG_PAGE = 20_000  # decisions read from the log per step (bounded memory)


@dataclass(frozen=True)
class PathCheck:
    """One path's recomputed score and lane against the stored ones."""

    raw_score: float
    lane: str
    raw_diff: float  # recomputed - stored (log-odds)
    lane_match: bool

    @property
    def match(self) -> bool:
        return self.lane_match and abs(self.raw_diff) <= RAW_TOLERANCE

    def as_dict(self) -> dict[str, Any]:
        return {
            "match": self.match,
            "raw_score": self.raw_score,
            "raw_diff": self.raw_diff,
            "lane": self.lane,
            "lane_match": self.lane_match,
        }


@dataclass
class Recomputed:
    """What recompute found for one decision."""

    decision_id: str
    seq: int | None
    model: str  # "name vVERSION"
    stored_raw_score: float
    stored_lane: str
    from_vector: PathCheck | None = None
    from_declaration: PathCheck | None = None
    differing_features: list[str] = field(default_factory=list)  # path (b) vs stored vector
    unverifiable: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.unverifiable is not None:
            return f"unverifiable: {self.unverifiable}"
        checks = [c for c in (self.from_vector, self.from_declaration) if c is not None]
        return "match" if checks and all(c.match for c in checks) else "mismatch"

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "seq": self.seq,
            "model": self.model,
            "status": self.status,
            "stored": {"raw_score": self.stored_raw_score, "lane": self.stored_lane},
            "from_vector": self.from_vector.as_dict() if self.from_vector else None,
            "from_declaration": self.from_declaration.as_dict() if self.from_declaration else None,
            "differing_features": self.differing_features,
            "notes": self.notes,
        }


def summarise(results: Sequence[Recomputed]) -> dict[str, int]:
    statuses = [r.status for r in results]
    return {
        "n": len(statuses),
        "matches": statuses.count("match"),
        "mismatches": statuses.count("mismatch"),
        "unverifiable": sum(s.startswith("unverifiable") for s in statuses),
    }


# --- lanes ------------------------------------------------------------------------------------


def lane_config(lane_policy: str, exploration_seed: int) -> tuple[ServeParams, bool]:
    """The lane policy a decision recorded, with ``exploration_seed``; and whether that seed is
    the one the decision was drawn with (its digest matches the recorded one)."""
    from features.params import LANE_POLICY_KEYS, ServeParams

    policy = json.loads(lane_policy)
    config = ServeParams(
        # a decision from before implausible numbers raised a lane: none did
        **({"implausible_lane": "green"} | {k: policy[k] for k in LANE_POLICY_KEYS if k in policy}),
        exploration_seed=exploration_seed,
    )
    return config, config.exploration_seed_version == policy.get("exploration_seed_version")


def recompute_lanes(
    priority: np.ndarray,
    aeo: np.ndarray,
    declaration_ids: Sequence[str],
    thresholds: Any,
    config: ServeParams,
    seed_known: bool,
    stored_exploration: np.ndarray,
    implausible: np.ndarray | None = None,
) -> np.ndarray:
    """Lanes as ``assign_lanes`` gives them; without the seed, the stored exploration flag
    stands in for the draw (the quota's lane is applied to the rows flagged)."""
    from serving.lanes import assign_lanes

    if seed_known:
        return assign_lanes(priority, aeo, declaration_ids, thresholds, config, implausible)[0]
    lanes, _ = assign_lanes(
        priority,
        aeo,
        declaration_ids,
        thresholds,
        config.replace(exploration_rate=0.0),
        implausible,
    )
    raise_to = np.asarray(stored_exploration, dtype=bool) & (lanes != "red")
    if config.exploration_lane == "yellow":
        raise_to &= lanes == "green"
    lanes = lanes.copy()
    lanes[raise_to] = config.exploration_lane
    return lanes


def implausible_of(lane_policy: str, models: list[Any], live: LiveState) -> np.ndarray | None:
    """The batch's rows with a number above the plausible bounds its decision recorded
    (``ScoringRuntime.lane_policy``), judged as the service judged them: the same rules, with
    the currency table of the model's entity state. None: the policy raised no lane."""
    from features.intake.rules import Limits, check_records, rules_for
    from serving.lanes import NO_RATE_RULE, implausible_rows, unvalued_rows

    policy = json.loads(lane_policy)
    bounds = policy.get("plausible_bounds")
    if policy.get("implausible_lane", "green") == "green" or not bounds:
        return None
    # a currency without a rate raised the lane from when the policy says so (probe 14)
    unvalued = bool(policy.get("unvalued_currency"))
    snapshot = live.snapshot
    limits = Limits.from_params(bounds, snapshot.params)
    rules = [
        r
        for r in rules_for(limits, with_outcomes=False, contract=snapshot.contract)
        if r.severity == "warning"
        and (r.name.endswith(".plausible") or (unvalued and r.name == NO_RATE_RULE))
    ]
    found = check_records(models, snapshot.contract, rules)
    return implausible_rows(found) | unvalued_rows(found)  # no currency rows without the key


def _aeo(declaration: dict[str, Any]) -> bool:
    return declaration.get("aeo_operator") in (True, 1)


def _check(raw: float, lane: str, record: DecisionRecord) -> PathCheck:
    diff = raw - record.raw_score
    if math.isnan(raw) and math.isnan(record.raw_score):
        diff = 0.0
    return PathCheck(float(raw), str(lane), float(diff), str(lane) == record.lane)


# --- the entity state at a point of the log ---------------------------------------------------


class StateReplay:
    """One model version's live entity state, moved forward along the decision log and the
    inspection results exactly as a scorer's catch-ups fed it."""

    def __init__(
        self,
        state: EntityState,
        store: DecisionStore,
        results: SqliteOutcomeStore | PostgresOutcomeStore | None,
    ) -> None:
        from features.pipeline.live import LiveState

        self.live: LiveState = LiveState(state)
        self.store, self.results = store, results
        self.log_seq = 0
        self.results_seq = 0
        # what the snapshot may lack: declared (or recorded) from the live state's replay
        # point on (late entries included), as the service replays (``ScoringRuntime``)
        self._cutoff = self.live.replay_from_us
        self._pending: list[tuple[int, str, int, bool, float | None]] | None = None

    def reaches(self, known_seq: int, known_results_seq: int) -> bool:
        return known_seq >= self.log_seq and known_results_seq >= self.results_seq

    def advance(self, known_seq: int, known_results_seq: int) -> None:
        """Append the log up to ``known_seq`` and the results up to ``known_results_seq``, read
        as the service's catch-up reads them (``StoredColumns``)."""
        from features.intake.columns import StoredColumns

        contract = self.live.snapshot.contract
        while self.log_seq < known_seq:
            limit = min(_LOG_PAGE, known_seq - self.log_seq)
            from serving.audit.archived import since_with_archive

            page = since_with_archive(self.store, self.log_seq, self._cutoff, limit)
            rows = [r for r in page if r[0] <= known_seq]
            from serving.scoring import readable

            # as the scorer's catch-up: a declaration that does not read is left out
            values = [v for v in readable([t for _, t in rows]) if v is not None]
            if values:
                self.live.append(StoredColumns(values, contract))
            # a full page inside the range: more may follow; else the range is done
            full = len(page) == limit and len(rows) == len(page)
            self.log_seq = rows[-1][0] if full else known_seq
        if self.results is None or known_results_seq <= self.results_seq:
            return
        if self._pending is None:  # read once: later steps take their slice of it
            from serving.scoring import results_to_replay

            self._pending = results_to_replay(
                self.results, self._cutoff, self.live.snapshot.results_seq, self.store
            )
        rows = [r for r in self._pending if self.results_seq < r[0] <= known_results_seq]
        if rows:
            from serving.scoring import outcome_events

            # as the catch-up feeds them: a correction takes back the result it replaced
            self.live.append_outcomes(*outcome_events(rows, contract))
        self.results_seq = known_results_seq


# --- reading the store ------------------------------------------------------------------------


def all_seqs(store: DecisionStore) -> list[int]:
    """Every stored decision's seq, in order: the archived days' (``audit archive``) and the
    hot store's. A sample drawn from the hot store alone checked nothing, and passed, once
    every day was archived (probe 12)."""
    from serving.sqlite_store import read_archive_manifest
    from serving.store_read import read_only

    _, _, cut = store.chain_start()
    seqs: list[int] = []
    if cut is not None:  # an archive's files hold contiguous seqs (`audit verify` proves it)
        for entry in read_archive_manifest(Path(cut["archive"]))["files"]:
            seqs += range(int(entry["first_seq"]), int(entry["last_seq"]) + 1)
    with read_only(store.source) as reader:
        _, rows = reader.query("SELECT seq FROM decisions ORDER BY seq")
    return sorted(seqs) + [int(r[0]) for r in rows]


def has_results(location: str | Path) -> bool:
    """Whether the store holds an ``outcomes`` table (results were ever stored)."""
    from serving.store_read import read_only

    with read_only(location) as store:
        return "outcomes" in store.tables()


def batch_of(store: DecisionStore, record: DecisionRecord) -> list[DecisionRecord]:
    """The decisions scored in one batch with ``record`` (itself included), in seq order: one
    ``record`` call stores a batch in one transaction, so they share ``scored_at``, the answer
    time and the model version."""
    from serving.store_read import read_only

    with read_only(store.source) as reader:
        _, rows = reader.query(
            "SELECT seq FROM decisions WHERE answered_at = {p} AND scored_at = {p} "
            "AND model_name = {p} AND model_version = {p} ORDER BY seq",
            (record.answered_at, record.scored_at, record.model_name, record.model_version),
        )
    seqs = [int(r[0]) for r in rows]
    if not seqs and record.answered_at is None:  # never stored: its batch cannot be known
        return [record]
    if not seqs:  # archived: a batch is one transaction, so one answered day, all archived
        from serving.audit.archived import archived_find

        # [t, t + "\0") is t alone: the archive's filters compare text
        found = archived_find(
            store,
            answered_from=record.answered_at,
            answered_to=record.answered_at + "\0",
            model_version=record.model_version,
        )
        batch = [
            r
            for r in found
            if r.scored_at == record.scored_at and r.model_name == record.model_name
        ]
        return batch or [record]
    wanted = set(seqs)
    found = store.find(after_seq=seqs[0] - 1, limit=seqs[-1] - seqs[0] + 1)
    return [r for r in found if r.seq in wanted]


def records_at(store: DecisionStore, seqs: Iterable[int]) -> list[DecisionRecord]:
    """The decisions at ``seqs``, archived or hot."""
    from serving.audit.archived import find_with_archive

    out = []
    for seq in seqs:
        found = find_with_archive(store, after_seq=int(seq) - 1, limit=1)
        if found and found[0].seq == int(seq):
            out.append(found[0])
    return out


# --- recompute ----------------------------------------------------------------------------------


def recompute_decisions(
    records: Sequence[DecisionRecord],
    store: DecisionStore,
    results: SqliteOutcomeStore | PostgresOutcomeStore | None,
    models: RecordedModels,
    exploration_seed: int,
) -> list[Recomputed]:
    """Recompute each decision by both paths (module docstring); in the order given."""
    found: dict[str, Recomputed] = {}
    batches: dict[tuple[str, ...], list[DecisionRecord]] = {}
    for record in records:
        key = (record.model_name, record.model_version, record.scored_at, str(record.answered_at))
        batches.setdefault(key, []).append(record)
    order = sorted(
        batches.items(),
        key=lambda kv: (kv[0][0], kv[0][1], kv[1][0].known_seq, kv[1][0].known_results_seq),
    )
    replays: dict[tuple[str, str], StateReplay] = {}
    for (name, version, *_), targets in order:
        try:
            first = targets[0]  # a batch's decisions record one model
            loaded = models.get(name, version, first.model_run_id, first.model_bundle_sha256)
        except ParcelriskError as exc:
            for r in targets:
                found[r.decision_id] = _unverifiable(r, str(exc))
            continue
        problem = _misfit(targets[0], loaded)
        # a batch reads its thresholds once: every decision of it names the same version
        try:
            thresholds = models.thresholds(loaded, targets[0].thresholds_version)
        except ThresholdsAltered as exc:  # not the decision's fault: its cut-offs' record
            thresholds, problem = None, problem or str(exc)
        if problem is None and thresholds is None:
            problem = (
                f"lane cut-offs {targets[0].thresholds_version} recorded, neither model "
                f"{loaded.name} v{loaded.version}'s ({loaded.model.thresholds.version}) nor "
                f"set on its run {loaded.run_id}"
            )
        if problem is not None or thresholds is None:
            for r in targets:
                found[r.decision_id] = _unverifiable(r, problem or "no lane cut-offs")
            continue
        replay = replays.get((name, version))
        first = targets[0]
        if replay is None or not replay.reaches(first.known_seq, first.known_results_seq):
            replay = StateReplay(loaded.entity_state(), store, results)
            replays[(name, version)] = replay
        replay.advance(first.known_seq, first.known_results_seq)
        batch = batch_of(store, first)
        for result in _recompute_batch(
            batch, targets, loaded, thresholds, replay.live, exploration_seed
        ):
            found[result.decision_id] = result
    return [found[r.decision_id] for r in records]


def _unverifiable(record: DecisionRecord, reason: str) -> Recomputed:
    return Recomputed(
        record.decision_id,
        record.seq,
        f"{record.model_name} v{record.model_version}",
        record.raw_score,
        record.lane,
        unverifiable=reason,
    )


def _misfit(record: DecisionRecord, loaded: LoadedModel) -> str | None:
    from serving.audit.models import not_the_model

    if (problem := not_the_model(record, loaded)) is not None:
        return problem
    model = loaded.model
    if record.manifest_fingerprint != model.manifest.fingerprint:
        return (
            f"features stored in manifest {record.manifest_fingerprint}, model "
            f"{loaded.name} v{loaded.version} reads {model.manifest.fingerprint}"
        )
    return None


def _recompute_batch(
    batch: list[DecisionRecord],
    targets: list[DecisionRecord],
    loaded: LoadedModel,
    thresholds: LaneThresholds,
    live: LiveState,
    exploration_seed: int,
) -> list[Recomputed]:
    from features.intake.columns import RecordColumns
    from features.intake.contract import Declaration

    model = loaded.model
    names = model.manifest.names
    declarations = [json.loads(r.declaration_json) for r in batch]
    models = [Declaration.model_validate(d) for d in declarations]
    columns = RecordColumns(models, live.snapshot.contract)
    # (b) the batch as the service scored it: together, on the state it held
    features = live.features(columns)
    X_rebuilt = model.manifest.matrix_of(features.values, len(features))
    rebuilt = model.score(X_rebuilt)
    # (a) the stored vectors
    X_stored = np.stack([r.feature_vector for r in batch])
    stored = model.score(X_stored)
    aeo = np.array([_aeo(d) for d in declarations], dtype=bool)
    ids = [r.declaration_id for r in batch]
    exploration = np.array([r.exploration for r in batch], dtype=bool)
    index = {r.decision_id: i for i, r in enumerate(batch)}
    out = []
    implausible: dict[str, np.ndarray | None] = {}  # by policy: one batch records one
    for record in targets:
        config, seed_known = lane_config(record.lane_policy, exploration_seed)
        if record.lane_policy not in implausible:
            implausible[record.lane_policy] = implausible_of(record.lane_policy, models, live)
        i = index[record.decision_id]
        lanes = {}
        for path, scores in (("vector", stored), ("declaration", rebuilt)):
            lanes[path] = recompute_lanes(
                scores["priority"],
                aeo,
                ids,
                thresholds,
                config,
                seed_known,
                exploration,
                implausible[record.lane_policy],
            )[i]
        same = (X_rebuilt[i] == X_stored[i]) | (np.isnan(X_rebuilt[i]) & np.isnan(X_stored[i]))
        result = Recomputed(
            record.decision_id,
            record.seq,
            f"{record.model_name} v{record.model_version}",
            record.raw_score,
            record.lane,
            from_vector=_check(float(stored["raw"][i]), lanes["vector"], record),
            from_declaration=_check(float(rebuilt["raw"][i]), lanes["declaration"], record),
            differing_features=[names[j] for j in np.flatnonzero(~same)],
        )
        if not seed_known:
            result.notes.append(
                "exploration draw not recomputed: the settings' serve.exploration_seed is not "
                "the one recorded (its digest differs); the stored flag was used"
            )
        out.append(result)
    return out
