"""The Dask engine of ``parcelrisk train``: every booster fitted by ``lightgbm.dask`` on a cluster.

``DaskFitter`` is ``models.train``'s ``BoosterFitter`` for ``engine="dask"``. The booster fits
run on the cluster's workers, data-parallel (each worker holds one chunk of the rows and LightGBM's
workers sum their histograms); the fitted model comes back as a plain local ``lgb.Booster``, so
calibration, thresholds, evaluation, SHAP, the bundle and the registry are the pandas engine's.
The feature frame is still read and split in this process: only the fits are distributed.

``lightgbm.dask`` has no early stopping, so the first pass fits ``n_estimators`` rounds on the
cluster and chooses the best iteration here, from the validation metric of every iteration
(``validation_curve``, LightGBM's own metric for the objective, computed from staged raw scores)
by ``lgb.early_stopping``'s rule (``early_stopping_iteration``). That costs the rounds early
stopping would have saved (about ``n_estimators`` / (best + ``early_stopping_rounds``) times the
trees of the first pass); the refit fits only the chosen rounds.

The trees are not ``lgb.train``'s (each worker bins some of the features on its own rows, and the
workers' histograms are summed), and not always the same from run to run: lightgbm.dask ranks the
workers in the order of a set of task keys, and which worker bins which features follows the
rank. On one worker (``DaskFitter(n_workers=1)``) LightGBM fits serially and the trees are
``lgb.train``'s exactly (tested, with the same best iteration).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from features.errors import ParcelriskError
from models.fitting import BoosterData, FittedBooster, keep_best

if TYPE_CHECKING:
    import lightgbm as lgb

log = logging.getLogger(__name__)

BLOCKS_PER_WORKER = 4  # row blocks dealt to each worker in turn (``DaskFitter._to_cluster``)
WORKER_WAIT_S = 30  # for a worker to join a cluster that has none (one restarting)
EPSILON = 1e-15  # LightGBM's kEpsilon: log losses are clipped at -log(1e-15)


# ---------------------------------------------------------------------------------------------
# the cluster


@contextlib.contextmanager
def dask_fitter(scheduler: str | None) -> Iterator[DaskFitter]:
    """A ``DaskFitter`` on the cluster at ``scheduler`` (an address), or on a ``LocalCluster``
    of two single-threaded worker processes started here and closed on exit. An unreachable
    scheduler is a ``ParcelriskError`` naming its address.

    The cluster is opened as ``features build --engine dask`` opens it (``dask_client``): one
    way to reach a cluster for the whole project."""
    from features.pipeline.dask_engine import dask_client

    with dask_client(scheduler) as client:
        if scheduler is None:
            client.run(_stdout_to_devnull)
        yield DaskFitter(client)


def _stdout_to_devnull() -> None:
    # LightGBM's native network code prints to stdout (port binding, "Listening...", connection
    # retries between workers) from threads it starts itself, whatever the booster's verbose
    # says; the workers of a LocalCluster share this process's stdout, where the CLI prints its
    # summary. Only the workers started here are silenced: a cluster given by address is left
    # as its owner set it up. The workers print nothing else (their logging goes to stderr).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


# ---------------------------------------------------------------------------------------------
# fitting


@dataclass
class DaskFitter:
    """``models.train``'s ``BoosterFitter`` on a ``distributed.Client``.

    ``n_workers``: how many workers hold rows (default all of them); with 1, every row is on
    one worker, which LightGBM then fits serially: the trees of ``lgb.train`` in one process."""

    client: Any
    n_workers: int | None = None
    engine = "dask"

    def fit_early_stopped(
        self,
        params: dict[str, Any],
        train: BoosterData,
        valid: BoosterData,
        n_estimators: int,
        stopping_rounds: int,
    ) -> FittedBooster:
        booster = self.fit_rounds(params, train, n_estimators)
        curve = validation_curve(booster, valid.X, valid.y, params)
        best, stopped = early_stopping_iteration(curve, stopping_rounds)
        return keep_best(booster, best, hit_round_cap=stopped >= n_estimators)

    def fit_rounds(self, params: dict[str, Any], train: BoosterData, rounds: int) -> lgb.Booster:
        import lightgbm as lgb

        X, y, weight, held = self._to_cluster(train)
        # The regressor for every objective (binary and multiclass too): the classifier
        # label-encodes y on each worker separately, so a worker whose chunks miss a class
        # would train on shifted labels. The objective in ``params`` decides the loss.
        model = lgb.DaskLGBMRegressor(
            client=self.client, n_estimators=rounds, **_cluster_params(params)
        )
        with _lightgbm_notices_at_debug():
            model.fit(
                X,
                y,
                sample_weight=weight,
                feature_name=train.feature_names,
                categorical_feature=train.categorical,
            )
        del held  # the scattered chunks are released once the fit is done
        return _without_addresses(model.booster_)

    def _to_cluster(self, data: BoosterData) -> tuple[Any, Any, Any, list[Any]]:
        """X, y (and the weights) as Dask arrays of one chunk per worker, held by that worker,
        and the futures of the chunks: the arrays name them but do not keep them alive, so the
        caller holds them until the fit is done (else a worker may drop a chunk mid-fit).

        Rows are dealt in blocks, to each worker in turn, so every worker holds rows from the
        whole period: in a distributed fit each worker bins some of the features on its own
        rows, and one holding a single month would bin them on that month. One chunk per
        worker, not several: lightgbm.dask gathers a worker's chunks in a task the scheduler
        is free to run elsewhere, so with several the rows a worker fits on could change."""
        import dask.array as da

        workers = self._workers()
        workers = workers[: min(self.n_workers or len(workers), len(data.X))]
        n_blocks = len(workers) * BLOCKS_PER_WORKER
        owner = np.arange(len(data.X)) * n_blocks // len(data.X) % len(workers)
        columns: list[list[Any]] = [[], [], []]
        held: list[Any] = []
        for k, worker in enumerate(workers):
            rows = owner == k
            pieces = [data.X[rows], data.y[rows]]
            if data.weight is not None:
                pieces.append(data.weight[rows])
            # hash=False: keys of their own, so a later fit on equal rows never shares a key
            # that this fit's end releases
            futures = self.client.scatter(pieces, workers=[worker], hash=False)
            held.extend(futures)
            for column, piece, future in zip(columns, pieces, futures, strict=False):
                column.append(da.from_delayed(future, shape=piece.shape, dtype=piece.dtype))
        X, y, weight = (da.concatenate(c) if c else None for c in columns)
        return X, y, weight, held

    def _workers(self) -> list[str]:
        """The cluster's worker addresses, sorted; waits a little for one to join."""
        if not self.client.scheduler_info(n_workers=-1)["workers"]:
            try:
                self.client.wait_for_workers(1, timeout=WORKER_WAIT_S)
            except TimeoutError as exc:
                raise ParcelriskError(
                    f"the Dask cluster has no workers (waited {WORKER_WAIT_S} s for one)"
                ) from exc
        return sorted(self.client.scheduler_info(n_workers=-1)["workers"])


def _without_addresses(booster: lgb.Booster) -> lgb.Booster:
    """The booster without the workers' host:port list its model text keeps from the fit (the
    bundle and MLflow store that text; the run records only how the cluster was found)."""
    import lightgbm as lgb

    text = booster.model_to_string()
    text = re.sub(r"^\[machines: .*\]$", "[machines: ]", text, flags=re.MULTILINE)
    text = re.sub(r"^\[local_listen_port: .*\]$", "[local_listen_port: ]", text, flags=re.MULTILINE)
    return lgb.Booster(model_str=text)


def _cluster_params(params: dict[str, Any]) -> dict[str, Any]:
    # lightgbm.dask sets each worker's threads to its Dask thread count and warns about a
    # num_threads it then ignores.
    return {k: v for k, v in params.items() if k != "num_threads"}


@contextlib.contextmanager
def _lightgbm_notices_at_debug() -> Iterator[None]:
    # lightgbm.dask prints "Finding random open ports for workers" on every fit and warns that
    # n_jobs (a constructor default it cannot tell from a user's choice) is ignored: neither is
    # news to the user of a CLI; they go to the debug log.
    printed = io.StringIO()
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(printed),
    ):
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
        yield
    if printed.getvalue().strip():
        log.debug("lightgbm.dask: %s", printed.getvalue().strip())


# ---------------------------------------------------------------------------------------------
# early stopping, emulated


def early_stopping_iteration(curve: Sequence[float], stopping_rounds: int) -> tuple[int, int]:
    """The best iteration (1-based) ``lgb.early_stopping(stopping_rounds)`` would keep for a
    validation ``curve`` (one value per iteration, lower is better), and the number of
    iterations it would have run before stopping (``len(curve)`` when it never stops).

    Its rule: the first iteration is the best so far; a later one replaces it only if strictly
    lower (min_delta 0); training stops at the iteration ``stopping_rounds`` after the best."""
    if not len(curve):
        raise ValueError("an empty validation curve has no best iteration")
    best, best_score = 0, curve[0]
    for i, score in enumerate(curve):
        if score < best_score:
            best, best_score = i, score
        if i - best >= stopping_rounds:
            return best + 1, i + 1
    return best + 1, len(curve)


def validation_curve(
    booster: lgb.Booster, X: np.ndarray, y: np.ndarray, params: dict[str, Any]
) -> np.ndarray:
    """The validation metric after each iteration of ``booster``, as ``lgb.train`` reports it
    to its callbacks: the metric of ``params`` (the objective's default), on raw scores summed
    tree by tree (the same additions, in the same order, as LightGBM's predict). O(trees x rows).
    """
    metric = _metric_of(params)
    label = np.asarray(y, dtype=np.float32).astype(np.float64)  # LightGBM keeps labels as float32
    raw: np.ndarray | float = 0.0  # (rows,) or (rows, classes) after the first tree
    curve = np.empty(booster.current_iteration())
    for i in range(len(curve)):
        raw = raw + booster.predict(X, raw_score=True, start_iteration=i, num_iteration=1)
        curve[i] = metric(label, raw)
    return curve


def _binary_logloss(y: np.ndarray, raw: np.ndarray) -> float:
    p = 1.0 / (1.0 + np.exp(-raw))
    p_label = np.where(y > 0, p, 1.0 - p)
    return float(np.mean(-np.log(np.maximum(p_label, EPSILON))))


def _multi_logloss(y: np.ndarray, raw: np.ndarray) -> float:
    e = np.exp(raw - raw.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    p_label = p[np.arange(len(y)), y.astype(int)]
    return float(np.mean(-np.log(np.maximum(p_label, EPSILON))))


def _gamma_nll(y: np.ndarray, raw: np.ndarray) -> float:
    # LightGBM's "gamma" metric, the negative log-likelihood with psi = 1 on mu = exp(raw):
    # -((y * theta - b) + c), theta = -1/mu, b = -log(-theta). Its c = log(y) - log(y) is not
    # quite 0 there (one log in float32: about 1e-10 on the mean); it is the same at every
    # iteration, so it cannot move the best one, and is left out.
    theta = -1.0 / np.exp(raw)
    return float(np.mean(-(y * theta + np.log(-theta))))


def _l2(y: np.ndarray, raw: np.ndarray) -> float:
    return float(np.mean((raw - y) ** 2))


# The objectives' default metrics (LightGBM's names), for the objectives train_models fits.
METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "binary_logloss": _binary_logloss,
    "multi_logloss": _multi_logloss,
    "gamma": _gamma_nll,
    "l2": _l2,
}
DEFAULT_METRIC = {
    "binary": "binary_logloss",
    "multiclass": "multi_logloss",
    "gamma": "gamma",
    "regression": "l2",
}


def _metric_of(params: dict[str, Any]) -> Callable[[np.ndarray, np.ndarray], float]:
    name = params.get("metric") or DEFAULT_METRIC.get(params["objective"], "")
    if name not in METRICS:
        raise ParcelriskError(
            f"the dask engine cannot early-stop objective {params['objective']!r}"
            f"{f' on metric {name!r}' if name else ''} (it knows {', '.join(METRICS)})"
        )
    return METRICS[name]
