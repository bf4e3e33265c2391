"""Exports with one row per goods item: collapsed to the contract's one row per declaration.

ASYCUDA item tables and EU H7 goods items give each item of a declaration its own row: the
declaration's fields repeated on every item row (or written on its first row only), the item's
own (HS code, description, value, quantity, sometimes weight) differing. The mapping's
``items:`` block says how each field combines (``ITEM_RULES``); fields it does not name take
``default_rule``.

Amounts, weights and quantities must be stated (``MUST_BE_STATED``): a weight repeated on each
item row summed would be multiplied by the number of items, and values "agreed" would keep one
item's value whenever two items happen to be equal. Neither mistake would show anywhere later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from features.intake.contract import ContractError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# rule -> what it does (the mapping's messages quote this)
ITEM_RULES = {
    "sum": "the items' amounts added (an item without one leaves the total empty)",
    "sum_given": "the amounts the items give, added (revenue recovered on some items only)",
    "agree": "one value for the declaration: its items' non-empty cells must be equal",
    "principal": "the value of the item with the largest declared_value (where it has none, "
    "the first item's that has one)",
    "join": "the items' distinct texts, in row order, joined by ' | '",
    "max": "the largest of the items' values",
    "any": "true when any item's is true",
}
# the kinds of value each rule reads (contract kinds: str, category, float, int, bool, datetime)
_RULE_KINDS = {
    "sum": {"float", "int"},
    "sum_given": {"float", "int"},
    "max": {"float", "int", "datetime"},
    "any": {"bool"},
    "join": {"str", "category"},
}
# fields whose wrong default would misread them unsaid (module docstring); and numeric
# extras with ``amount: true``
MUST_BE_STATED = ("declared_value", "gross_weight_kg", "quantity", "revenue_recovered")
JOINED_BY = " | "


def default_rule(name: str) -> str:
    """The rule of a field the ``items`` block does not name."""
    if name in ("hs_code", "offence_type"):
        return "principal"
    if name == "description":
        return "join"
    return "agree"


def item_rule_problems(
    items: dict[str, str], kinds: dict[str, str], amounts: set[str]
) -> list[str]:
    """What is wrong with an ``items`` block, given the mapped fields and extras (name ->
    contract kind) and the names of amount extras."""
    problems = []
    if "declaration_id" not in kinds:
        problems.append("items: groups rows by declaration_id, which is not mapped")
    for name, rule in items.items():
        if name == "declaration_id":
            problems.append("items: declaration_id is what the items are grouped by; no rule")
        elif name not in kinds:
            problems.append(f"items: {name} is neither a mapped field nor an extra")
        elif rule not in ITEM_RULES:
            problems.append(
                f"items: {name}: unknown rule {rule!r} (one of {', '.join(ITEM_RULES)})"
            )
        elif rule in _RULE_KINDS and kinds[name] not in _RULE_KINDS[rule]:
            problems.append(f"items: {name}: {rule} reads {_what(rule)}; {name} is not")
    unstated = [n for n in kinds if (n in MUST_BE_STATED or n in amounts) and n not in items]
    if unstated:
        example = "\n".join(
            f"  {n}: sum_given  # the items' amounts, where given"
            if n == "revenue_recovered"
            else f"  {n}: sum  # or agree: the declaration's, repeated on each item row"
            for n in unstated
        )
        problems.append(
            f"items: say how {', '.join(unstated)} combine(s): per item (sum) or the "
            "declaration's, repeated on each item row (agree); a wrong guess would multiply "
            f"or drop amounts unsaid. E.g.\nitems:\n{example}"
        )
    return problems


def _what(rule: str) -> str:
    what = {"sum": "numbers", "sum_given": "numbers", "max": "numbers or times"}
    return {**what, "any": "true/false", "join": "text"}[rule]


@dataclass(frozen=True)
class Disagreement:
    """An ``agree`` field whose items differ within some declarations; or (``negative``) a
    summed amount that some item gives below zero."""

    field: str
    declarations: np.ndarray  # positions in the collapsed frame
    message: str
    negative: bool = False


@dataclass(frozen=True)
class Collapsed:
    """``collapse_items``'s answer: one row per declaration, and how the rows map to them."""

    frame: pd.DataFrame
    group: np.ndarray  # for each input row, the position of its declaration in ``frame``
    disagreements: list[Disagreement]
    item_rows: int
    max_items: int

    def summary(self) -> dict[str, int]:
        return {
            "item_rows": self.item_rows,
            "declarations": len(self.frame),
            "most_items_in_one_declaration": self.max_items,
        }


def collapse_items(frame: pd.DataFrame, rules: dict[str, str]) -> Collapsed:
    """``frame`` (contract columns, one row per item) as one row per declaration_id, in the
    order the declarations first appear; each column by its rule (``rules``, else
    ``default_rule``). Vectorised: one groupby per column."""
    import numpy as np
    import pandas as pd

    ids = frame["declaration_id"]
    codes, uniques = pd.factorize(ids.astype("object"), sort=False)
    if (codes < 0).any():
        rows = ", ".join(str(i + 1) for i in np.flatnonzero(codes < 0)[:5])
        raise ContractError(
            f"declaration_id is empty on {int((codes < 0).sum())} item row(s) (rows {rows}): "
            "item rows are grouped into declarations by it"
        )
    n = len(uniques)
    sizes = np.bincount(codes, minlength=n)
    key = pd.Series(codes, index=frame.index)
    principal = _principal_rows(frame, codes, n)
    out: dict[str, pd.Series] = {}
    disagreements = []
    for name in frame.columns:
        column = frame[name]
        rule = "agree" if name == "declaration_id" else rules.get(name, default_rule(name))
        grouped = column.groupby(key.to_numpy(), sort=True)
        if rule == "principal":
            # where the principal item gives none (a results file has no values at all), the
            # first item that gives one
            picked = column.iloc[principal].reset_index(drop=True)
            out[name] = picked.where(picked.notna(), grouped.first().reindex(range(n)).values)
            continue
        if rule in ("sum", "sum_given"):
            # An item below zero (a discount or correction line) would be netted into the
            # total, which the gate then sees as a plausible amount: the declared value, the
            # valuation signal, lowered unsaid. The gate refuses a negative amount; so does
            # each item.
            below = np.flatnonzero(
                pd.to_numeric(column, errors="coerce")
                .lt(0)
                .groupby(codes, sort=True)
                .any()
                .reindex(range(n), fill_value=False)
                .to_numpy(dtype=bool)
            )
            if len(below):
                disagreements.append(
                    Disagreement(name, below, _negative(name, column, codes, uniques, below), True)
                )
            total = grouped.sum(min_count=1)  # no amount at all: empty
            if rule == "sum":  # an item without its amount: the total is not known
                empty = column.isna().groupby(key.to_numpy(), sort=True).any()
                total = total.where(~empty)
            out[name] = total.reset_index(drop=True)
        elif rule == "max":
            out[name] = grouped.max().reset_index(drop=True)
        elif rule == "any":
            known = column.notna().groupby(key.to_numpy(), sort=True).any()
            found = column.eq(True).fillna(False).groupby(key.to_numpy(), sort=True).any()
            out[name] = found.astype("boolean").mask(~known).reset_index(drop=True)
        elif rule == "join":
            texts = pd.DataFrame({"g": codes, "v": column.astype("object")}).dropna()
            texts = texts[texts["v"].astype(str).str.len() > 0].drop_duplicates()
            joined = texts.groupby("g", sort=True)["v"].agg(lambda v: JOINED_BY.join(map(str, v)))
            out[name] = joined.reindex(range(n)).reset_index(drop=True)
        else:  # agree
            distinct = grouped.nunique(dropna=True)
            out[name] = grouped.first().reindex(range(n)).reset_index(drop=True)
            differ = np.flatnonzero(distinct.reindex(range(n), fill_value=0).to_numpy() > 1)
            if len(differ):
                disagreements.append(
                    Disagreement(name, differ, _differs(name, column, codes, uniques, differ))
                )
    collapsed = pd.DataFrame(out, columns=list(frame.columns))
    return Collapsed(collapsed, codes, disagreements, len(frame), int(sizes.max(initial=0)))


def _principal_rows(frame: pd.DataFrame, codes: np.ndarray, n: int) -> np.ndarray:
    """For each declaration, the row of its item with the largest declared_value (the first
    such row on a tie; its first row when no item has a value)."""
    import numpy as np
    import pandas as pd

    value = (
        pd.to_numeric(frame["declared_value"], errors="coerce").to_numpy(dtype=float)
        if "declared_value" in frame.columns
        else np.full(len(frame), np.nan)
    )
    order = pd.DataFrame(
        {
            "g": codes,
            "v": np.nan_to_num(value, nan=-np.inf),
            "row": np.arange(len(frame)),
        }
    ).sort_values(["g", "v", "row"], ascending=[True, False, True], kind="stable")
    first = order.drop_duplicates("g")
    rows = np.empty(n, dtype=np.int64)
    rows[first["g"].to_numpy()] = first["row"].to_numpy()
    return rows


def _negative(
    name: str, column: pd.Series, codes: np.ndarray, uniques, below: np.ndarray, shown: int = 3
) -> str:
    """``name`` is below zero on an item of N declarations: the first few, with the items."""
    import pandas as pd

    examples = []
    for position in below[:shown]:
        values = pd.to_numeric(column[codes == position], errors="coerce").dropna()
        examples.append(f"{uniques[position]}: {', '.join(f'{v:g}' for v in values[:4])}")
    more = f" (and {len(below) - shown} more)" if len(below) > shown else ""
    # the count, then the examples and how many are not shown (probe 33 read "874 ... (and
    # 871 more)" as 874 + 871)
    return (
        f"{name} is below zero on an item of {len(below)} declaration(s), e.g. "
        + "; ".join(examples)
        + more
        + " (a discount or correction line: summed, it would lower the declaration's "
        f"{name} unsaid; correct the export)"
    )


def _differs(
    name: str, column: pd.Series, codes: np.ndarray, uniques, differ: np.ndarray, shown: int = 3
) -> str:
    """``name`` differs between the items of N declarations: the first few, with values."""
    examples = []
    for position in differ[:shown]:
        values = column[codes == position].dropna().astype(str).unique()
        examples.append(f"{uniques[position]}: {', '.join(values[:4])}")
    more = f" (and {len(differ) - shown} more)" if len(differ) > shown else ""
    return (
        f"{name} differs between the items of {len(differ)} declaration(s), e.g. "
        + "; ".join(examples)
        + more
        + f" (items: {name}: agree wants one value per declaration; if it is the items' own, "
        "give it another rule)"
    )


__all__ = [
    "ITEM_RULES",
    "MUST_BE_STATED",
    "Collapsed",
    "Disagreement",
    "collapse_items",
    "default_rule",
    "item_rule_problems",
]
