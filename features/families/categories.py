"""Categories family: categorical fields as integer codes fixed in the manifest.

Codes follow first-seen order in the (time-sorted) history, so a declaration's code never
depends on what was declared after it: truncating the history keeps every earlier row's codes.
LightGBM treats the codes as unordered categories; -1 (unknown, null, or a level seen after
``max_categories`` others) reaches the model as NaN (``FeatureManifest.matrix``).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from features.intake.contract import Contract
from features.notes import CATEGORY_UNKNOWN, RowNote
from features.params import FeatureParams
from features.pipeline.family import Family, History, Rows, SpecContext, Values
from features.pipeline.history import codes_of
from features.pipeline.manifest import FeatureSpec
from features.pipeline.prepare import Prepared, categorical_columns

PREFIX = "cat_"


def learn_categories(
    prep: Prepared, params: FeatureParams, contract: Contract
) -> dict[str, tuple[str, ...]]:
    """Levels of each categorical column in order of first appearance (``prep`` sorted by time),
    the first ``max_categories`` of them; later levels code as unknown (-1)."""
    out = {}
    for column in categorical_columns(params, contract):
        # the distinct values first, then the missing one dropped: the same levels in the
        # same order, without testing a million rows for missing
        levels = [v for v in pd.unique(prep[column]) if not pd.isna(v)][: params.max_categories]
        if len(levels):  # a column without values (absent from the export) has no feature
            out[f"{PREFIX}{column}"] = tuple(str(v) for v in levels)
    return out


@functools.lru_cache(maxsize=256)
def _category_lookup(categories: tuple[str, ...]) -> dict[str, int]:
    """category -> code; anything else (unknown, null) maps to -1."""
    return {category: code for code, category in enumerate(categories)}


def coded_column(spec: FeatureSpec) -> str | None:
    """The prepared column a category feature of this family codes (``cat_hs6`` -> ``hs6``);
    None for any other feature (the watchlist's categories code no column of the declaration)."""
    if spec.dtype != "category" or not spec.name.startswith(PREFIX):
        return None
    return spec.name.removeprefix(PREFIX)


def _own(categories: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """The categorical columns among a manifest's category features (other families, such as
    the watchlist, declare category features of their own)."""
    return {name: levels for name, levels in categories.items() if name.startswith(PREFIX)}


class Categories(Family):
    name = "categories"
    distribution = "rows"

    def specs(self, ctx: SpecContext) -> list[FeatureSpec]:
        specs = []
        for name, levels in _own(ctx.categories).items():
            column = name.removeprefix(PREFIX).replace("_", " ")
            specs.append(
                FeatureSpec(
                    name,
                    "declaration",
                    "category",
                    f"{column} (category code).",
                    f"{column} is {{value}}",
                    categories=levels,
                )
            )
        return specs

    def compute(self, rows: Rows, part: None = None) -> Values:
        return {
            name: codes_of(
                _category_lookup(levels), rows.prep[name.removeprefix(PREFIX)], dtype=np.float64
            )
            for name, levels in _own(rows.categories).items()
        }

    def batch(self, history: History) -> Values:
        """``compute`` through the history's codes of each column: a lookup per distinct value,
        not per row."""
        out = {}
        for name, levels in _own(history.categories).items():
            codes, values = history.column_codes(name.removeprefix(PREFIX))
            of_value = codes_of(_category_lookup(levels), values, dtype=np.float64)
            out[name] = np.append(of_value, -1.0)[codes]  # code -1 (missing): the last, -1
        return out

    def warnings(self, rows: Rows, values: Values, part: object) -> list[RowNote]:
        out = []
        for name in _own(rows.categories):
            column = name.removeprefix(PREFIX)
            unknown = values[name] < 0
            if unknown.any():  # nulls are not "unknown": ask pandas only when a code is missing
                unknown &= ~pd.isna(rows.prep[column])
            for i in np.flatnonzero(unknown):
                message = (
                    f"{column} {rows.prep[column][i]!r} unknown to the model: scored as 'other'"
                )
                out.append(RowNote(int(i), message, CATEGORY_UNKNOWN))
        return out


FAMILY = Categories()
