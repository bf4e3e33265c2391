"""HS heading value family (optional): unit value against the past median of its HS heading.

The HS6 references of the valuation family need ``min_reference_count`` past declarations of
the same subheading; a rare or newly used HS6 has none. Its heading (first four digits) usually
has, so an undervalued parcel under a rare subheading is still compared with something.
References are refitted per period on the declarations before the period's cut, like valuation
(and in the live state too).
Enable with ``features.extra_families: [hs_heading_value]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.pipeline.family import History, Rows, SpecContext, Values
from features.pipeline.history import codes_of
from features.pipeline.manifest import FeatureSpec
from features.pipeline.refit import Evidence, RefitFamily, RefitPart

RATIO = "unit_value_ratio_hs_heading"
COUNT = "reference_count_hs_heading"


@dataclass(frozen=True)
class HeadingReferences:
    """Median log unit value and the count behind it, per HS heading."""

    table: pd.DataFrame  # index hs_heading; columns median, count

    def lookup(self, headings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(median log unit value, count) per heading; NaN and 0 for headings never seen."""
        at = codes_of({h: i for i, h in enumerate(self.table.index.tolist())}, headings)
        median = self.table["median"].to_numpy(np.float64)
        count = self.table["count"].to_numpy(np.float64)
        if not len(median):
            return np.full(len(at), np.nan), np.zeros(len(at))
        safe = np.maximum(at, 0)
        return np.where(at >= 0, median[safe], np.nan), np.where(at >= 0, count[safe], 0.0)


def _log_unit_value(rows: Rows) -> np.ndarray:
    """Per item where the history declares quantities, else per kg (the unit every export has)."""
    per_item = rows.manifest.inputs is None or "quantity" in rows.manifest.inputs
    return rows.prep["log_value_per_item" if per_item else "log_value_per_kg"]


def fit_heading_references(rows: Rows, before: slice | np.ndarray) -> HeadingReferences:
    """Medians over the rows ``before`` (the past); NaN unit values (no exchange rate) skipped."""
    return heading_references(
        _log_unit_value(rows)[before], np.asarray(rows.prep["hs_heading"][before], dtype=object)
    )


def heading_references(log_unit_values: np.ndarray, headings: np.ndarray) -> HeadingReferences:
    """Median log unit value and count per heading (None: no group) of these declarations."""
    by_heading = pd.Series(log_unit_values).groupby(headings)
    table = pd.DataFrame({"median": by_heading.median(), "count": by_heading.count()})
    table.index = table.index.astype(str)
    return HeadingReferences(table.astype(np.float64))


class HsHeadingValue(RefitFamily):
    name = "hs_heading_value"
    distribution = "keys"

    def partition_keys(self, ctx: SpecContext) -> tuple[str, ...]:
        return ("hs_heading",)

    optional = True

    def specs(self, ctx: SpecContext) -> list[FeatureSpec]:
        return [
            FeatureSpec(
                RATIO,
                "valuation",
                "float",
                "Unit value (per kg without quantities) / median of past declarations of the HS heading (empty if too few).",
                "declared unit value is {value:.0%} of the past median for the heading of HS {hs_code}",
            ),
            FeatureSpec(
                COUNT,
                "valuation",
                "float",
                "Past declarations behind the HS heading reference.",
                "only {value:.0f} past declarations of the heading of HS {hs_code} to compare with",
            ),
        ]

    def compute(self, rows: Rows, part: HeadingReferences | None = None) -> Values:
        refs = (
            part
            if part is not None
            else HeadingReferences(pd.DataFrame(columns=["median", "count"]))
        )
        median, count = refs.lookup(rows.prep["hs_heading"])
        reliable = count >= rows.params.min_reference_count
        return {
            RATIO: np.where(reliable, np.exp(_log_unit_value(rows) - median), np.nan),
            COUNT: count,
        }

    def batch(self, history: History) -> Values:
        return history.by_refit_period(
            self.name, lambda h, before, _: fit_heading_references(h, before), self.compute
        )

    def fit_before(self, history: History, cut_us: int) -> HeadingReferences:
        return fit_heading_references(history, history.prep["t_us"] < cut_us)

    def evidence_of_rows(self, rows: Rows) -> dict[str, np.ndarray]:
        return {"hs_heading": rows.prep["hs_heading"], "log_unit_value": _log_unit_value(rows)}

    def fit_evidence(self, evidence: Evidence, rows: Rows) -> HeadingReferences:
        frame = evidence.get("declared")
        if frame is None or not len(frame):
            return HeadingReferences(pd.DataFrame(columns=["median", "count"]))
        every = np.repeat(np.arange(len(frame)), frame["n"].to_numpy(np.int64))
        return heading_references(
            frame["log_unit_value"].to_numpy(np.float64)[every],
            frame["hs_heading"].to_numpy(object, na_value=None)[every],
        )

    def merge_snapshot(
        self,
        pieces: dict[str, list[RefitPart]],
        ctx: SpecContext,
        outcomes: dict,
        cutoff_us: int,
    ) -> RefitPart:
        """Rows of disjoint headings: their tables together, sorted by heading."""
        parts = pieces["hs_heading"]
        tables = [p.fitted.table for p in parts if len(p.fitted.table)]
        fitted = HeadingReferences(pd.concat(tables).sort_index()) if tables else parts[0].fitted
        return self.merge_pieces(parts, fitted)

    def save_fitted(self, part: HeadingReferences, directory: Path) -> None:
        part.table.to_parquet(directory / "hs_heading_references.parquet")

    def load_fitted(self, directory: Path) -> HeadingReferences:
        return HeadingReferences(pd.read_parquet(directory / "hs_heading_references.parquet"))


FAMILY = HsHeadingValue()
