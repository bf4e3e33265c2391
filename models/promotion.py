"""The champion/challenger gate: a new version replaces the champion only when it is better.

``decide_promotion`` is the policy: pure, metrics and ``PromoteParams`` in, a ``Decision`` with
its reasons out. ``promote_version`` is the orchestration around it: it loads both versions from
the registry, scores each one's evaluation model (the first pass, never a refit that has seen
the labels) on the challenger's test period with ``models.evaluation``, decides, and records
the decision on the challenger version, moving the ``champion`` alias when it is promoted.
A history that lacks features the champion uses (its export dropped an input) cannot score the
champion: the gate refuses it as not comparable, and ``--force`` promotes it with the comparison
recorded as not possible (``promotion.comparison``).
The gate judges how a version ranks parcels, never the shares of traffic it sends to each lane:
those are a capacity decision (``lanes set``), which a promotion carries over to the new
champion and a refusal says it leaves as it is (``models.lane_versions.plan_lane_handover``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from features.errors import ParcelriskError
from features.intake.contract import CENSUS_SELECTION, RANDOM_SELECTION
from features.params import PromoteParams
from models.labels import OUTCOME_COLUMNS, unbiased_mask
from models.registry import CHAMPION_ALIAS
from models.run_records import operator_name

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from models.lane_versions import LaneHandover

GATE_AT = 5  # the gate compares revenue@5% and precision@5%
Outcome = Literal["first", "unchanged", "promoted", "forced", "refused"]


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str]
    evaluation: str = ""  # which holdout decided: test_all (ground truth) or test_random
    # why champion and challenger could not be compared on the holdout ("": they were, or
    # there was nothing to compare against); a forced promotion records it
    not_compared: str = ""


# Of the features a champion lacks on the holdout, how many a reason names.
LACKING_SHOWN = 5


def lacking_features(names: Sequence[str], columns: Collection[str]) -> list[str]:
    """The features of ``names`` (a model's manifest) that a feature frame's ``columns`` lack."""
    present = set(columns)
    return [n for n in names if n not in present]


def recode_categories(
    frame: pd.DataFrame,
    built: dict[str, tuple[str, ...]],
    model: dict[str, tuple[str, ...]],
) -> pd.DataFrame:
    """``frame``, whose category codes index the levels it was built with (``built``: feature ->
    levels, code order), with each category feature of ``model`` coded in the model's levels:
    what the model's own manifest makes of the same values when it serves them (a level it
    does not know is -1, unknown). ``frame`` itself when every level list agrees.

    Codes follow first appearance in a history, so two exports code the same level apart; a
    model read through another history's codes would be judged on values it never saw.
    """
    recoded = {}
    for name, levels in model.items():
        old = built.get(name)
        if old is None or old == levels or name not in frame.columns:
            continue
        lookup = {level: code for code, level in enumerate(levels)}
        # one entry per old code, then -1 for a code outside them (-1 itself, or corrupt)
        table = np.array([lookup.get(level, -1) for level in old] + [-1], dtype=np.float64)
        codes = frame[name].to_numpy(np.float64, na_value=np.nan)
        known = np.isfinite(codes) & (codes >= 0) & (codes < len(old))
        index = np.where(known, codes, len(old)).astype(np.int64)
        recoded[name] = np.where(np.isnan(codes), np.nan, table[index])
    return frame.assign(**recoded) if recoded else frame


# Feature params that only add columns when they grow (a window, an entity, a categorical):
# a model trained without an element does not read the columns it adds, and a column it does
# read is computed the same. Lacking columns are caught by name (``lacking_features``).
_ADDS_COLUMNS = frozenset(
    {
        "windows_days",
        "split_windows_hours",
        "order_windows_hours",
        "entities",
        "extra_families",
        "watchlist_sha256",  # unset in a model trained before lists: it reads none of its columns
    }
)
# Where a file is named, its content decides (the digest), not where it lies on this machine.
# An HS correlation table reads new codes as the ones the models know: a champion trained
# before it scores a holdout built with it on the codes it learned, which is the table's point.
_LOCATION_ONLY = frozenset({"watchlist", "hs_correlation", "hs_reads_as"})


def params_differences(model: dict[str, Any], built: dict[str, Any]) -> list[str]:
    """How the feature params a holdout was built with (``built``: its manifest's) differ
    from those a model was trained with (``model``), where the difference changes the values
    of columns the model reads: the same column name then holds another quantity (a hit rate
    under another prior, a value under another threshold), and scores on it mean nothing.

    Empty where either side records no params (a model or a history from before params
    were recorded): nothing to compare, the names are all the gate can check."""
    if not model or not built:
        return []
    differences = []
    for key in sorted(set(model) | set(built)):
        if key in _LOCATION_ONLY:
            continue
        mine, theirs = model.get(key), built.get(key)
        if mine == theirs:
            continue
        if key in _ADDS_COLUMNS and _grown(mine, theirs):
            continue
        differences.append(f"{key} {_shown(mine)} (model) vs {_shown(theirs)} (history)")
    return differences


def _grown(mine: Any, theirs: Any) -> bool:
    """``theirs`` only adds to ``mine`` (unset in the model: a family it was trained before)."""
    if mine is None or mine == []:
        return True
    return isinstance(mine, list) and isinstance(theirs, list) and set(mine) <= set(theirs)


def _shown(value: Any) -> str:
    text = "unset" if value is None else json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def decide_not_comparable(why: str) -> Decision:
    """The gate's refusal when a model cannot be scored on the challenger's holdout (``why``:
    ``lacking_reason`` or ``params_reason``). No metric of the two compares, so only
    ``--force`` can replace the champion."""
    return Decision(
        False,
        [f"not comparable: {why}, so the two models cannot be scored on the same holdout"],
        not_compared=why,
    )


def keys_differ_reason(
    champion: str, challenger: str, champion_key: str | None, challenger_key: str | None
) -> str:
    """Champion and challenger built under two pseudonym keys (``features.intake.pseudonym``;
    None: before consignee ids were keyed), and which one this process holds."""
    from features.intake.pseudonym import process_key_id

    def built(key: str | None) -> str:
        return "before consignee ids were keyed" if key is None else f"under key id {key}"

    return (
        f"the champion (version {champion}) was built {built(champion_key)}, the challenger "
        f"(version {challenger}) {built(challenger_key)}; this process holds key id "
        f"{process_key_id()}: their consignee histories are keyed for different deployments"
    )


def lacking_reason(champion: str, lacking: Sequence[str], history: str) -> str:
    """The history (``history``: its features directory) lacks features the champion uses,
    because an input the export no longer has switched their family off."""
    shown = ", ".join(lacking[:LACKING_SHOWN]) + (", ..." if len(lacking) > LACKING_SHOWN else "")
    return (
        f"the champion (version {champion}) uses {len(lacking)} feature(s) that the history in "
        f"{history} lacks ({shown}); its data no longer carries the inputs they are built from"
    )


def params_reason(role: str, version: str, differences: Sequence[str], history: str) -> str:
    """The history's features were built with other feature params than ``role`` was trained
    with: its columns hold other quantities under the same names (probe, 2026-12: a champion
    scored 0.22 instead of its 0.67 on such a holdout, and a worse challenger was promoted)."""
    shown = "; ".join(differences[:LACKING_SHOWN])
    if len(differences) > LACKING_SHOWN:
        shown += f"; and {len(differences) - LACKING_SHOWN} more"
    option = "--champion-features" if role == "champion" else "--features"
    return (
        f"the features in {history} were built with other feature params than the {role} "
        f"(version {version}) was trained with ({shown}): build the same history with the "
        f"{role}'s params and pass it as {option} DIR"
    )


def decide_promotion(
    champion_metrics: dict[str, float], challenger_metrics: dict[str, float], params: PromoteParams
) -> Decision:
    """Promote only if the challenger beats the champion by the configured margins on every
    gate metric both have (and on at least one strictly) and is calibrated within the bound.

    Metrics are flat ``<evaluation>.model.<metric>`` dicts of the same holdout; the ground-truth
    evaluation (``test_all``) decides when present, else the unbiased one (``test_random``).
    Only finite numbers count: without revenue data in either, precision@5% decides alone, and
    a calibration error that cannot be measured is reported, not held against the challenger.
    """

    def value(metrics: dict[str, float], key: str) -> float | None:
        v = metrics.get(key)
        return float(v) if v is not None and np.isfinite(v) else None

    precision = f"precision_at_{GATE_AT}"
    evaluation = next(
        (
            ev
            for ev in ("test_all", "test_random")
            if value(challenger_metrics, f"{ev}.model.{precision}") is not None
            and value(champion_metrics, f"{ev}.model.{precision}") is not None
        ),
        None,
    )
    if evaluation is None:
        return Decision(
            False,
            [
                f"no comparable metric: champion and challenger share no finite {precision} on "
                f"the holdout (test_all or test_random)"
            ],
            not_compared=f"no finite {precision} of both on the holdout",
        )
    reasons: list[str] = []
    ok = True
    gains = []
    for metric, min_gain in (
        (f"revenue_at_{GATE_AT}", params.min_gain_revenue_at_5),
        (precision, params.min_gain_precision_at_5),
    ):
        key = f"{evaluation}.model.{metric}"
        champ, chall = value(champion_metrics, key), value(challenger_metrics, key)
        if champ is None or chall is None:
            missing = " and ".join(
                role for role, v in (("champion", champ), ("challenger", chall)) if v is None
            )
            reasons.append(
                f"{metric} ({evaluation}): not available for the {missing} "
                f"(no revenue data, or not computable): comparing {precision} only"
            )
            continue
        gain = chall - champ
        gains.append(gain)
        passed = gain >= min_gain
        ok &= passed
        reasons.append(
            f"{metric} ({evaluation}): challenger {chall:.4f} vs champion {champ:.4f}, "
            f"gain {gain:+.4f} {'>=' if passed else '<'} required {min_gain:+.4f}"
        )
    if ok and not any(g > 0 for g in gains):
        ok = False
        reasons.append("challenger is no better than the champion on any compared metric")
    parcels = value(challenger_metrics, f"{evaluation}.parcels")
    if parcels:
        # the size of what was compared, beside the verdict: on 168 random parcels the top 5%
        # is 8, one parcel moves precision by 0.125, and two versions each beat the other
        # (probe, 2026-12); the margins (promote.min_gain_*) are where an analyst asks for more
        top = max(1, round(parcels * GATE_AT / 100))
        illicit = value(challenger_metrics, f"{evaluation}.illicit")
        census = value(challenger_metrics, f"{evaluation}.census_parcels")
        held = [f"{int(illicit):,} illicit"] if illicit is not None else []
        held += [f"{int(census):,} inspected in a census"] if census else []
        reasons.append(
            f"compared on {int(parcels):,} parcels"
            + (f" ({', '.join(held)})" if held else "")
            + f": the top {GATE_AT}% is {top:,}, one parcel moves precision_at_{GATE_AT} by "
            f"{1 / top:.3f}"
            + (" (a small sample: consider promote.min_gain_* margins)" if top < 50 else "")
        )
    ece = value(challenger_metrics, f"{evaluation}.model.ece")
    if ece is None:
        reasons.append(f"calibration error ({evaluation}): not available, not checked")
    else:
        calibrated = ece <= params.max_calibration_error
        ok &= calibrated
        reasons.append(
            f"calibration error ({evaluation}): {ece:.4f} {'<=' if calibrated else '>'} "
            f"max {params.max_calibration_error:.4f}"
        )
    return Decision(ok, reasons, evaluation)


def gate_confidence(
    scores: dict[str, Any], holdout: pd.DataFrame, evaluation: str, objective: str
) -> tuple[str, float, int] | None:
    """(metric, share of resamples the challenger beats the champion on it, resamples): the
    metric lanes rank by (revenue@5% with the revenue objective when the sample holds revenue,
    else precision@5%) on ``RESAMPLES`` paired bootstrap resamples of the gate's sample.
    ``scores``: the champion's and the challenger's ``Scores``, row-aligned with ``holdout``.
    None when the sample is empty."""
    from models.evaluation import evaluation_sample
    from models.metrics import RESAMPLES, resampled_at

    rows, illicit, revenue = evaluation_sample(holdout, evaluation)
    if not rows.any():
        return None
    kind = "revenue" if objective == "revenue" and revenue.sum() > 0 else "precision"
    counted, ranked_by = (revenue, "value") if kind == "revenue" else (illicit, "risk")
    figures = resampled_at(
        {
            role: (np.asarray(scores[role][ranked_by])[rows], counted, kind)
            for role in ("champion", "challenger")
        },
        GATE_AT / 100,
    )
    gain = figures["challenger"] - figures["champion"]
    better = np.isfinite(gain) & (gain > 0)  # a resample without the metric is no evidence
    return f"{kind}_at_{GATE_AT}", float(better.mean()), RESAMPLES


def percents_apart(share: float, required: float) -> tuple[str, str]:
    """``share`` and ``required`` as percentages with the fewest decimals that tell them apart
    when they differ: a refusal at 0.797 read "80% (required 80%)" (probe 42). Rounding keeps
    the order, so a share below the requirement never reads as reaching it."""
    for digits in range(7):
        said = f"{100 * share:.{digits}f}%", f"{100 * required:.{digits}f}%"
        if said[0] != said[1] or share == required:
            return said
    return said


def with_confidence(
    decision: Decision, confidence: tuple[str, float, int] | None, params: PromoteParams
) -> Decision:
    """``decision`` with the gate's confidence said, and refused when the challenger won on
    the holdout but not in ``promote.min_confidence`` of its resamples: a gain the sample's
    noise gives as often is no evidence that the challenger is better."""
    if confidence is None or params.min_confidence == 0:
        return decision
    metric, share, draws = confidence
    won, required = percents_apart(share, params.min_confidence)
    said = (
        f"confidence ({decision.evaluation}): the challenger beats the champion on {metric} "
        f"in {won} of {draws:,} paired resamples of the holdout (required {required})"
    )
    if not decision.promote or share >= params.min_confidence:
        return replace(decision, reasons=[*decision.reasons, said])
    said += (
        ": not demonstrably better, the holdout's sampling gives such a gain as often; more "
        "exploration results (serve.exploration_rate), a longer test period or ground truth "
        "would tell the two apart"
    )
    return replace(decision, promote=False, reasons=[*decision.reasons, said])


def record_decision(
    client: MlflowClient,
    name: str,
    version: str,
    decision: Decision,
    *,
    champion_before: str | None,
    outcome: str,
    force_reason: str | None = None,
    metrics: dict[str, float] | None = None,
    lanes: dict[str, Any] | None = None,
) -> None:
    """Tag the challenger version with the decision; move the alias if it was promoted.

    ``lanes``: what the promotion did to the lane rates (``models.lane_versions.
    plan_lane_handover``), recorded with the decision."""
    tags = {
        "promotion.outcome": outcome,  # promoted | forced | refused | first
        "promotion.at": datetime.now(UTC).isoformat(timespec="seconds"),
        "promotion.champion_before": champion_before or "",
        "promotion.reasons": " | ".join(decision.reasons)[:4900],
    }
    if force_reason:
        tags["promotion.force_reason"] = force_reason[:4900]
    if comparison := comparison_of(decision):
        tags["promotion.comparison"] = comparison[:4900]
    if metrics:
        tags["promotion.metrics"] = json.dumps(
            {k: round(v, 5) for k, v in metrics.items() if np.isfinite(v)}
        )[:4900]
    if lanes:
        tags["promotion.lanes"] = json.dumps(lanes, default=str)[:4900]
    tags["promotion.by"] = operator_name()
    # The tags hold the latest decision on a version; every decision is also appended to its
    # run as its own file, so a re-judged version keeps the history of its decisions.
    record = {"version": str(version), **{k.removeprefix("promotion."): v for k, v in tags.items()}}
    if lanes:
        record["lanes"] = lanes  # an object in the record, not JSON in a string
    if outcome in ("promoted", "forced", "first"):
        # the champion judged against must still be the champion: another promote (another
        # analyst, a scheduled job) may have moved it while this one scored, and the two
        # challengers were never compared (probe, 2026-12); `promotion_lock` keeps runs on
        # one machine apart, this re-read catches the others
        from models.registry import alias_version

        current = alias_version(client, name, CHAMPION_ALIAS)
        if current != champion_before:
            raise ParcelriskError(
                f"the champion moved to version {current} while version {version} was judged "
                f"against version {champion_before}: nothing recorded; run promote again to "
                "judge it against the champion in force"
            )
        # the decision to record, on the challenger before the alias moves: a promote killed
        # after the alias left the new champion with its old "refused" tags, the force reason
        # lost, and a rerun said "unchanged" (probe, 2026-12); the next promote completes it
        client.set_model_version_tag(
            name, version, PENDING_TAG, _pending_text(tags, record, champion_before)
        )
        # the alias first: a promote killed after it leaves the champion moved with its
        # decision pending (the alias says which is champion), never a version recorded
        # as promoted that is not champion
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
        if client.get_model_version(name, version).tags.get("promotion.replaced_by"):
            # champion again (a rollback undone): no longer "replaced"
            client.delete_model_version_tag(name, version, "promotion.replaced_by")
    _write_records(client, name, version, tags, record, champion_before)


PENDING_TAG = "promotion.pending"
_TAG_LIMIT = 5000  # MLflow's longest tag value


def _pending_text(tags: dict[str, str], record: dict[str, Any], champion_before: str | None) -> str:
    """The decision a promote is about to record, as one tag value: whole when it fits, else
    with its long texts (reasons, comparison, metrics) cut so that it does (a cut JSON would
    not read back, and the record would be lost again)."""
    intent = {"tags": tags, "record": record, "champion_before": champion_before or ""}
    text = json.dumps(intent)
    for limit in (1000, 300, 0):
        if len(text) <= _TAG_LIMIT:
            return text
        cut = {k: (v[:limit] if k in _LONG_TAGS else v) for k, v in tags.items()}
        short = {
            k: (v[:limit] if isinstance(v, str) and f"promotion.{k}" in _LONG_TAGS else v)
            for k, v in record.items()
        }
        text = json.dumps({"tags": cut, "record": short, "champion_before": champion_before or ""})
    return text


_LONG_TAGS = (
    "promotion.reasons",
    "promotion.comparison",
    "promotion.metrics",
    "promotion.force_reason",
    "promotion.lanes",
)


def _write_records(
    client: MlflowClient,
    name: str,
    version: str,
    tags: dict[str, str],
    record: dict[str, Any],
    champion_before: str | None,
) -> None:
    """The decision's history file and tags on the version, and "replaced_by" on the champion
    it replaced; the pending decision cleared last."""
    _append_history(client, name, version, record)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    promoted = tags["promotion.outcome"] in ("promoted", "forced", "first")
    if promoted and champion_before and champion_before != version:
        client.set_model_version_tag(name, champion_before, "promotion.replaced_by", version)
        replaced = {"version": champion_before, "outcome": "replaced", "replaced_by": version}
        _append_history(client, name, champion_before, {**replaced, "at": tags["promotion.at"]})
    if PENDING_TAG in (client.get_model_version(name, version).tags or {}):
        client.delete_model_version_tag(name, version, PENDING_TAG)


def complete_interrupted_promotion(client: MlflowClient, name: str) -> str | None:
    """Record the decision a promote killed after moving the alias left pending on the
    champion (``record_decision``); the version completed, or None. A pending decision on a
    version that is not champion was never in force: dropped."""
    from models.registry import alias_model_version

    champion = alias_model_version(client, name, CHAMPION_ALIAS)
    if champion is None:
        return None
    pending = (champion.tags or {}).get(PENDING_TAG)
    if not pending:
        return None
    try:
        intent = json.loads(pending)
        tags, record = dict(intent["tags"]), dict(intent["record"])
    except (ValueError, KeyError, TypeError):
        logger.error("version %s: unreadable pending promotion record dropped", champion.version)
        client.delete_model_version_tag(name, str(champion.version), PENDING_TAG)
        return None
    version = str(champion.version)
    _write_records(client, name, version, tags, record, intent.get("champion_before") or None)
    logger.warning(
        "version %s became champion (%s) by a promote interrupted before it recorded why: "
        "its decision is recorded now",
        version,
        tags.get("promotion.outcome"),
    )
    return version


@contextlib.contextmanager
def promotion_lock(tracking_uri: str) -> Iterator[None]:
    """One ``promote`` at a time on a registry from this machine: a file lock beside a SQLite
    store, or in the temp directory keyed by the URI for a server. Two runs at once both
    judged against the same champion and both said "promoted", the alias on whichever wrote
    last (probe, 2026-12); the second now waits, then judges against the first's outcome.
    `lanes set` and `lanes refit` take it too: one between a promote's read of the champion's
    lane rates and its move of the alias would be lost to the rates the promote carried over.
    (Runs on other machines: ``record_decision`` re-reads the champion before moving it.)"""
    import fcntl
    import hashlib

    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix) and tracking_uri != prefix + ":memory:":
        path = Path(f"{tracking_uri[len(prefix) :]}.promote.lock")
    else:
        digest = hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"parcelrisk-promote-{digest}.lock"
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("another promote is running on this registry: waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


PROMOTIONS_DIR = "promotions"


def _append_history(client: MlflowClient, name: str, version: str, record: dict[str, Any]) -> None:
    """One decision about ``version`` as its own file on its run (never overwritten)."""
    run_id = client.get_model_version(name, version).run_id
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    client.log_dict(run_id, record, f"{PROMOTIONS_DIR}/{stamp}-{record['outcome']}.json")


def promotion_history(client: MlflowClient, name: str, version: str) -> list[dict[str, Any]]:
    """Every recorded decision about ``version``, oldest first (empty before histories)."""
    from models.run_records import read_run_json

    run_id = client.get_model_version(name, version).run_id
    listed = sorted(client.list_artifacts(run_id, PROMOTIONS_DIR), key=lambda i: i.path)
    return [read_run_json(client, run_id, info.path) for info in listed]


def comparison_of(decision: Decision) -> str:
    """How the gate compared the two versions: the holdout that decided, or "not possible: why"
    ("" when nothing was compared: a first model, a champion the service cannot serve)."""
    if decision.not_compared:
        return f"not possible: {decision.not_compared}"
    return decision.evaluation


def promotion_outcome(decision: Decision, force: bool) -> Outcome:
    """What happens to a challenger the gate has judged: ``--force`` overrides a refusal."""
    if decision.promote:
        return "promoted"
    return "forced" if force else "refused"


def gate_metrics(per_model: dict[str, dict[str, float]]) -> dict[str, float]:
    """The metrics recorded with a decision: per role, the gate's metrics and ROC AUC."""
    return {
        f"{role}.{k}": v
        for role, metrics in per_model.items()
        for k, v in metrics.items()
        if k.endswith((f"precision_at_{GATE_AT}", f"revenue_at_{GATE_AT}", ".ece", "roc_auc"))
    }


@dataclass(frozen=True)
class Holdout:
    """A test period's feature rows, the manifest they were built with and where they lie."""

    frame: pd.DataFrame
    manifest: Any  # FeatureManifest
    directory: Path


def _holdout(directory: Path, test_start: Any, truth: pd.DataFrame | None, option: str) -> Holdout:
    import pandas as pd

    from features.pipeline.build import FEATURES_FILE
    from features.pipeline.manifest import FeatureManifest
    from models.evaluation import attach_truth

    path = Path(directory) / FEATURES_FILE
    if not path.exists():
        raise ParcelriskError(f"holdout features not found in {directory!s}: pass {option} DIR")
    frame = pd.read_parquet(path)
    frame = frame.loc[frame["declared_at"] >= test_start].reset_index(drop=True)
    if frame.empty:
        raise ParcelriskError(f"no parcels in {directory} on or after the test start {test_start}")
    if truth is not None:
        frame = attach_truth(frame, truth)
    return Holdout(frame, FeatureManifest.read(directory), Path(directory))


def same_parcels(challenger: Holdout, champion: Holdout) -> Holdout:
    """``champion``'s rows in the order of ``challenger``'s: both must hold the same parcels
    (one history built twice), or their figures would not compare."""
    import pandas as pd

    ours = challenger.frame["declaration_id"]
    theirs = champion.frame["declaration_id"]
    only_ours = int((~ours.isin(theirs)).sum())
    only_theirs = int((~theirs.isin(ours)).sum())
    if only_ours or only_theirs or theirs.duplicated().any():
        raise ParcelriskError(
            f"--champion-features {champion.directory} holds other parcels of the test period "
            f"than {challenger.directory} ({only_theirs:,} not in it, {only_ours:,} missing): "
            "build both from the same history"
        )
    position = pd.Index(theirs).get_indexer(ours)
    return Holdout(
        champion.frame.iloc[position].reset_index(drop=True), champion.manifest, champion.directory
    )


def _pseudonym_key_id(state_dir: Path) -> str | None:
    """The pseudonym key id an entity state was built under (None: before keyed ids)."""
    from features.pipeline.snapshot import META_FILE

    return json.loads((Path(state_dir) / META_FILE).read_text()).get("pseudonym_key_id")


# Fewer illicit parcels than this in a first champion's unbiased test sample: its metrics are
# that handful's, said (one parcel moves its precision@5% by more than a tenth).
FEW_UNBIASED_ILLICIT = 10


def _first_model_cautions(
    metadata: dict[str, Any], run: Any, params: PromoteParams | None = None
) -> list[str]:
    """What the person making a first champion should know: nothing compares it, so a model
    that learnt next to nothing, that no unbiased sample (or a handful) measured, or that is
    calibrated outside the bound every later challenger is held to, is said to be one
    (probe 29: a first champion with a calibration error 2.5x the bound, calibrated on biased
    labels and measured on one illicit parcel, was made champion without a word)."""
    from models.train import RISK_SHIFT_LIMIT, WEAK_ROUNDS

    cautions = []
    metrics = run.data.metrics
    evaluation = "test_all" if "test_all.model.ece" in metrics else "test_random"
    ece = metrics.get(f"{evaluation}.model.ece")
    bound = params.max_calibration_error if params is not None else None
    if ece is not None and bound is not None and ece > bound:
        cautions.append(
            f"caution: its calibration error on its test period ({evaluation}) is {ece:.4f}, "
            f"above promote.max_calibration_error {bound:.4f}, the bound any later challenger "
            "is refused at: the risk it serves is not the hit rate it says"
        )
    if metadata.get("calibration_sample") == "labelled":
        cautions.append(
            "caution: it is calibrated on all labelled validation parcels, not on unbiased "
            "ones (too few random-exploration results): its served risk describes inspected "
            "parcels, biased upward (see train's warning)"
        )
    illicit = metrics.get("test_random.illicit")
    if illicit is not None and evaluation == "test_random" and illicit < FEW_UNBIASED_ILLICIT:
        parcels = int(metrics.get("test_random.parcels", 0))
        cautions.append(
            f"caution: its unbiased test sample holds {int(illicit)} illicit parcel(s) among "
            f"{parcels:,}: its metrics are that handful's"
        )
    shift = metadata.get("deployed_risk_shift")
    if isinstance(shift, (int, float)) and not 1 / RISK_SHIFT_LIMIT <= shift <= RISK_SHIFT_LIMIT:
        cautions.append(
            f"caution: its deployed (refit) model scores the test parcels {shift:.2f}x as "
            "risky as the first pass its metrics and lane cut-offs describe: its lanes will "
            "not fill as configured (latest results pending but written as clean?); see "
            "train's warning"
        )
    rounds = metadata.get("risk_best_iteration")
    if isinstance(rounds, int) and rounds <= WEAK_ROUNDS:
        cautions.append(
            f"caution: its risk model stopped after {rounds} round(s) (it learnt next to "
            "nothing from its labels: many parcels share one priority); train again on more "
            "labelled history before relying on its lanes"
        )
    if not any(key.startswith("test_random.") for key in run.data.metrics):
        cautions.append(
            "caution: no random-exploration or census parcel in its test period, so no unbiased "
            "metric measured it (serve.exploration_rate gives the next model one)"
        )
    return cautions


@dataclass(frozen=True)
class Comparison:
    """Champion and challenger judged on one holdout: what ``promote_version`` records."""

    decision: Decision
    per_model: dict[str, dict[str, float]]  # role -> ``evaluate_holdout`` metrics, scorer "model"
    parcels: int  # of the holdout compared on
    notes: list[str]  # said beside the decision's reasons (a comparison cut to a later start)
    # (metric, share of resamples the challenger won, resamples): ``gate_confidence``
    confidence: tuple[str, float, int] | None = None


def _without_unbiased_labels(decision: Decision, frame: pd.DataFrame) -> Decision:
    """ "No comparable metric" said in the analyst's terms: a holdout without ground truth is
    judged on its random-exploration results alone (the only labels no model chose), and the
    way forward is to post them, not to force a model no unbiased label has measured (probe 13:
    a retrain on the red lane's results alone was refused in metric names, offering --force)."""
    if "inspected" not in frame.columns:
        return decision
    inspected = frame["inspected"].fillna(False).astype(bool).to_numpy()
    reasons = (
        frame.loc[inspected, "selection_reason"].fillna("unknown").astype(str)
        if "selection_reason" in frame.columns
        else None
    )
    if set(OUTCOME_COLUMNS) <= set(frame.columns):
        unbiased = bool(unbiased_mask(frame)[0].any())
    else:
        unbiased = reasons is not None and bool(
            reasons.isin([RANDOM_SELECTION, CENSUS_SELECTION]).any()
        )
    if unbiased:
        return decision  # the unbiased results are there: something else left no figure
    selected = (
        ", ".join(f"{k} {v:,}" for k, v in reasons.value_counts().items())
        if reasons is not None and len(reasons)
        else "none"
    )
    why = (
        f"not comparable: the holdout ({len(frame):,} parcels from "
        f"{frame['declared_at'].min()}) holds no random-exploration result and no census, the "
        f"only labels no model chose ({int(inspected.sum()):,} inspection results, selected by: {selected}); "
        "post the exploration parcels' results (`selection_reason: random`) and judge it again, "
        "or give --ground-truth: forcing it would promote a model no unbiased label measured"
    )
    return replace(decision, reasons=[*decision.reasons, why])


def compare_versions(
    client: MlflowClient,
    params: PromoteParams,
    *,
    champion: str,
    version: str,
    features_dir: Path | None = None,
    champion_features_dir: Path | None = None,
    ground_truth_path: Path | None = None,
) -> Comparison:
    """Score ``champion`` and ``version`` on the same holdout and decide, recording nothing.

    The gate of ``parcelrisk promote`` without its side effects (an analyst's report may call it
    on any two versions); the holdout and its defaults are ``promote_version``'s.
    """
    import pandas as pd

    from models.evaluation import evaluate_holdout, score_model
    from models.registry import load_version
    from models.split import SplitBoundaries

    name = params.model_name
    with tempfile.TemporaryDirectory(prefix="parcelrisk-promote-") as tmp:
        challenger_model, challenger_state, _ = load_version(
            client, name, version, Path(tmp) / "challenger"
        )
        champion_model, champion_state, _ = load_version(
            client, name, champion, Path(tmp) / "champion"
        )
        keys = _pseudonym_key_id(champion_state), _pseudonym_key_id(challenger_state)
    # Built under two pseudonym keys, the two serve different deployments: the process
    # running promote cannot tell which key the service holds (an analyst's shell with another
    # key made an untested challenger champion "whatever the metrics", which the service then
    # refused to load: probe, 2026-12). Not comparable: a key changed on purpose is an
    # operator's decision, --force --reason, recorded.
    keys_differ = keys_differ_reason(champion, version, *keys) if keys[0] != keys[1] else ""
    tags = client.get_model_version(name, version).tags
    features_dir = Path(features_dir or tags.get("features_dir", ""))
    split = challenger_model.metadata.get("split")
    if not split:
        raise ParcelriskError(f"version {version} records no split: cannot find its test period")
    test_start = SplitBoundaries.from_dict(split).test_start
    truth_path = ground_truth_path or (
        Path(tags["ground_truth"]) if tags.get("ground_truth") else None
    )
    truth = None
    if truth_path is not None and Path(truth_path).exists():
        truth = pd.read_parquet(truth_path)
    # Each model is scored on a holdout built with the feature params it was trained with:
    # the challenger's by default, and the champion's own when an analyst changed the params
    # (``champion_features_dir``: the same history built with the champion's params).
    # Both are scored on parcels neither learnt from: from the later of the two test starts.
    # The champion's first pass was fitted and calibrated on everything before its own test
    # start; scored on a challenger's test period inside that (a shorter or rolling window,
    # other split dates), it scored ROC AUC 1.0 in-sample against the challenger's honest
    # figures, and a better challenger would have been refused (probe, 2026-12).
    compare_from = test_start
    champion_split = champion_model.metadata.get("split")
    if champion_split:
        compare_from = max(test_start, SplitBoundaries.from_dict(champion_split).test_start)
    holdouts = {"challenger": _holdout(features_dir, test_start, truth, "--features")}
    in_sample = ""
    if compare_from > test_start:
        frame = holdouts["challenger"].frame
        later = (frame["declared_at"] >= compare_from).to_numpy()
        if later.any():
            holdouts["challenger"] = replace(
                holdouts["challenger"], frame=frame.loc[later].reset_index(drop=True)
            )
        else:
            in_sample = (
                f"the champion (version {champion}) was fitted and calibrated on parcels "
                f"declared before {compare_from}, which covers the challenger's whole test "
                f"period (from {test_start})"
            )
            compare_from = test_start
    holdouts["champion"] = holdouts["challenger"]
    if champion_features_dir is not None:
        champion_holdout = _holdout(
            champion_features_dir, compare_from, truth, "--champion-features"
        )
        holdouts["champion"] = same_parcels(holdouts["challenger"], champion_holdout)
    models = {"champion": (champion, champion_model), "challenger": (version, challenger_model)}
    # A history without inputs the champion used (an export that dropped a column) has no
    # columns for the features built from them: the champion cannot be scored on it, and its
    # figures on another holdout would not compare, so the gate can only refuse (or be forced).
    # Columns of the right names built with other params hold other quantities: the same.
    champion_holdout = holdouts["champion"]
    lacking = lacking_features(
        champion_model.evaluation_model().manifest.names, champion_holdout.frame.columns
    )
    not_comparable = keys_differ or in_sample
    if lacking and not not_comparable:
        not_comparable = lacking_reason(champion, lacking, str(champion_holdout.directory))
    for role, (role_version, model) in models.items():
        holdout = holdouts[role]
        differences = params_differences(
            model.evaluation_model().manifest.params, holdout.manifest.params
        )
        if differences and not not_comparable:
            not_comparable = params_reason(role, role_version, differences, str(holdout.directory))
    roles = dict(models)
    if not_comparable:
        del roles["champion"]
    notes: list[str] = []  # said beside the decision's reasons
    # The challenger is judged by its first pass (a refit has seen its own test period's
    # labels). The champion by what serves, its refit, when every compared parcel was declared
    # after its history ended (no booster of it saw them); else by its first pass too, which
    # may lag the served model by as much as the gains judged (probe 29: +0.015 revenue@5%).
    champion_end = SplitBoundaries.from_dict(champion_split).end if champion_split else None
    compared = holdouts["challenger"].frame["declared_at"]
    serving_champion = (
        champion_model.risk_booster_eval is not None
        and champion_end is not None
        and bool((compared > champion_end).all())
    )
    if champion_model.risk_booster_eval is not None and "champion" in roles:
        notes.append(
            f"the champion (version {champion}) is scored with its deployed (refit) boosters, "
            f"which serve: every compared parcel was declared after its history (to "
            f"{champion_end})"
            if serving_champion
            else f"the champion (version {champion}) is scored with its first pass: the "
            "compared parcels include ones its deployed (refit) boosters were fitted on"
        )
    per_model, scored = {}, {}
    for role, (_, model) in roles.items():
        holdout = holdouts[role]
        evaluated = model if role == "champion" and serving_champion else model.evaluation_model()
        frame = recode_categories(
            holdout.frame, holdout.manifest.categories, evaluated.manifest.categories
        )
        try:
            scores = score_model(evaluated, frame)
        except ParcelriskError as exc:
            raise ParcelriskError(f"cannot score the {role} on {holdout.directory}: {exc}") from exc
        per_model[role], _ = evaluate_holdout(holdout.frame, {"model": scores})
        scored[role] = scores
    confidence = None
    if not_comparable:
        decision = decide_not_comparable(not_comparable)
    else:
        decision = decide_promotion(per_model["champion"], per_model["challenger"], params)
        if decision.not_compared and truth is None:
            decision = _without_unbiased_labels(decision, holdouts["challenger"].frame)
        if decision.evaluation and params.min_confidence > 0:
            # the challenger's frame: the champion's scores are aligned with its rows
            confidence = gate_confidence(
                scored,
                holdouts["challenger"].frame,
                decision.evaluation,
                challenger_model.thresholds.objective,
            )
            decision = with_confidence(decision, confidence, params)
    if compare_from > test_start:
        notes.insert(
            0,
            f"compared on the {len(holdouts['challenger'].frame)} parcels declared from "
            f"{compare_from}, after the champion's fit and calibration periods (the "
            f"challenger's test period starts {test_start})",
        )
    return Comparison(decision, per_model, len(holdouts["challenger"].frame), notes, confidence)


def promote_version(
    client: MlflowClient,
    params: PromoteParams,
    *,
    version: str | None = None,
    features_dir: Path | None = None,
    champion_features_dir: Path | None = None,
    ground_truth_path: Path | None = None,
    force: bool = False,
    reason: str | None = None,
) -> dict[str, Any]:
    """Judge ``version`` (default: the latest) against the champion and record the decision.

    The holdout is the challenger's test period of ``features_dir`` (default: the features it
    was trained on), with the ground truth it was trained with when that file still exists.
    ``champion_features_dir``: the same history built with the champion's feature params,
    where the champion is scored (the same parcels) when the challenger's params differ.
    """

    from models.registry import alias_version, latest_version, load_version

    if force and not (reason and reason.strip()):
        raise ParcelriskError(
            "--force needs --reason TEXT: the override is recorded on the version"
        )
    name = params.model_name
    chosen = version is not None
    version = str(version) if version is not None else latest_version(client, name)
    complete_interrupted_promotion(client, name)
    champion = alias_version(client, name, CHAMPION_ALIAS)
    result: dict[str, Any] = {
        "model_name": name,
        "challenger": version,
        "champion_before": champion,
    }
    if champion is None:
        # nothing to compare with, but a version that does not load never becomes champion
        # (a train killed or out of disk after registering: probe, 2026-12)
        with tempfile.TemporaryDirectory(prefix="parcelrisk-promote-") as tmp:
            first, _, _ = load_version(client, name, version, Path(tmp) / "first")
        run = client.get_run(client.get_model_version(name, version).run_id)
        reasons = ["first registered model: becomes champion"]
        cautions = _first_model_cautions(first.metadata, run, params)
        decision = Decision(True, reasons + cautions, "")
        record_decision(client, name, version, decision, champion_before=None, outcome="first")
        return {**result, "outcome": "first", "promote": True, "reasons": decision.reasons}
    if champion == version:
        return {
            **result,
            "outcome": "unchanged",
            "promote": False,
            "reasons": [f"version {version} is already the champion"],
        }
    replaced = client.get_model_version(name, version).tags.get("promotion.replaced_by")
    if replaced and not chosen:
        # The latest version was champion and was replaced, e.g. rolled back by a forced
        # promotion: the scheduled `promote` must not undo the rollback (probe, 2026-12).
        return {
            **result,
            "outcome": "unchanged",
            "promote": False,
            "reasons": [
                f"version {version} was champion and was replaced by version {replaced}: not "
                f"judged again unless named (`parcelrisk promote --version {version}`)"
            ],
        }

    comparison = compare_versions(
        client,
        params,
        champion=champion,
        version=version,
        features_dir=features_dir,
        champion_features_dir=champion_features_dir,
        ground_truth_path=ground_truth_path,
    )
    decision, per_model = comparison.decision, comparison.per_model
    outcome = promotion_outcome(decision, force)
    reasons = [*decision.reasons, *comparison.notes]
    if decision.not_compared and outcome == "refused":
        reasons = [
            *reasons,
            "`parcelrisk promote --force --reason TEXT` promotes the challenger anyway "
            "(recorded as forced, without a comparison)",
        ]
    lanes = _hand_over_lanes(client, name, champion, version, promoted=outcome != "refused")
    if lanes.reasons:
        # said with the gate's reasons (stdout, the report, the version's tags and history)
        decision = replace(decision, reasons=[*decision.reasons, *lanes.reasons])
        reasons = [*reasons, *lanes.reasons]
    gate = gate_metrics(per_model)
    if comparison.confidence is not None:
        metric, share, _ = comparison.confidence
        gate[f"confidence.{metric}"] = share
    record_decision(
        client,
        name,
        version,
        decision,
        champion_before=champion,
        outcome=outcome,
        force_reason=reason if outcome == "forced" else None,
        metrics=gate,
        lanes=lanes.record,
    )
    return {
        **result,
        "outcome": outcome,
        "promote": outcome in ("promoted", "forced"),
        "reasons": reasons,
        "comparison": comparison_of(decision),
        "metrics": gate,
        "holdout_parcels": comparison.parcels,
        "lanes": lanes.record,
    }


def _hand_over_lanes(
    client: MlflowClient, name: str, champion: str, version: str, *, promoted: bool
) -> LaneHandover:
    """What the promotion does to the lane rates in force (``models.lane_versions``: a decided
    capacity carries over to the new champion), put in force on ``version`` before the alias
    moves to it: a worker never loads the new champion at rates nobody chose. Run before
    ``record_decision``, which may still find the champion moved and record nothing; the
    carried thresholds then stay on a version that is not champion, recorded with why, and a
    later promote of it finds them in force (said "kept")."""
    from models.lane_versions import apply_lane_handover, plan_lane_handover, read_lane_policy

    handover = plan_lane_handover(
        read_lane_policy(client, name, champion),
        read_lane_policy(client, name, version),
        promoted=promoted,
    )
    if handover.not_carried is not None:
        logger.warning("version %s: %s", version, handover.reasons[0])
    if promoted:
        apply_lane_handover(client, name, version, handover, set_by=operator_name())
    return handover
