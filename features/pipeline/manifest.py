"""The feature manifest: the single source of the feature list.

Written by ``features build`` beside ``features.parquet``; read by training (column order,
categorical columns), stored with the model in MLflow, and read by the service to turn SHAP
contributions into sentences. Nothing else spells the feature list.

Reason templates are ``str.format`` strings. Placeholders:
- ``{value}`` the feature value (floats accept format specs, e.g. ``{value:.0%}``; categorical
  features get their label);
- any name in ``REASON_CONTEXT`` taken from the declaration (``{hs6}``, ``{origin_country}``...).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from features.errors import ParcelriskError

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

    import numpy as np
    import pandas as pd

FeatureDtype = Literal["float", "int", "category"]

ID_COLUMNS = ("declaration_id", "declared_at")
LABEL_COLUMNS = (
    "inspected",
    "inspected_at",
    "illicit",
    "offence_type",
    "revenue_recovered",
    "selection_reason",
)
# Declaration-derived values a reason template may name; features.parquet keeps them too,
# so a reason can be rendered for any past decision without the raw declarations.
REASON_CONTEXT = (
    "hs_code",
    "hs6",
    "hs_chapter",
    "origin_country",
    "seller_country",
    "seller_id",
    "consignee_id",
    "platform_id",
    "operator_id",
    "currency",
)

# Values a family computes online for its reasons alone, each with the feature whose value
# they explain: not model inputs, not in features.parquet. A spec's ``reason_detail`` names
# them; it is used only where the context holds them (a served decision), ``reason`` elsewhere.
DERIVED_CONTEXT = {
    "description_word": "text_word_hit_rate_max",
    "description_in_pairs": "description_n_tokens",
}
# The online context's per-row tuple of the fields the served model reads that the
# declaration left empty: a feature without a value says which ("no description declared").
UNDECLARED = "undeclared"

MANIFEST_FILE = "feature_manifest.json"


@dataclass(frozen=True)
class FeatureSpec:
    """One model input: how it is typed, grouped and explained to people."""

    name: str
    group: str
    dtype: FeatureDtype
    description: str
    reason: str
    categories: tuple[str, ...] | None = (
        None  # category features: code i means categories[i]; -1 unknown
    )
    # the reason where the context holds what it names beyond ``reason`` (``DERIVED_CONTEXT``):
    # "the description's word 'kratom' ..." where ``reason`` can only say "a word ..."
    reason_detail: str | None = None


def priced_in(specs: list[FeatureSpec], currency: str) -> list[FeatureSpec]:
    """``specs`` of values in the base currency, their texts naming ``currency``.

    Their names keep ``_eur`` (a model's columns must not change with a setting); what people
    read says the currency the numbers are in: "declared XOF 26,836 below the usual value",
    not EUR (probe, 2026-12). Revenue features stay EUR: recovered revenue is in EUR."""
    import dataclasses

    if currency == "EUR":
        return specs
    return [
        dataclasses.replace(
            spec,
            description=spec.description.replace("EUR", currency),
            reason=spec.reason.replace("EUR", currency),
            reason_detail=spec.reason_detail and spec.reason_detail.replace("EUR", currency),
        )
        for spec in specs
    ]


def _spec_json(spec: FeatureSpec) -> dict[str, Any]:
    categories = list(spec.categories) if spec.categories is not None else None
    out = {**asdict(spec), "categories": categories}
    if spec.reason_detail is None:
        # left out, not null: a manifest written before the field keeps its JSON, and so the
        # fingerprint its model's decisions were stamped with
        del out["reason_detail"]
    return out


@dataclass(frozen=True)
class FeatureManifest:
    features: tuple[FeatureSpec, ...]
    params: dict[str, Any] = field(default_factory=dict)  # the feature params that built them
    # Contract fields and extras the history holds values for: the families built from them.
    # None: a manifest from before inputs were recorded (every family was built).
    inputs: tuple[str, ...] | None = None

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @functools.cached_property
    def categories(self) -> dict[str, tuple[str, ...]]:
        """Categorical feature -> its levels in code order."""
        return {f.name: f.categories or () for f in self.features if f.dtype == "category"}

    @property
    def categorical_names(self) -> list[str]:
        return [f.name for f in self.features if f.dtype == "category"]

    def spec(self, name: str) -> FeatureSpec:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def select(self, names: Collection[str]) -> FeatureManifest:
        """The manifest of a subset of features, in manifest order, with the same params."""
        wanted = set(names)
        unknown = sorted(wanted - set(self.names))
        if unknown:
            raise ParcelriskError(f"not in the feature manifest: {', '.join(unknown[:10])}")
        return FeatureManifest(
            tuple(f for f in self.features if f.name in wanted), self.params, self.inputs
        )

    @functools.cached_property
    def fingerprint(self) -> str:
        """Stable hash of the feature list and params: model and entity state must agree on it.

        Cached: the manifest is immutable once built, and the service stamps every decision.
        """
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def groups(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for f in self.features:
            counts[f.group] = counts.get(f.group, 0) + 1
        return counts

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The model input matrix (float64, manifest column order; unknown categories are NaN)."""
        import numpy as np

        k = len(self.names)
        if frame.columns[-k:].tolist() == self.names and not frame.columns.has_duplicates:
            # a frame from build.assemble: the features are its trailing float block
            out = frame.iloc[:, -k:].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
        else:
            missing = [n for n in self.names if n not in frame.columns]
            if missing:
                raise ParcelriskError(
                    f"feature frame lacks manifest columns: {', '.join(missing[:10])}"
                )
            out = frame[self.names].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
        return self._unknown_categories_as_nan(out)

    def matrix_of(self, values: Mapping[str, np.ndarray], n_rows: int) -> np.ndarray:
        """The model input matrix straight from feature arrays (``name -> n_rows values``).

        What ``matrix`` gives for the frame ``build.assemble`` makes of the same values, without
        building the frame: online, per request, that saves about a millisecond.
        """
        import numpy as np

        names = self.names
        missing = [n for n in names if n not in values]
        if missing:
            raise ParcelriskError(
                f"feature values lack manifest columns: {', '.join(missing[:10])}"
            )
        out = np.empty((n_rows, len(names)), dtype=np.float64)
        for j, name in enumerate(names):
            out[:, j] = values[name]
        return self._unknown_categories_as_nan(out)

    def _unknown_categories_as_nan(self, out: np.ndarray) -> np.ndarray:
        """Category codes below 0 (unknown to the model) become NaN, in place."""
        import numpy as np

        categorical = self._categorical_positions
        if categorical:
            codes = out[:, categorical]
            codes[codes < 0] = np.nan
            out[:, categorical] = codes
        return out

    @functools.cached_property
    def _categorical_positions(self) -> list[int]:
        return [j for j, f in enumerate(self.features) if f.dtype == "category"]

    def to_json(self) -> str:
        payload = {
            "features": [_spec_json(f) for f in self.features],
            "params": self.params,
        }
        if self.inputs is not None:
            payload["inputs"] = list(self.inputs)
        return json.dumps(payload, indent=1, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> FeatureManifest:
        try:
            payload = json.loads(text)
            specs = tuple(
                FeatureSpec(
                    **{
                        **f,
                        "categories": tuple(f["categories"])
                        if f.get("categories") is not None
                        else None,
                    }
                )
                for f in payload["features"]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ParcelriskError(f"feature manifest is malformed: {exc}") from exc
        inputs = payload.get("inputs")
        return cls(
            features=specs,
            params=payload.get("params", {}),
            inputs=tuple(inputs) if inputs is not None else None,
        )

    def write(self, directory: Path) -> Path:
        from features.intake.io import atomic_write

        path = Path(directory) / MANIFEST_FILE
        text = self.to_json()
        atomic_write(path, lambda tmp: tmp.write_text(text))
        return path

    @classmethod
    def read(cls, directory_or_file: Path) -> FeatureManifest:
        path = Path(directory_or_file)
        if path.is_dir():
            path = path / MANIFEST_FILE
        if not path.exists():
            raise ParcelriskError(
                f"feature manifest not found: {path} (run `parcelrisk features build`)"
            )
        return cls.from_json(path.read_text())
