"""Extras family: numeric columns an administration maps in (``Contract.extras``), as given."""

from __future__ import annotations

import numpy as np

from features.pipeline.family import Family, Rows, SpecContext, Values
from features.pipeline.manifest import FeatureSpec

PREFIX = "extra_"


class Extras(Family):
    name = "extras"
    distribution = "rows"

    def specs(self, ctx: SpecContext) -> list[FeatureSpec]:
        return [
            FeatureSpec(
                f"{PREFIX}{extra.name}",
                "extra",
                "float",
                (extra.description or f"Mapped numeric column {extra.name}.")
                + (" In the base currency (features.fx_to_base)." if extra.amount else ""),
                f"{extra.name.replace('_', ' ')} {{value:,.2f}}",
            )
            for extra in ctx.contract.extras
            if extra.kind == "numeric" and ctx.fed(extra.name)
        ]

    def compute(self, rows: Rows, part: None = None) -> Values:
        return {
            f"{PREFIX}{extra.name}": np.asarray(rows.prep[extra.name], dtype=np.float64)
            for extra in rows.contract.extras
            if extra.kind == "numeric"
        }


FAMILY = Extras()
