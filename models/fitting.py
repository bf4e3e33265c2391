"""How a booster is fitted: the ``BoosterFitter`` seam of ``models.train``, and ``LocalFitter``.

``train_models`` fits every booster (risk, revenue, offence kind, the distilled revenue model)
through one fitter: ``LocalFitter`` runs ``lgb.train`` in this process, ``models.dask_train``'s
``DaskFitter`` runs ``lightgbm.dask`` on a cluster. Both return plain local ``lgb.Booster``
objects, so nothing downstream knows which fitted them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import lightgbm as lgb


@dataclass(frozen=True)
class FittedBooster:
    booster: lgb.Booster
    rounds: int  # trees kept: the best iteration on validation
    hit_round_cap: bool  # early stopping never triggered: more rounds might still help


@dataclass(frozen=True)
class BoosterData:
    """The rows one booster is fitted on, with the names and categorical columns LightGBM sees."""

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    categorical: list[int]  # column positions
    weight: np.ndarray | None = None


class BoosterFitter(Protocol):
    """How every booster of ``train_models`` is fitted; ``params``: ``lgb.train`` parameters."""

    engine: str  # recorded with the run: "pandas" or "dask"

    def fit_early_stopped(
        self,
        params: dict[str, Any],
        train: BoosterData,
        valid: BoosterData,
        n_estimators: int,
        stopping_rounds: int,
    ) -> FittedBooster:
        """At most ``n_estimators`` rounds, kept up to the best iteration on ``valid`` by
        ``lgb.early_stopping(stopping_rounds)``'s rule."""
        ...

    def fit_rounds(self, params: dict[str, Any], train: BoosterData, rounds: int) -> lgb.Booster:
        """Exactly ``rounds`` rounds, no validation."""
        ...


class LocalFitter:
    """``lgb.train`` in this process, with LightGBM's own early stopping."""

    engine = "pandas"

    def fit_early_stopped(
        self,
        params: dict[str, Any],
        train: BoosterData,
        valid: BoosterData,
        n_estimators: int,
        stopping_rounds: int,
    ) -> FittedBooster:
        import lightgbm as lgb

        train_set = _dataset(train)
        valid_set = lgb.Dataset(valid.X, valid.y, reference=train_set)
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=n_estimators,
            valid_sets=[valid_set],
            valid_names=["validation"],
            callbacks=[lgb.early_stopping(stopping_rounds, verbose=False)],
        )
        hit_cap = booster.current_iteration() >= n_estimators
        best = booster.best_iteration or booster.current_iteration()
        return keep_best(booster, best, hit_cap)

    def fit_rounds(self, params: dict[str, Any], train: BoosterData, rounds: int) -> lgb.Booster:
        import lightgbm as lgb

        return lgb.train(params, _dataset(train), num_boost_round=rounds)


def keep_best(booster: lgb.Booster, best: int, hit_round_cap: bool) -> FittedBooster:
    """Only the trees up to ``best``, so the in-memory model and the saved bundle score
    identically whatever num_iteration a caller passes."""
    import lightgbm as lgb

    kept = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    return FittedBooster(kept, kept.current_iteration(), hit_round_cap)


def _dataset(data: BoosterData) -> lgb.Dataset:
    import lightgbm as lgb

    dataset = lgb.Dataset(
        data.X,
        data.y,
        feature_name=data.feature_names,
        categorical_feature=data.categorical,
        free_raw_data=True,
    )
    if data.weight is not None:
        dataset.set_weight(data.weight)
    return dataset
