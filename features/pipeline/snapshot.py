"""The entity-state snapshot: what online features need, as known at a cutoff, on disk.

Each feature family that learns from the past contributes a part (``Family.fit_part``): entity
histories, split-shipment events, reference prices, text models... fitted as batch uses them for
the cutoff's refit period (before the period start): the same staleness the model was trained
with, consistency over freshness. The families batch refits per period also keep the evidence
of the whole history, from which the live state refits them for later periods
(``features.pipeline.refit``). The directory is written atomically and fingerprinted.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import ParcelriskError
from features.families import active_families, features_reading, inputs_of_features
from features.intake.contract import Contract, ExtraColumn
from features.params import FeatureParams
from features.pipeline.family import Family, History, SpecContext
from features.pipeline.history import US_PER_DAY
from features.pipeline.manifest import FeatureManifest
from features.pipeline.prepare import (
    as_known_at,
    outcome_events,
    outcome_rows,
    period_of,
    prepare,
    refit_start_us,
    result_times,
    sort_declarations,
)
from features.pipeline.refit import RefitPart

META_FILE = "meta.json"
FORMAT_VERSION = 2  # 2: one part per feature family
# The instant of the snapshot's last declaration and the ids declared at it (fingerprinted with
# the parts). Absent from snapshots written before it: their live state appends from the cutoff.
LAST_DECLARED_FILE = "last_declared.json"
# The history's inspection results recorded at or after the cutoff (``pending_results_of``):
# written only when there are some, so a history without any keeps the snapshot it had.
PENDING_RESULTS_FILE = "pending_results.json"
# Hashes of the ids declared in the snapshot's last LATE_ENTRY_DAYS (``recent_ids_of``): absent
# from snapshots written before it, whose live state appends from the last declaration only.
RECENT_IDS_FILE = "recent_ids.npy"
# Hashes of the ids of the history's declarations with an inspection result (``result_ids``).
RESULT_IDS_FILE = "result_ids.npy"
# How long before a snapshot's last declaration a declaration the history does not hold still
# enters the live state when it reaches the system (a backlog re-sent after an outage,
# pre-arrival data lodged before the export and sent after it). Earlier ones are scored but
# never count for others: the state cannot tell them from the history's own without every id.
LATE_ENTRY_DAYS = 2


# Feature settings added after snapshots were first written, with the value that reproduces a
# snapshot recorded without them: a champion trained before a family existed keeps serving.
LATER_SETTINGS = {"order_windows_hours": (), "refit_lag_days": 0}


def _spec_context(params: FeatureParams, contract: Contract, manifest: FeatureManifest):
    return SpecContext(params, contract, manifest.inputs, manifest.categories)


@dataclass
class EntityState:
    cutoff_us: int
    period_start_us: int
    params: FeatureParams
    contract: Contract
    manifest: FeatureManifest
    parts: dict[str, Any]  # family name -> its snapshot part (None: the family keeps nothing)
    fingerprint: str = ""
    families: list[Family] = field(default_factory=list)  # those computing the manifest
    # The id of the key its consignee pseudonyms were made with (features.intake.pseudonym):
    # served under another key, no consignee would find its history. None: a snapshot from
    # before key ids were recorded.
    pseudonym_key_id: str | None = None
    # The instant of the last declaration the snapshot holds (UTC us; None: not recorded) and
    # the ids declared at it. Declarations of a date-only export share their local midnight, so
    # one exported part-way through a day ends on an instant that declarations not in it share:
    # the live state tells them apart by id (``last_declared_ids``), not by time.
    last_declared_us: int | None = None
    last_declared_ids: tuple[str, ...] = ()
    # A history exported from a decision store holds every result stored up to this seq
    # (features.intake.io.read_results_seq); None: not from a store, or cut by --as-of. The live
    # state then appends a later result even when inspected before the cutoff: results come
    # back late (a lab test, a post-clearance audit), after the history was exported.
    results_seq: int | None = None
    # The history's inspection results recorded at or after the cutoff, of declarations before
    # it (``pending_results_of``): a result comes back days after its declaration, so a
    # history exported now holds results its parts cannot yet count. The live state appends
    # them at their ``inspected_at`` when it starts, as results the store hands it later.
    pending_results: tuple[dict[str, Any], ...] = ()
    # Sorted hashes (``id_hashes``) of the ids the history declared from LATE_ENTRY_DAYS before
    # its last declaration on: the live state tells a late declaration it holds from one it
    # does not. None: a snapshot from before they were kept.
    recent_ids: np.ndarray | None = None
    # Sorted hashes of the ids of the history's declarations whose inspection result the state
    # counts (recorded before the cutoff, or carried in ``pending_results``): a result log
    # handing over a first result for one of them (the store the history was exported from,
    # the same result posted again for a base-history parcel, a result written to the minute
    # in one and to the second in the other) adds nothing. None: an older snapshot.
    result_ids: np.ndarray | None = None
    # The newest inspection result the snapshot counts (its ``inspected_at``, UTC us: recorded
    # before the cutoff; those carried in ``pending_results`` are the live state's): how long
    # after it a declaration is scored tells whether its hit rates are stale. None: the history
    # holds no result, or an older snapshot that did not record it.
    last_result_us: int | None = None
    # The mapped extras the served model's features read (``read_by``): declarations must hold
    # those, and the others are read as unknown. None: every extra of the contract (a state
    # not tied to a model). Probe 33: an inspection flag kept as an extra, its feature dropped
    # in training as constant on inspected parcels, was still asked of every declaration.
    extras_read: tuple[str, ...] | None = None
    # The declaration fields each of the served model's features reads (``inputs_of``), set
    # when it is loaded to serve: the online reason context says which of them a parcel left
    # empty. Empty: not known (reasons then say "not computable" as before).
    features_inputs: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def read_by(self, features: Collection[str]) -> tuple[str, ...]:
        """The contract's extras some of ``features`` (a model's) read, in contract order."""
        ctx = _spec_context(self.params, self.contract, self.manifest)
        used = set(features)
        return tuple(e.name for e in self.contract.extras if features_reading(ctx, e.name) & used)

    def inputs_of(self, features: Collection[str]) -> dict[str, tuple[str, ...]]:
        """Each of ``features`` (a model's) -> the declaration fields it reads
        (``inputs_of_features``): a reason says which one the parcel left empty."""
        ctx = _spec_context(self.params, self.contract, self.manifest)
        return inputs_of_features(ctx, features)

    def __post_init__(self) -> None:
        if not self.families:
            self.families = active_families(
                _spec_context(self.params, self.contract, self.manifest)
            )

    @property
    def cutoff(self) -> pd.Timestamp:
        return pd.Timestamp(self.cutoff_us * 1000, tz="UTC")

    @property
    def held_before_us(self) -> int:
        """Every declaration declared before this instant is in the snapshot or never will be
        (it came too late); at it, only ``last_declared_ids``; after it, none."""
        return self.cutoff_us if self.last_declared_us is None else self.last_declared_us

    @property
    def late_entry_from_us(self) -> int:
        """Declarations declared from this instant on that the snapshot does not hold enter the
        live state (``recent_ids`` tells); earlier ones are the snapshot's or came too late."""
        if self.recent_ids is None or self.last_declared_us is None:
            return self.held_before_us
        return self.last_declared_us - LATE_ENTRY_DAYS * US_PER_DAY

    def holds(self, ids: np.ndarray, t_us: np.ndarray) -> np.ndarray:
        """Which of these declarations (ids, declared_at in UTC us) the snapshot holds, as far
        as it can tell: every one declared before ``late_entry_from_us``, none after its last
        declaration, and between the two those whose id it recorded."""
        held = t_us < self.late_entry_from_us
        last = self.held_before_us
        near = np.flatnonzero(~held & (t_us <= last))
        if not len(near):
            return held
        if self.recent_ids is not None:
            held[near] = _among(self.recent_ids, ids[near])
        else:  # an older snapshot: the ids at its last instant only
            last_ids = set(self.last_declared_ids)
            held[near] = [i in last_ids for i in ids[near].tolist()]
        return held

    def holds_result(self, ids: np.ndarray) -> np.ndarray:
        """Which of these declaration ids have an inspection result the state counts from
        the snapshot (``result_ids``; none for an older snapshot)."""
        if self.result_ids is None:
            return np.zeros(len(ids), dtype=bool)
        return _among(self.result_ids, ids)

    @property
    def exact_from_us(self) -> int:
        """The earliest declaration time whose features the snapshot gives as batch does: an
        earlier one sees results recorded up to the cutoff (warned)."""
        return self.cutoff_us - 1

    def save(self, directory: Path) -> Path:
        """Write the snapshot atomically: into a sibling temp dir, then swap it in."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            for family in self.families:
                family.save_part(self.parts.get(family.name), tmp)
            self.manifest.write(tmp)
            if self.last_declared_us is not None:
                last = {
                    "declared_at_us": self.last_declared_us,
                    "declaration_ids": sorted(self.last_declared_ids),
                    **({"results_seq": self.results_seq} if self.results_seq is not None else {}),
                    **(
                        {"last_result_us": self.last_result_us}
                        if self.last_result_us is not None
                        else {}
                    ),
                }
                (tmp / LAST_DECLARED_FILE).write_text(json.dumps(last))
            for name, ids in (
                (RECENT_IDS_FILE, self.recent_ids),
                (RESULT_IDS_FILE, self.result_ids),
            ):
                if ids is not None:
                    with open(tmp / name, "wb") as f:
                        np.save(f, ids, allow_pickle=False)
            if self.pending_results:
                (tmp / PENDING_RESULTS_FILE).write_text(
                    json.dumps(list(self.pending_results), separators=(",", ":"), default=str)
                )
            fingerprint = _fingerprint_dir(tmp)
            meta = {
                "format_version": FORMAT_VERSION,
                "cutoff_us": self.cutoff_us,
                "cutoff": str(self.cutoff),
                "period_start_us": self.period_start_us,
                "params": self.params.to_dict(),
                "extras": self.contract.extras_json(),
                "families": [f.name for f in self.families],
                "manifest_fingerprint": self.manifest.fingerprint,
                "fingerprint": fingerprint,
                "pseudonym_key_id": self.pseudonym_key_id,
            }
            if self.contract.folded:  # the fields the API folds (none: meta as before)
                meta["folded"] = list(self.contract.folded)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
            if directory.exists():
                old = directory.with_name(f".{directory.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                directory.rename(old)
                tmp.rename(directory)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.fingerprint = fingerprint
        return directory

    @classmethod
    def load(cls, directory: Path) -> EntityState:
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.exists():
            raise ParcelriskError(
                f"entity state not found in {directory} (run `parcelrisk features build`)"
            )
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("format_version") != FORMAT_VERSION:
                raise ParcelriskError(
                    f"entity state in {directory} has format {meta.get('format_version')}, "
                    f"expected {FORMAT_VERSION} (rebuild it with `parcelrisk features build`)"
                )
            if _fingerprint_dir(directory) != meta["fingerprint"]:
                raise ParcelriskError(
                    f"entity state in {directory} is corrupt: content does not match its fingerprint"
                )
            params = FeatureParams.from_dict({**LATER_SETTINGS, **meta["params"]})
            contract = Contract(
                tuple(ExtraColumn(**e) for e in meta["extras"]),
                folded=tuple(meta.get("folded", ())),
            )
            manifest = FeatureManifest.read(directory)
            families = active_families(_spec_context(params, contract, manifest))
            last_path = directory / LAST_DECLARED_FILE
            last = json.loads(last_path.read_text()) if last_path.exists() else {}
            pending_path = directory / PENDING_RESULTS_FILE
            pending = json.loads(pending_path.read_text()) if pending_path.exists() else []
            recent, held = (
                np.load(directory / name, allow_pickle=False)
                if (directory / name).exists()
                else None
                for name in (RECENT_IDS_FILE, RESULT_IDS_FILE)
            )
            if [f.name for f in families] != meta["families"]:
                raise ParcelriskError(
                    f"entity state in {directory} holds the families {meta['families']}, "
                    f"its manifest needs {[f.name for f in families]}"
                )
            parts = {f.name: f.load_part(directory) for f in families}
            for part in parts.values():
                if isinstance(part, RefitPart):  # the refit period holding the cutoff
                    part.period = int(
                        period_of(np.array([meta["cutoff_us"]]), params.refit_period_days)[0]
                    )
            state = cls(
                cutoff_us=int(meta["cutoff_us"]),
                period_start_us=int(meta["period_start_us"]),
                params=params,
                contract=contract,
                manifest=manifest,
                parts=parts,
                fingerprint=meta["fingerprint"],
                families=families,
                pseudonym_key_id=meta.get("pseudonym_key_id"),  # absent in older snapshots
                last_declared_us=last.get("declared_at_us"),
                last_declared_ids=tuple(last.get("declaration_ids", ())),
                results_seq=last.get("results_seq"),
                last_result_us=last.get("last_result_us"),  # absent in older snapshots
                pending_results=tuple(pending),
                recent_ids=recent,
                result_ids=held,
            )
        except ParcelriskError:
            raise
        except (OSError, KeyError, ValueError) as exc:
            raise ParcelriskError(f"entity state in {directory} is unreadable: {exc}") from exc
        if manifest.fingerprint != meta["manifest_fingerprint"]:
            raise ParcelriskError(
                f"entity state in {directory}: manifest does not match the snapshot"
            )
        return state


def _fingerprint_dir(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(directory).iterdir()):
        if path.name == META_FILE or not path.is_file():
            continue
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def build_entity_state(
    declarations: pd.DataFrame,
    contract: Contract,
    params: FeatureParams,
    *,
    cutoff: pd.Timestamp,
    manifest: FeatureManifest,
    show_progress: bool = False,
    pseudonym_key_id: str | None = None,
) -> EntityState:
    """Snapshot of everything the online features need, as known at ``cutoff``.

    ``pseudonym_key_id``: the key the declarations' personal fields were pseudonymised with.
    """
    known = sort_declarations(as_known_at(declarations, cutoff))
    history = History(
        prepare(known, contract, params),
        params,
        contract,
        manifest,
        outcome_events(known),
        show_progress,
    )
    return entity_state_of(
        history,
        cutoff=cutoff,
        pseudonym_key_id=pseudonym_key_id,
        last_declared=(last := last_declared(known)),
        recent_ids=recent_ids_of(
            known["declaration_id"].to_numpy(dtype=object),
            known["declared_at"].astype("datetime64[us, UTC]").astype("int64").to_numpy(),
            last[0],
        ),
        result_ids=result_ids_of(known),
    )


def last_declared(declarations: pd.DataFrame) -> tuple[int | None, tuple[str, ...]]:
    """The instant of the last declaration (UTC us; None if there is none) and the ids
    declared at it."""
    if declarations.empty:
        return None, ()
    stamps = declarations["declared_at"]
    last = stamps.max()
    ids = declarations.loc[(stamps == last).to_numpy(), "declaration_id"]
    return int(pd.Timestamp(last).value // 1000), tuple(sorted(ids.astype(str).tolist()))


def id_hashes(ids: np.ndarray) -> np.ndarray:
    """64-bit hashes of declaration ids (str), the same in every process (pandas' SipHash with
    its fixed key): what ``EntityState.recent_ids`` holds. Two ids sharing one is a chance of
    about n^2 / 2^65 (1e-6 at 6M recent ids)."""
    return pd.util.hash_array(np.asarray(ids, dtype=object), categorize=False)


def _among(hashes: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Which ``ids`` have their ``id_hashes`` in the sorted ``hashes``."""
    if not len(hashes) or not len(ids):
        return np.zeros(len(ids), dtype=bool)
    wanted = id_hashes(ids)
    at = np.searchsorted(hashes, wanted).clip(max=len(hashes) - 1)
    return hashes[at] == wanted


def recent_ids_of(ids: np.ndarray, t_us: np.ndarray, last_declared_us: int | None) -> np.ndarray:
    """``EntityState.recent_ids`` of a history's ids and declaration times (UTC us)."""
    if last_declared_us is None:
        return np.zeros(0, dtype=np.uint64)
    recent = t_us >= last_declared_us - LATE_ENTRY_DAYS * US_PER_DAY
    return np.unique(id_hashes(np.asarray(ids)[recent]))


def result_ids_of(declarations: pd.DataFrame) -> np.ndarray:
    """``EntityState.result_ids`` of a canonical history: its declarations with a recorded
    inspection result (those an --as-of cut left without one are not among them)."""
    rows = outcome_rows(declarations)
    ids = declarations["declaration_id"].to_numpy(dtype=object)[rows]
    return np.unique(id_hashes(ids))


def last_result_of(result_t_us: np.ndarray, cutoff_us: int) -> int | None:
    """``EntityState.last_result_us`` of a history's recorded results' times (UTC us,
    ``outcome_events``): the newest before the cutoff, None if there is none."""
    recorded = result_t_us[result_t_us < cutoff_us]
    return int(recorded.max()) if len(recorded) else None


def pending_results_of(
    declarations: pd.DataFrame, contract: Contract, cutoff_us: int
) -> tuple[dict[str, Any], ...]:
    """The inspection results of ``declarations`` (a canonical history, all declared before
    the cutoff) recorded at or after ``cutoff_us``: what ``as_known_at`` takes out of a
    snapshot's history, carried beside it for the live state.

    Each is the declaration as the decision store keeps it (its contract columns, canonical
    values) with the result's time (UTC us), label and revenue (cents, as ``outcome_events``).
    In (time, declaration id) order: the pandas and Dask engines write the same bytes."""
    from features.intake.columns import frame_records

    recorded = outcome_rows(declarations)
    if not recorded.any():
        return ()
    t_us = np.full(len(declarations), np.iinfo(np.int64).min, dtype=np.int64)
    t_us[recorded] = (  # when known (``result_times``): the live state counts it from then
        result_times(declarations)
        .iloc[np.flatnonzero(recorded)]
        .astype("datetime64[us, UTC]")
        .astype("int64")
        .to_numpy()
    )
    rows = np.flatnonzero(recorded & (t_us >= cutoff_us))
    if not len(rows):
        return ()
    chosen = declarations.iloc[rows]
    columns = [c for c in contract.columns(with_outcomes=False) if c in chosen.columns]
    revenue = chosen["revenue_recovered"].to_numpy(dtype=np.float64, na_value=0.0)
    cents = np.round(np.nan_to_num(revenue, nan=0.0) * 100).astype(np.int64)
    illicit = chosen["illicit"].to_numpy(dtype=bool, na_value=False)
    carried = [
        {
            "declaration": record,
            "inspected_at_us": int(t),
            "illicit": bool(hit),
            "revenue_cents": int(c),
        }
        for record, t, hit, c in zip(
            frame_records(chosen[columns]), t_us[rows], illicit, cents, strict=True
        )
    ]
    carried.sort(key=lambda r: (r["inspected_at_us"], str(r["declaration"]["declaration_id"])))
    return tuple(carried)


def entity_state_of(
    history: History,
    *,
    cutoff: pd.Timestamp,
    pseudonym_key_id: str | None = None,
    last_declared: tuple[int | None, tuple[str, ...]] = (None, ()),
    results_seq: int | None = None,
    pending_results: tuple[dict[str, Any], ...] = (),
    recent_ids: np.ndarray | None = None,
    result_ids: np.ndarray | None = None,
) -> EntityState:
    """The snapshot at ``cutoff`` of a prepared history as known then (``build_entity_state``
    without the preparing: ``features build`` hands over the rows it has just prepared).
    ``results_seq``: the decision store's last result the history holds (``EntityState``).
    ``pending_results``: the history's results recorded at or after the cutoff
    (``pending_results_of``); ``recent_ids``: ``recent_ids_of`` its declarations;
    ``result_ids``: ``result_ids_of`` them.

    ``last_declared``: the history's last declaration instant and the ids declared at it
    (``last_declared`` of its rows), which the live state needs to tell the declarations at
    that instant it holds from those it does not. The newest result the state counts
    (``EntityState.last_result_us``) is read from the history's results before the cutoff."""
    params, contract, manifest = history.params, history.contract, history.manifest
    cutoff_us = int(pd.Timestamp(cutoff).value // 1000)
    families = active_families(_spec_context(params, contract, manifest))
    return EntityState(
        cutoff_us=cutoff_us,
        period_start_us=refit_start_us(cutoff_us, params.refit_period_days),
        params=params,
        contract=contract,
        manifest=manifest,
        parts={
            f.name: f.fit_part(history, cutoff_us) for f in history.track(families, "entity state")
        },
        families=families,
        pseudonym_key_id=pseudonym_key_id,
        last_declared_us=last_declared[0],
        last_declared_ids=last_declared[1],
        results_seq=results_seq,
        pending_results=pending_results,
        recent_ids=recent_ids,
        result_ids=result_ids,
        last_result_us=last_result_of(
            history.outcomes.get("t_us", np.zeros(0, dtype=np.int64)), cutoff_us
        ),
    )
