"""Lane thresholds versions of a registered model: set as a decision, not a retrain.

Training writes the first version into the bundle (and ``thresholds.json`` on the run). Each
``parcelrisk lanes set`` writes a new one on the same model version, in two places:

- a record on the run: the thresholds with why, when, by whom, on what traffic they were fitted
  and the version they replace (the history an auditor reads, and what recomputing a decision
  made under that version resolves its cut-offs from). Records are append-only: the version id
  is a hash of the cut-offs, so going back to earlier cut-offs repeats an earlier version, and
  that set is a record of its own. A version's first record is ``thresholds/<version>.json``,
  each later set of it ``thresholds/<version>/<UTC stamp>-<random>.json``;
- the model version's tags ``lane_thresholds`` (the thresholds as JSON: the one in force) and
  ``thresholds_version``. ``models.registry.load_version`` applies the tag, and a running
  service's champion check reads it with the alias (``serving.rollover``), so a set takes effect
  without a restart.

The artifact is written before the tag: a version can be in force only once its record exists.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from features.errors import ParcelriskError
from models.bundle import LaneThresholds
from models.run_records import read_run_json
from models.thresholds import parse_thresholds, thresholds_from_dict, thresholds_json

if TYPE_CHECKING:
    from mlflow import MlflowClient

LANE_THRESHOLDS_TAG = "lane_thresholds"
THRESHOLDS_VERSION_TAG = "thresholds_version"
THRESHOLDS_DIR = "thresholds"
TRAINING_THRESHOLDS = "thresholds.json"  # what training logged (models.registry.log_training)


def tagged_thresholds(tags: dict[str, str]) -> LaneThresholds | None:
    """The thresholds a model version's ``lane_thresholds`` tag puts in force (None: no tag,
    the bundle's apply); ``ParcelriskError`` if the tag cannot be read."""
    text = tags.get(LANE_THRESHOLDS_TAG)
    if text is None:
        return None
    try:
        return parse_thresholds(text)
    except ParcelriskError as exc:
        raise ParcelriskError(f"tag {LANE_THRESHOLDS_TAG} unreadable: {exc}") from None


def check_applies(thresholds: LaneThresholds, model_thresholds: LaneThresholds) -> None:
    """Refuse thresholds on a model that ranks on another priority (risk vs revenue)."""
    if thresholds.objective != model_thresholds.objective:
        raise ParcelriskError(
            f"lane thresholds {thresholds.version} rank on {thresholds.objective}, the model "
            f"ranks on {model_thresholds.objective}"
        )


def _listed_files(client: MlflowClient, run_id: str, path: str) -> list[str]:
    """The artifact paths of the files directly under ``path`` on a run (none: [])."""
    from mlflow.exceptions import MlflowException

    try:
        return [info.path for info in client.list_artifacts(run_id, path) if not info.is_dir]
    except MlflowException:
        return []


def _record_paths(client: MlflowClient, run_id: str) -> list[str]:
    """Every ``lanes set`` record on a run: first records and repeats (module docstring)."""
    from mlflow.exceptions import MlflowException

    try:
        listed = client.list_artifacts(run_id, THRESHOLDS_DIR)
    except MlflowException:
        return []
    paths = []
    for info in listed:
        if info.is_dir:
            paths += _listed_files(client, run_id, info.path)
        else:
            paths.append(info.path)
    return [path for path in paths if path.endswith(".json")]


def thresholds_history(client: MlflowClient, run_id: str) -> list[dict[str, Any]]:
    """Every thresholds record of a run, oldest first: training's (``thresholds.json``), then
    each ``lanes set`` record by ``set_at``, a version set twice appearing twice."""
    from mlflow.exceptions import MlflowException

    history: list[dict[str, Any]] = []
    try:
        trained = read_run_json(client, run_id, TRAINING_THRESHOLDS)
        history.append({**trained, "set_at": "", "set_by": "training", "reason": "trained"})
    except (MlflowException, OSError, ValueError):
        pass  # a run logged without it: the bundle's are still in force
    records = []  # (set_at, path, record): the path orders records of the same set_at
    for path in _record_paths(client, run_id):
        try:
            record = read_run_json(client, run_id, path)
        except (MlflowException, OSError, ValueError):
            continue  # one unreadable record must not hide the others
        records.append((str(record.get("set_at", "")), path, record))
    history += [record for *_, record in sorted(records, key=lambda r: r[:2])]
    return history


def _version_paths(client: MlflowClient, run_id: str, version: str) -> Iterator[str]:
    """The records of one version, earliest first, then training's; lazily, so that the
    repeats are listed only when the first record cannot be read."""
    yield f"{THRESHOLDS_DIR}/{version}.json"
    yield from sorted(_listed_files(client, run_id, f"{THRESHOLDS_DIR}/{version}"))
    yield TRAINING_THRESHOLDS


class ThresholdsAltered(ParcelriskError):
    """A thresholds record whose content no longer hashes to its version id (probe 30: an
    edited record made `audit show` print "red if priority >= 0.999" beside a red decision)."""


def resolve_thresholds(client: MlflowClient, run_id: str, version: str) -> LaneThresholds | None:
    """The thresholds recorded on a run under ``version`` (set or trained), from its earliest
    readable record (all records of a version hold the same cut-offs); None if none."""
    from mlflow.exceptions import MlflowException

    from models.thresholds import content_version

    altered = []
    for path in _version_paths(client, run_id, version):
        try:
            data = read_run_json(client, run_id, path)
        except (MlflowException, OSError, ValueError):
            continue
        if isinstance(data, dict) and str(data.get("version")) == str(version):
            try:
                intact = content_version(data) == str(version)
            except (TypeError, ValueError):
                intact = False
            if intact:
                return thresholds_from_dict(data)
            altered.append(path)
    if altered:
        # the version id is the hash of the cut-offs: a record that no longer hashes to it
        # was edited, and its numbers are not the ones the decisions were laned with
        raise ThresholdsAltered(
            f"the record of lane thresholds {version} on run {run_id} ({altered[0]}) was "
            "altered after it was written: its cut-offs no longer hash to its version id, "
            "so they are not the ones the decisions were laned with"
        )
    return None


def last_recorded_thresholds(
    client: MlflowClient, run_id: str, model_thresholds: LaneThresholds
) -> LaneThresholds | None:
    """The newest readable thresholds version recorded on a run (``thresholds_history``) that
    fits the model; None when there is none."""
    for record in reversed(thresholds_history(client, run_id)):
        try:
            thresholds = thresholds_from_dict(record)
            check_applies(thresholds, model_thresholds)
        except (ParcelriskError, KeyError, TypeError, ValueError):
            continue
        return thresholds
    return None


def _new_record_path(client: MlflowClient, run_id: str, version: str, now: datetime) -> str:
    """Where a new record of ``version`` goes: never onto an existing record.

    ``log_dict`` overwrites, and a set that repeated earlier cut-offs (the same version id)
    used to replace that version's record: who set it, when and why were lost while the
    decisions laned under it still point to it. The first record keeps the path every reader
    (older ones included) resolves a decision's version from; a repeat goes beside it under a
    name no other set can take. Listing errors propagate: unsure what exists, write nothing."""
    first = f"{THRESHOLDS_DIR}/{version}.json"
    listed = client.list_artifacts(run_id, THRESHOLDS_DIR)
    if all(info.path != first for info in listed):
        return first
    return f"{THRESHOLDS_DIR}/{version}/{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}.json"


def write_thresholds_version(
    client: MlflowClient,
    name: str,
    version: str,
    thresholds: LaneThresholds,
    *,
    previous: str,
    reason: str,
    set_by: str,
    carried_from: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Record ``thresholds`` on the model version's run and put them in force: the record's
    artifact path and the record. ``carried_from``: the decision whose rates a promotion
    carried over to this version (``carry_lane_policy``)."""
    mv = client.get_model_version(name, version)
    now = datetime.now(UTC)
    record = {
        **asdict(thresholds),
        "reason": reason,
        # to the microsecond: the history is ordered by it, and sets a second apart are common
        # in a script; older records' seconds sort before any record of their second
        "set_at": now.isoformat(timespec="microseconds"),
        "set_by": set_by,
        "previous_version": previous,
        "model": {"name": name, "version": str(version)},
    }
    if carried_from is not None:
        record["carried_from"] = carried_from
    path = _new_record_path(client, mv.run_id, thresholds.version, now)
    client.log_dict(mv.run_id, record, path)
    client.set_model_version_tag(name, version, LANE_THRESHOLDS_TAG, thresholds_json(thresholds))
    client.set_model_version_tag(name, version, THRESHOLDS_VERSION_TAG, thresholds.version)
    return path, record


# --- across a promotion ---------------------------------------------------------------------------
#
# The lane rates are an inspection capacity: a decision (``lanes set``, with a reason), not a
# property of a model. A promotion replaces the model; it must not undo that decision unsaid
# (probe 13: 2% red set for "two more inspectors" on v1, then v3 promoted served its trained 1%,
# the running service switched at its next champion check, and nothing said so). So when the
# rates in force on the outgoing champion were decided, the new champion takes them over, with
# its own cut-offs fitted at those rates on its own training traffic quantiles: the traffic its
# trained cut-offs were fitted on (the lane period's every parcel, AEO discounted as served),
# by the procedure `lanes set` uses before a model has live traffic. The champion's live decisions are
# no help: another model's scores are on another scale, and the new one has none yet
# (`lanes refit --db` re-fits on them once it has). Where the new model keeps no quantiles
# (trained before they were kept) nothing honest can be fitted: the promotion goes on (a
# better model is not refused over its lanes) and says loudly, in its record and in `lanes
# show`, that the decision was not carried over and how to take it again.
# Rates that came from training (``train.lanes``) are not a decision about this champion: a new
# champion serves its own, and a change of them is said.

# Fewer decisions of a version than this in a store, and `lanes set` fits on the version's
# training traffic quantiles instead: the 0.5% tail of a few hundred parcels is a handful.
MIN_SET_PARCELS = 2000
# On the new champion when the rates in force could not be carried over (JSON): what `lanes
# show` says while the thresholds in force are still those the promotion left.
NOT_CARRIED_TAG = "lanes.not_carried"
BUNDLE_JSON = "bundle/bundle.json"


@dataclass(frozen=True)
class LanePolicy:
    """The lanes a model version serves and where their rates came from."""

    model_version: str
    in_force: LaneThresholds
    trained: LaneThresholds
    # the record that put these rates in force: kind "training" (train.lanes) or "decision"
    # (a `lanes set`, or the decision a promotion carried over), with model_version,
    # thresholds_version, set_by, set_at and reason
    origin: dict[str, Any]
    quantiles: dict[str, Any] | None  # its training traffic quantiles (None: not kept)

    @property
    def decided(self) -> bool:
        return self.origin.get("kind") == "decision"


@dataclass(frozen=True)
class LaneHandover:
    """What a promotion does to the lanes: the thresholds to put in force on the new champion
    (None: its own stay), what to say, and what to record with the decision."""

    thresholds: LaneThresholds | None
    reasons: list[str]
    record: dict[str, Any]
    carried_from: dict[str, Any] | None = None
    not_carried: dict[str, Any] | None = None


def bundle_payload(client: MlflowClient, name: str, version: str, run_id: str) -> dict[str, Any]:
    """A version's ``bundle.json`` (thresholds and metadata; no booster is read)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="parcelrisk-lanes-") as tmp:
        try:
            local = client.download_artifacts(run_id, BUNDLE_JSON, tmp)
            return json.loads(Path(local).read_text())
        except Exception as exc:  # missing, unreadable: one line naming the version
            raise ParcelriskError(
                f"model {name!r} v{version}: its bundle.json cannot be read: {exc}"
            ) from None


def _at_rates(record: dict[str, Any], thresholds: LaneThresholds) -> bool:
    """A thresholds record (``thresholds_history``) fills the lanes at ``thresholds``' rates."""
    import math

    try:
        red, yellow = float(record["red_rate"]), float(record["yellow_rate"])
    except (KeyError, TypeError, ValueError):
        return False
    return math.isclose(red, thresholds.red_rate, abs_tol=1e-9) and math.isclose(
        yellow, thresholds.yellow_rate, abs_tol=1e-9
    )


def rates_origin(
    history: list[dict[str, Any]],
    in_force: LaneThresholds,
    trained: LaneThresholds,
    model_version: str,
) -> dict[str, Any]:
    """Where the rates in force came from: the earliest record of the unbroken run of records
    at those rates that ends with the newest record of the version in force (``history``:
    ``thresholds_history``). A re-fit at the same rates (`lanes refit`) is not a decision of
    its own; the set that moved the rates there is, and a record carried over by a promotion
    names the decision it carries. A run that starts at training's record: ``train.lanes``."""

    def origin(kind: str, record: dict[str, Any]) -> dict[str, Any]:
        return {
            "kind": kind,
            "model_version": str(model_version),
            "thresholds_version": str(record.get("version", "")),
            "set_by": str(record.get("set_by", "")),
            "set_at": str(record.get("set_at", "")),
            "reason": str(record.get("reason", "")),
        }

    newest = max(
        (i for i, h in enumerate(history) if str(h.get("version")) == in_force.version),
        default=None,
    )
    if newest is None:
        if in_force.version == trained.version:
            return origin("training", {**asdict(trained), "set_by": "training", "reason": ""})
        # in force without a record (a tag written by hand): someone decided, unrecorded
        return origin("decision", {"version": in_force.version, "set_by": "unrecorded"})
    first = newest
    for i in range(newest, -1, -1):
        if not _at_rates(history[i], in_force):
            break
        carried = history[i].get("carried_from")
        if isinstance(carried, dict):
            return {**carried, "kind": "decision"}
        first = i
    record = history[first]
    if record.get("set_by") == "training" and not record.get("set_at"):
        return origin("training", record)
    return origin("decision", record)


def read_lane_policy(client: MlflowClient, name: str, version: str) -> LanePolicy:
    """A version's lanes as a service loading it would serve them (``models.registry.
    load_version``: the tag's, a readable record's when the tag is not, else the bundle's)."""
    import logging

    mv = client.get_model_version(name, version)
    payload = bundle_payload(client, name, version, mv.run_id)
    trained = thresholds_from_dict(payload.get("thresholds"))
    try:
        in_force = tagged_thresholds(dict(mv.tags or {})) or trained
        check_applies(in_force, trained)
    except ParcelriskError as exc:
        in_force = last_recorded_thresholds(client, mv.run_id, trained) or trained
        logging.getLogger(__name__).error(
            "model %s v%s: %s; reading its lanes as %s", name, version, exc, in_force.version
        )
    history = thresholds_history(client, mv.run_id)
    quantiles = (payload.get("metadata") or {}).get("lane_traffic") or None
    return LanePolicy(
        str(version),
        in_force,
        trained,
        rates_origin(history, in_force, trained, version),
        quantiles,
    )


def origin_text(policy: LanePolicy) -> str:
    """Where a version's rates in force came from, for a sentence."""
    origin = policy.origin
    if not policy.decided:
        return f"train.lanes of version {origin.get('model_version')}"
    when = f" at {origin['set_at'][:16]}" if origin.get("set_at") else ""
    why = f": {origin['reason']}" if origin.get("reason") else ""
    return (
        f"set by {origin.get('set_by') or 'unknown'}{when} on version "
        f"{origin.get('model_version')}{why}"
    )


def _same_decision(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("model_version", "thresholds_version", "set_by", "set_at")
    return a.get("kind") == b.get("kind") == "decision" and all(a.get(k) == b.get(k) for k in keys)


def plan_lane_handover(
    champion: LanePolicy, challenger: LanePolicy, *, promoted: bool
) -> LaneHandover:
    """What becomes of the lanes when ``challenger`` is judged against ``champion``: carried
    over, said to change, or (refused) said to differ. Pure: fits from stored quantiles only."""
    from models.thresholds import (
        fit_from_quantiles,
        lane_shares_from_quantiles,
        rates_text,
        same_rates,
        share_warnings,
    )

    served, own = champion.in_force, challenger.in_force
    new, old = f"version {challenger.model_version}", f"version {champion.model_version}"
    base = {
        "champion": {"rates": rates_text(served), "thresholds_version": served.version},
        "champion_origin": champion.origin,
        "challenger_trained": rates_text(challenger.trained),
    }
    if not promoted:
        # a challenger trained at other rates (train.lanes changed in params.yaml, `dvc repro`)
        # is refused for its ranking, and with it the rates nobody said were not taken
        if same_rates(own, served) or same_rates(own, champion.trained):
            return LaneHandover(None, [], {})
        return LaneHandover(
            None,
            [
                f"lane rates differ: {new} fills {rates_text(own)} "
                f"({origin_text(challenger)}), the champion ({old}) {rates_text(served)} "
                f"({origin_text(champion)}); the gate judges how a version ranks parcels "
                "(revenue and precision of its top 5%), not the shares it sends to each lane, "
                f"so the champion keeps serving {rates_text(served)}. To change the shares "
                f"served, take it as a decision on the champion (no retrain): `parcelrisk lanes "
                f"set --red {own.red_rate:g} --yellow {own.yellow_rate:g} --reason TEXT` "
                "(--db STORE fits the cut-offs on its recent decisions)"
            ],
            {**base, "action": "differ", "challenger": rates_text(own)},
        )
    if not champion.decided:
        if same_rates(own, served):
            return LaneHandover(None, [], {**base, "action": "same rates"})
        return LaneHandover(
            None,
            [
                f"lane rates change with this promotion: {rates_text(served)} "
                f"({origin_text(champion)}) -> {rates_text(own)} ({origin_text(challenger)})"
            ],
            {**base, "action": "changed", "serves": rates_text(own)},
        )
    decision = champion.origin
    if _same_decision(challenger.origin, decision) and same_rates(own, served):
        # a rollback to the version the decision was taken on, or a rerun of a promote
        # interrupted after it carried them: the decision is in force on it already
        return LaneHandover(
            None,
            [
                f"lane rates in force {rates_text(served)} ({origin_text(champion)}) kept: "
                f"{new} serves them already (thresholds {own.version})"
            ],
            {**base, "action": "kept", "serves": rates_text(own)},
        )
    reasons = []
    if not same_rates(challenger.trained, champion.trained) and not same_rates(
        challenger.trained, served
    ):
        # train.lanes changed since the champion was trained: the decision in force, recorded
        # with who and why, outranks a params default; say how to take the new one instead
        trained = challenger.trained
        reasons.append(
            f"{new} was trained for {rates_text(trained)} (train.lanes): not served, the "
            f"decision in force carries over; to serve them, `parcelrisk lanes set --red "
            f"{trained.red_rate:g} --yellow {trained.yellow_rate:g} --reason TEXT`"
        )
    carried = {**decision, "carried_at_promotion_of": challenger.model_version}
    if same_rates(own, served):
        # its own cut-offs fill the decided rates already: recorded again with the decision,
        # so that the next promotion still knows the rates were decided, not trained
        return LaneHandover(
            own,
            [
                f"lane rates in force {rates_text(served)} ({origin_text(champion)}) carried "
                f"over: {new} fills them with its own cut-offs (thresholds {own.version})",
                *reasons,
            ],
            {
                **base,
                "action": "carried",
                "serves": rates_text(own),
                "thresholds_version": own.version,
            },
            carried_from=carried,
        )
    try:
        if not challenger.quantiles:
            raise ParcelriskError(
                f"{new} stores no training traffic quantiles to fit cut-offs on (trained "
                "before they were kept)"
            )
        thresholds = fit_from_quantiles(
            challenger.quantiles,
            served.red_rate,
            served.yellow_rate,
            challenger.trained.objective,
            fitted_on=(
                f"training traffic quantiles of v{challenger.model_version} "
                f"({challenger.quantiles.get('parcels')} parcels), at the rates carried over "
                f"from v{champion.model_version}"
            ),
        )
        shares = lane_shares_from_quantiles(challenger.quantiles, thresholds)
    except (ParcelriskError, KeyError, TypeError, ValueError) as exc:
        why = str(exc)
        command = (
            f"parcelrisk lanes set --red {served.red_rate:g} --yellow {served.yellow_rate:g} "
            "--db STORE --reason TEXT"
        )
        not_carried = {
            "from_version": champion.model_version,
            "rates": rates_text(served),
            "red_rate": served.red_rate,
            "yellow_rate": served.yellow_rate,
            "origin": decision,
            "serves": rates_text(own),
            "thresholds_version": own.version,
            "why": why,
            "command": command,
        }
        return LaneHandover(
            None,
            [
                f"LANE RATES NOT CARRIED OVER: lane rates in force {rates_text(served)} "
                f"({origin_text(champion)}) -> {new} serves {rates_text(own)} "
                f"({origin_text(challenger)}): {why}. To take the decision again, run "
                f"`{command}` once STORE holds {MIN_SET_PARCELS:,} of its decisions",
                *reasons,
            ],
            {**base, "action": "not carried", "serves": rates_text(own), "why": why},
            not_carried=not_carried,
        )
    warned = share_warnings(thresholds, shares)
    return LaneHandover(
        thresholds,
        [
            f"lane rates in force {rates_text(served)} ({origin_text(champion)}) carried over: "
            f"{new} serves them with cut-offs red >= {thresholds.red_cutoff:.6g}, yellow >= "
            f"{thresholds.yellow_cutoff:.6g} (thresholds {thresholds.version}, fitted on its "
            f"training traffic quantiles), not its trained {rates_text(challenger.trained)}; "
            f"`parcelrisk lanes refit --db STORE` re-fits them on its live traffic once STORE "
            f"holds {MIN_SET_PARCELS:,} of its decisions",
            *(f"lanes: {w}" for w in warned),
            *reasons,
        ],
        {
            **base,
            "action": "carried",
            "serves": rates_text(thresholds),
            "thresholds_version": thresholds.version,
        },
        carried_from=carried,
    )


def apply_lane_handover(
    client: MlflowClient, name: str, version: str, handover: LaneHandover, *, set_by: str
) -> None:
    """Put a promotion's lanes in force on ``version`` before the champion alias moves to it,
    so that no worker serves the new champion at rates nobody chose: the carried thresholds
    (with their record), or the tag saying the rates in force were not carried over."""
    if handover.not_carried is not None:
        client.set_model_version_tag(
            name, version, NOT_CARRIED_TAG, json.dumps(handover.not_carried)
        )
    if handover.thresholds is None or handover.carried_from is None:
        return
    origin = handover.carried_from
    mv = client.get_model_version(name, version)
    try:
        previous = (tagged_thresholds(dict(mv.tags or {})) or handover.thresholds).version
    except ParcelriskError:
        previous = "unreadable"
    write_thresholds_version(
        client,
        name,
        version,
        handover.thresholds,
        previous=previous,
        reason=(
            f"carried over at the promotion of v{version}: {origin.get('reason', '')} (set by "
            f"{origin.get('set_by')} on v{origin.get('model_version')} at "
            f"{str(origin.get('set_at', ''))[:16]})"
        ),
        set_by=set_by,
        carried_from=origin,
    )


def not_carried_notice(tags: dict[str, str], in_force: str) -> dict[str, Any] | None:
    """The rates a promotion could not carry over to this version (``NOT_CARRIED_TAG``), while
    the thresholds it left in force still are (a `lanes set` since took the decision again)."""
    text = tags.get(NOT_CARRIED_TAG)
    if not text:
        return None
    try:
        notice = json.loads(text)
    except ValueError:
        return None
    if not isinstance(notice, dict) or str(notice.get("thresholds_version")) != in_force:
        return None
    return notice
