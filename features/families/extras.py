"""Extras family: numeric columns an administration maps in (``Contract.extras``), as given,
and each amount's share of the declared value."""

from __future__ import annotations

import numpy as np

from features.pipeline.family import Family, Rows, SpecContext, Values
from features.pipeline.manifest import FeatureSpec, priced_in
from features.pipeline.prepare import VALUE_FLOOR

PREFIX = "extra_"
SHARE_SUFFIX = "_share_of_value"
# A share beyond this is a value declared at (nearly) nothing beside a real amount: kept as
# "far above", never an overflow (a value of 0 is read as VALUE_FLOOR, as the unit values are)
MAX_SHARE = 1e6


def share_name(extra: str) -> str:
    return f"{PREFIX}{extra}{SHARE_SUFFIX}"


class Extras(Family):
    name = "extras"
    distribution = "rows"

    def specs(self, ctx: SpecContext) -> list[FeatureSpec]:
        specs = []
        for extra in ctx.contract.extras:
            if extra.kind != "numeric" or not ctx.fed(extra.name):
                continue
            words = extra.name.replace("_", " ")
            specs.append(
                FeatureSpec(
                    f"{PREFIX}{extra.name}",
                    "extra",
                    "float",
                    (extra.description or f"Mapped numeric column {extra.name}.")
                    + (" In the base currency (features.fx_to_base)." if extra.amount else ""),
                    # an amount is said in the currency its number is in: "freight 6.51" for
                    # a parcel declaring USD 7.08 named a number the declaration did not hold
                    # (probe 35)
                    f"{words} EUR {{value:,.2f}}" if extra.amount else f"{words} {{value:,.2f}}",
                )
            )
            if extra.amount:
                # An amount is read against the value declared beside it, as customs reads
                # it: duties that are a fraction of what the goods' tariff line asks, a CIF
                # value far above the FOB, freight worth more than the goods (DATE's TaxRatio
                # and FOBCIFRatio). A tree cannot form the ratio from the two columns.
                specs.append(
                    FeatureSpec(
                        share_name(extra.name),
                        "extra",
                        "float",
                        f"{words.capitalize()} as a share of the declared value (both in the "
                        "base currency); unknown where either is.",
                        f"{words} is {{value:.0%}} of the declared value",
                    )
                )
        return priced_in(specs, ctx.params.base_currency)

    def compute(self, rows: Rows, part: None = None) -> Values:
        prep = rows.prep
        out: Values = {}
        for extra in rows.contract.extras:
            if extra.kind != "numeric":
                continue
            values = np.asarray(prep[extra.name], dtype=np.float64)
            out[f"{PREFIX}{extra.name}"] = values
            if extra.amount:
                value = np.maximum(np.asarray(prep["value_eur"], dtype=np.float64), VALUE_FLOOR)
                with np.errstate(invalid="ignore"):
                    out[share_name(extra.name)] = np.minimum(values / value, MAX_SHARE)
        return out


FAMILY = Extras()
