"""What ``parcelrisk monitor`` reads and writes: a period of the decision store (read-only), the
champion's bundle and its lane targets from MLflow, and the report logged back to its run."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pandas.api.types import union_categoricals

from features.errors import ParcelriskError
from serving.outcomes import CURRENT_RESULTS
from serving.store_read import json_flag

if TYPE_CHECKING:
    from collections.abc import Sequence

    from models.bundle import RiskModel

# A declaration scored twice (a resubmission) counts once, as first scored: the monitor reads
# traffic, and traffic is declarations. Its result, where one is stored, joined beside it. No
# ids: nothing computed from a period names a decision, and they held ~0.06 KB of each. The
# window's subquery reads only what the frame holds, the JSON documents' two numbers and flag
# read there: under ``SELECT *`` SQLite's sort for ROW_NUMBER carried every row's declaration
# JSON and feature vector (``benchmarks/monitor_scale.py``).
_PERIOD = """
SELECT {columns}
FROM (
    SELECT declaration_id, declared_at, seq{decided},
           ROW_NUMBER() OVER (PARTITION BY declaration_id ORDER BY scored_at, seq) AS n
    FROM decisions WHERE declared_at >= {p} AND declared_at < {p}
) AS d {outcome_join}
WHERE d.n = 1
ORDER BY d.declared_at{order}, d.seq{order}{limit}
"""
# read_period's frame, in order; the last three from the results
PERIOD_COLUMNS = (
    "declared_at", "manifest_fingerprint", "model_name", "model_version", "thresholds_version",
    "exploration_rate", "aeo_risk_discount", "risk", "expected_revenue", "lane", "exploration",
    "features", "aeo_operator", "warning_codes", "currency", "hs6", "operator_id", "has_result",
    "illicit", "revenue_recovered",
)  # fmt: skip
_WITH_OUTCOMES = (
    {"has_result": "o.declaration_id IS NOT NULL", "illicit": "o.illicit",
     "revenue_recovered": "o.revenue_recovered"},
    f"LEFT JOIN {CURRENT_RESULTS} AS o ON o.declaration_id = d.declaration_id",
)  # fmt: skip
_WITHOUT_OUTCOMES = ({"has_result": "0", "illicit": "NULL", "revenue_recovered": "NULL"}, "")
_DECLARED_IN = "SELECT COUNT(*) FROM decisions WHERE declared_at >= {p} AND declared_at < {p}"
# Feature vectors a monitor compares with the reference at most, per period read: PSI over
# ten bins is as sure of 250,000 as of millions, and a week at a million decisions a day held
# every vector (~0.8 KB stored, ~1.1 KB as a matrix row): every k-th decision by seq keeps one
DRIFT_VECTORS = 250_000
# rows read from the store at a time (``ReadOnlyStore.query_chunks``): a chunk is Python tuples
# of ~2 KB a row until typed; 300,000 decisions peaked 130 MB lower at 20,000 than at 100,000
# (``benchmarks/monitor_scale.py``), and read no slower
_CHUNK_ROWS = 20_000
# the period's text columns: a few values repeated in every row
CATEGORIES = ("manifest_fingerprint", "model_name", "model_version", "thresholds_version", "lane",
              "warning_codes", "currency", "hs6", "operator_id")  # fmt: skip


def declared_in(location: str | Path, declared_from: str, declared_to: str) -> int:
    """How many decisions of the store were declared in [``declared_from``, ``declared_to``)
    (an index read: ``decisions_declared``)."""
    from serving.store_read import read_only

    with read_only(location) as store:
        if "decisions" not in store.tables():
            raise ParcelriskError(
                f"decision store {store.location}: no decisions table (nothing scored)"
            )
        _, ((declared,),) = store.query(_DECLARED_IN, (declared_from, declared_to))
    return int(declared)


def read_period(
    location: str | Path,
    declared_from: str,
    declared_to: str,
    newest: int | None = None,
    vectors_at_most: int | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The decisions declared in [``declared_from``, ``declared_to``) (the store's time text),
    one per declaration, with their inspection result where stored (``has_result``); from a
    SQLite file or a PostgreSQL database, read only (``serving.store_read``). ``newest``: only
    the latest that many (newest first), where a share is all that is asked of them.
    ``vectors_at_most``: feature vectors (``features``) of about that many decisions, every
    k-th by seq, the others' None. ``columns``: only these of ``PERIOD_COLUMNS`` (in its order;
    the results joined only when one of theirs is asked), where a period is read for a part
    of what is measured (the period before, for drift alone).

    Read ``_CHUNK_ROWS`` at a time into typed columns, each decision's lane policy as the two
    numbers read of it: ``monitor`` on 300,000 decisions peaked at 1.7 GB, ~4.5 KB a decision
    (its rows as Python tuples, each policy's JSON text, every vector), so a week of a national
    hub's traffic would not fit in memory. The text a period repeats in every row (model,
    thresholds version, manifest, lane: ``CATEGORIES``) is held as ``category``, a byte or two a
    row: as text it was ~0.1 KB a decision (``benchmarks/monitor_scale.py``)."""
    import math

    from serving.store_read import read_only

    wanted = PERIOD_COLUMNS if columns is None else tuple(c for c in PERIOD_COLUMNS if c in columns)
    if columns is not None and (not wanted or set(columns) - set(wanted)):
        raise ValueError(f"read_period: columns {list(columns)}: not in {list(PERIOD_COLUMNS)}")
    with read_only(location) as store:
        tables = store.tables()
        if "decisions" not in tables:
            raise ParcelriskError(
                f"decision store {store.location}: no decisions table (nothing scored)"
            )
        every = 1
        if vectors_at_most is not None:
            _, ((declared,),) = store.query(_DECLARED_IN, (declared_from, declared_to))
            every = max(1, math.ceil(int(declared) / max(1, vectors_at_most)))
        results, join = _WITH_OUTCOMES if "outcomes" in tables else _WITHOUT_OUTCOMES
        # read in the subquery: a document's numbers, not the document, go through its sort
        decided = {
            "exploration_rate": store.json_text("lane_policy", "exploration_rate"),
            "aeo_risk_discount": store.json_text("lane_policy", "aeo_risk_discount"),
            "aeo_operator": store.json_text("declaration_json", "aeo_operator"),
            # the codes say which lanes policy raised (``measure_lane_shares``); a store from
            # before decisions recorded codes has none
            "warning_codes": "warning_codes_json"
            if "warning_codes_json" in store.columns("decisions")
            else "''",
            "currency": store.json_text("declaration_json", "currency"),
            # the HS6 declared: codes the model never learned are named (a new HS edition)
            "hs6": f"substr({store.json_text('declaration_json', 'hs_code')}, 1, 6)",
            # whose export each declaration came from: a broken feed's alert names the carrier
            # (``serving.monitor.sources``)
            "operator_id": store.json_text("declaration_json", "operator_id"),
            # seq modulo k in integer arithmetic: '%' is psycopg's placeholder mark, and
            # SQLite's mod() is an optional build
            "features": "features"
            if every == 1
            else f"CASE WHEN seq - (seq / {every}) * {every} = 0 THEN features END",
        }
        own = [c for c in wanted if c not in results and c != "declared_at"]
        query = _PERIOD.format(
            columns=", ".join(f"{results[c] if c in results else 'd.' + c} AS {c}" for c in wanted),
            decided="".join(f", {decided.get(c, c)} AS {c}" for c in own),
            outcome_join=join if any(c in results for c in wanted) else "",
            p="{p}",
            order=" DESC" if newest is not None else "",
            limit=f" LIMIT {int(newest)}" if newest is not None else "",
        )
        parts, names = [], None
        for names, rows in store.query_chunks(query, (declared_from, declared_to), _CHUNK_ROWS):
            parts.append(_typed(pd.DataFrame(rows, columns=names)))
            del rows
    if not parts:
        return _typed(pd.DataFrame(columns=names or list(wanted)))
    return _concat(parts)


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The chunks as one frame, each ``CATEGORIES`` column still ``category``: pandas concatenates
    categoricals of different categories as text, so every chunk first takes the union of
    them (sorted, as ``astype("category")`` sorts: the frame is the same however it was
    chunked)."""
    if len(parts) == 1:
        return parts[0]
    for column in (c for c in CATEGORIES if c in parts[0]):
        union = union_categoricals([p[column] for p in parts], sort_categories=True).categories
        for p in parts:
            p[column] = p[column].cat.set_categories(union)
    return pd.concat(parts, ignore_index=True)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """A chunk of the period's rows (those of its columns read) as the monitor reads them."""
    for column in (c for c in CATEGORIES if c in frame):
        frame[column] = frame[column].astype("category")
    if "declared_at" in frame:
        frame["declared_at"] = pd.to_datetime(frame["declared_at"], utc=True, format="ISO8601")
    for column in (c for c in ("exploration", "has_result") if c in frame):
        frame[column] = frame[column].fillna(0).astype(bool)
    if "aeo_operator" in frame:
        frame["aeo_operator"] = json_flag(frame["aeo_operator"])
    numbers = ("risk", "expected_revenue", "illicit", "revenue_recovered", "exploration_rate")
    for column in (c for c in (*numbers, "aeo_risk_discount") if c in frame):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    if "aeo_risk_discount" in frame:
        frame["aeo_risk_discount"] = frame["aeo_risk_discount"].fillna(1.0)  # none: no discount
    return frame


def load_champion_bundle(
    tracking_uri: str | None, name: str, alias: str
) -> tuple[RiskModel, dict[str, str], Any]:
    """The bundle behind ``name@alias`` (not its entity state: the monitor never scores),
    {name, version, run_id, alias} and the MLflow client."""
    from models.registry import registry_client, require_tracking_store, resolve_tracking_uri

    client = registry_client(require_tracking_store(tracking_uri))
    where = f"the registry at {resolve_tracking_uri(tracking_uri)}"
    model, info = champion_bundle(client, name, alias, where)
    return model, info, client


def champion_bundle(
    client: Any, name: str, alias: str, registry: str = "the registry"
) -> tuple[RiskModel, dict[str, str]]:
    """``load_champion_bundle`` on a client at hand (``registry``: where, for the error)."""
    from mlflow.exceptions import MlflowException

    from models.bundle import RiskModel
    from models.lane_versions import tagged_thresholds
    from models.registry import BUNDLE_ARTIFACT, alias_version

    version = alias_version(client, name, alias)
    if version is None:
        raise ParcelriskError(
            f"no model {name!r}@{alias} in {registry}: "
            "nothing to monitor against (train and promote a model first)"
        )
    model_version = client.get_model_version(name, version)
    run_id = model_version.run_id
    dst = Path(tempfile.mkdtemp(prefix="parcelrisk-monitor-"))
    try:
        bundle = Path(client.download_artifacts(run_id, BUNDLE_ARTIFACT, str(dst)))
    except (MlflowException, OSError) as exc:
        raise ParcelriskError(
            f"model {name!r} version {version} (run {run_id}): bundle missing: {exc}"
        ) from exc
    info = {"name": name, "version": str(version), "run_id": run_id, "alias": alias}
    model = RiskModel.load(bundle)
    # the thresholds in force: the last `parcelrisk lanes set`, else training's
    tagged = tagged_thresholds(dict(model_version.tags or {}))
    if tagged is not None:
        model = replace(model, thresholds=tagged)
    return model, info


def lane_targets_of_versions(
    client: Any, name: str, versions: set[tuple[str, str]]
) -> dict[str, tuple[float, float]]:
    """The targets of every thresholds version the runs of these model versions (``versions``:
    (model name, version), as the decisions record them) hold: a period straddling a
    promotion holds decisions laned with the previous champion's cut-offs, which the
    champion's run does not know (judged "unknown" before: probe, 2026-12). A version the
    registry no longer has, or another model name, is skipped: its targets stay unknown."""
    from mlflow.exceptions import MlflowException

    out: dict[str, tuple[float, float]] = {}
    for model_name, version in sorted(versions):
        if model_name != name:
            continue
        try:
            run_id = client.get_model_version(name, version).run_id
        except MlflowException:
            continue
        out.update(read_lane_targets(client, run_id))
    return out


def read_lane_targets(client: Any, run_id: str) -> dict[str, tuple[float, float]]:
    """thresholds version -> (red_rate, yellow_rate) of every thresholds version of the run:
    training's and each ``parcelrisk lanes set`` (``models.lane_versions``); none: {}."""
    from models.lane_versions import thresholds_history

    out: dict[str, tuple[float, float]] = {}
    for record in thresholds_history(client, run_id):
        try:
            out[str(record["version"])] = (float(record["red_rate"]), float(record["yellow_rate"]))
        except (KeyError, TypeError, ValueError):
            continue  # a record this reader cannot use: those targets stay unknown
    return out


def log_report(client: Any, run_id: str, files: list[Path], artifact_path: str) -> None:
    """The report's files logged to the champion's run (a finished run takes artifacts too)."""
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path)
