"""Reasons people can read, from LightGBM TreeSHAP contributions and the manifest's templates.

Pure: contribution rows + the model input rows + declaration context in, sentences out.
A reason is the feature's ``FeatureSpec.reason`` template filled with the value the model saw
(category codes shown as their label) and the declaration context (``REASON_CONTEXT``). A reason
is never dropped and never crashes; when the template cannot be filled it still speaks of the
parcel, never of the feature's definition (``FeatureSpec.description`` is documentation: it may
name configuration, such as the watchlist's file, that clearance systems must not be sent):
- a context field the template names that the declaration left empty: ``no seller declared``;
- a value the model saw as missing (NaN, unknown category): ``no quantity declared`` for a
  declared field itself, ``no HS heading declared`` for a category feature whose column the
  declaration left empty, else ``<feature> not computable: ...`` (a value new to the model, a
  field the context cannot show empty). Reported, not skipped:
  LightGBM sends missing values down their own branch, so the missing value is what raised
  the score, and skipping it would hide the reason (a missing description) behind weaker ones;
- any other fault of the template (bad format spec, a name outside the context): the feature
  and its value.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from features.intake.columns import python_values
from features.intake.contract import DECLARATION_COLUMNS
from features.intake.words import is_character_pair
from features.pipeline.manifest import DERIVED_CONTEXT, REASON_CONTEXT, UNDECLARED

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pandas as pd

    from features.pipeline.manifest import FeatureManifest, FeatureSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reason:
    feature: str
    text: str
    contribution: float  # log-odds this feature added to the raw risk score

    def as_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "text": self.text, "contribution": self.contribution}


def display_value(spec: FeatureSpec, value: float) -> Any:
    """The value as a person reads it: category label, int, float; None if unknown."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if spec.dtype == "category":
        code = int(value)
        if spec.categories is None or not 0 <= code < len(spec.categories):
            return None
        return spec.categories[code]
    if spec.dtype == "int":
        return int(value)
    return float(value)


def render_reason(
    spec: FeatureSpec, value: float, context: dict[str, Any], inputs: tuple[str, ...] = ()
) -> str:
    """One sentence about this parcel for one feature, whatever the template, value or context.

    ``context``: ``REASON_CONTEXT`` values, None for a field the declaration left empty (a
    name absent from it is unknown, not empty), and online the fields it left empty
    (``UNDECLARED``). ``inputs``: the declaration fields the feature reads: one left empty is
    why it has no value.
    """
    template = spec.reason
    if spec.reason_detail is not None and all(
        name in context and not _is_empty(context, name)
        for name in _template_fields(spec.reason_detail)
    ):
        template = spec.reason_detail
    empty = [name for name in _template_fields(template) if _is_empty(context, name)]
    if empty:
        return f"no {_words(empty[0])} declared"
    template = _said_of_characters(template, context)
    if context.get("description_in_pairs") is True:
        template = template.replace(_COUNT_SAID, _PAIRS_COUNTED)
    shown = display_value(spec, value)
    if shown is None:
        undeclared = _undeclared_field(spec, context) or _undeclared_input(inputs, context)
        if undeclared is not None:
            return _not_declared(undeclared)
        return (
            f"{_words(spec.name)} not computable: a field it needs is missing or new to the model"
        )
    try:
        return template.format(value=shown, **context)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
        logger.debug("reason template of %s not filled: %r", spec.name, exc)
        return f"{_words(spec.name)}: {f'{shown:g}' if isinstance(shown, float) else shown}"


def _undeclared_input(inputs: tuple[str, ...], context: dict[str, Any]) -> str | None:
    """The first of a feature's ``inputs`` the declaration left empty (``UNDECLARED``): the
    text features of a parcel without a description, the per-item features of one without a
    quantity said "<feature> not computable" (probe 38)."""
    empty = context.get(UNDECLARED) or ()
    return next((name for name in inputs if name in empty), None)


# The contract fields whose name reads badly after "no ... declared"
_NOT_DECLARED = {"declared_value": "no declared value", "gross_weight_kg": "no weight declared"}


def _not_declared(name: str) -> str:
    return _NOT_DECLARED.get(name) or f"no {_words(name)} declared"


# How a text reason names its word (the template is kept in each model's manifest, so it is
# rephrased here, for models trained before as well)
_WORD_SAID = "the description's word '{description_word}' was"
_CHARACTERS_SAID = "the characters '{description_word}' of the description were"


# A Thai or Chinese description's word count counts pairs of characters: "description has
# only 10 word(s)" was said of the one word "กระเป๋าถือสตรี" (probe 42)
_COUNT_SAID = "description has only {value:.0f} word(s)"
_PAIRS_COUNTED = "description has only {value:.0f} word(s), counting pairs of characters as words"


def _said_of_characters(template: str, context: dict[str, Any]) -> str:
    """``template``, a pair of characters of a script written without spaces named as such:
    "the description's word 'コ本'" of 'タバコ本体' named no word of it (probe 38)."""
    word = context.get("description_word")
    if _WORD_SAID not in template or not isinstance(word, str):
        return template
    return template.replace(_WORD_SAID, _CHARACTERS_SAID) if is_character_pair(word) else template


def _undeclared_field(spec: FeatureSpec, context: dict[str, Any]) -> str | None:
    """The field the declaration left empty that a missing value is the value of, if any.

    A declared number is its own field (NaN: not declared). A category feature codes a column
    (``cat_hs_heading``), read in the context directly or through the declared field it derives
    from (``hs_code``; the context has no heading): empty there, the field was not declared, and
    "cat HS heading not computable" named a feature to an officer for a parcel that simply had
    no HS code (probe 38). Held there, the code is missing because the value is new to the
    model, which the caller says; a column the context does not hold cannot be told either way.
    """
    # here, not at the top: the families package loads every family (scikit-learn's text
    # model among them), a cost importing serving.scoring does not otherwise pay (0.2 s)
    from features.families.categories import coded_column
    from features.pipeline.prepare import source_of

    if spec.name in DECLARATION_COLUMNS:
        return spec.name
    column = coded_column(spec)
    if column is None:
        return None
    for name in dict.fromkeys((column, source_of(column))):
        if name in context:
            return column if _is_empty(context, name) else None
    return None


# Abbreviations the templates write in capitals ("HS {hs6}", "EUR {value}").
_CAPITALS = frozenset({"hs", "hs6", "eur", "aeo", "ioss"})


def _words(name: str) -> str:
    """A feature or field name as words: ``unit_value_ratio_hs6`` -> ``unit value ratio HS6``,
    ``seller_id`` -> ``seller``."""
    tokens = name.removesuffix("_id").split("_")
    return " ".join(t.upper() if t in _CAPITALS else t for t in tokens)


@functools.lru_cache(maxsize=1024)  # the manifest's few hundred templates, asked per reason
def _template_fields(template: str) -> tuple[str, ...]:
    """The context names a template reads (``{hs6}``, ``{seller_id}``), ``value`` left out."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:  # unbalanced braces: format() fails too, and says so
        return ()
    roots = (re.split(r"[.\[]", f, maxsplit=1)[0] for _, f, _, _ in parsed if f)
    return tuple(dict.fromkeys(r for r in roots if r and r != "value"))


def _is_empty(context: dict[str, Any], name: str) -> bool:
    if name not in context:
        return False
    v = context[name]
    return v is None or (isinstance(v, float) and math.isnan(v))


def _context_rows(context: pd.DataFrame | Mapping[str, Any], n: int) -> list[dict[str, Any]]:
    """REASON_CONTEXT values per row, None where the declaration left the field empty.

    ``context``: a feature frame, or columns as arrays of Python values (None for missing).
    """
    import pandas as pd

    columns = [c for c in (*REASON_CONTEXT, *DERIVED_CONTEXT, UNDECLARED) if c in context]
    if not columns:
        return [{} for _ in range(n)]
    if isinstance(context, pd.DataFrame):
        values = [python_values(context[c]) for c in columns]  # to_dict costs ~5x more per call
    else:
        values = [list(context[c]) for c in columns]
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


def explain_decisions(
    contributions: np.ndarray,
    X: np.ndarray,
    context: pd.DataFrame | Mapping[str, Any],
    manifest: FeatureManifest,
    top_k: int = 5,
    inputs_of: Mapping[str, tuple[str, ...]] | None = None,
) -> list[list[Reason]]:
    """Top ``top_k`` positive contributions of each row as reasons, largest first.

    ``contributions`` is ``RiskModel.contributions(X)`` (last column the base value), ``X`` the
    same rows of the model input matrix and ``context`` the same rows of the online feature
    frame, or its ``REASON_CONTEXT`` columns as arrays (``OnlineFeatures.context``). Rows with
    no positive contribution get no reasons. ``inputs_of``: each feature's declaration fields
    (``EntityState.inputs_of``), for the reason of a feature without a value.
    """
    n_features = len(manifest.features)
    if contributions.shape != (len(X), n_features + 1):
        raise ValueError(
            f"contributions shape {contributions.shape} does not match {len(X)} rows x "
            f"{n_features} features + base"
        )
    if len(X) == 0 or top_k <= 0:
        return [[] for _ in range(len(X))]
    phi = contributions[:, :n_features]
    specs = manifest.features
    # A template that does not show the value states a fact ("no platform declared"): the
    # feature is a 0/1 flag, and at 0 the sentence is false though its contribution may be
    # positive (the absence nudged the score up). Such a reason is skipped for the next one,
    # so more candidates than top_k are looked at.
    flag = [_VALUE_FIELD not in spec.reason for spec in specs]
    k = min(top_k + sum(flag), n_features)
    # argpartition then sort only the k candidates: O(n·f) instead of a full sort per row
    top = np.argpartition(-phi, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(-phi, top, axis=1).argsort(axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    contexts = _context_rows(context, len(X))
    inputs_of = inputs_of or {}
    unseen = _unseen_counts(manifest.features)
    out: list[list[Reason]] = []
    for i in range(len(X)):
        row: list[Reason] = []
        for j in top[i]:
            c = float(phi[i, j])
            if c <= 0 or len(row) == top_k:
                break
            if flag[j] and X[i, j] == 0:
                continue
            text = render_reason(specs[j], X[i, j], contexts[i], inputs_of.get(specs[j].name, ()))
            if j in unseen and X[i, unseen[j]] == 0:
                text = text.replace(_HIT_RATE_WORDS, _PRIOR_WORDS)
            row.append(Reason(specs[j].name, text, c))
        out.append(row)
    return out


# An entity never inspected has a smoothed hit rate that is the prior, not a record: "HS 901210
# past inspections hit rate 21%" beside "HS6 901210 not seen in history" told an officer of
# inspections that never happened. The reason says what the number is.
_HIT_RATE_WORDS = " past inspections hit rate "
_PRIOR_WORDS = " never inspected before: prior hit rate "


@functools.lru_cache(maxsize=8)  # per manifest (its feature tuple), not per request
def _unseen_counts(specs: tuple[FeatureSpec, ...]) -> dict[int, int]:
    """Column of each ``<entity>_hit_rate`` -> column of its ``<entity>_n_inspected``."""
    at = {spec.name: j for j, spec in enumerate(specs)}
    return {
        j: at[spec.name.removesuffix("_hit_rate") + "_n_inspected"]
        for j, spec in enumerate(specs)
        if spec.name.endswith("_hit_rate")
        and spec.name.removesuffix("_hit_rate") + "_n_inspected" in at
        and _HIT_RATE_WORDS in spec.reason
    }


_VALUE_FIELD = "{value"


def contribution_table(
    contributions: np.ndarray, X: np.ndarray, manifest: FeatureManifest
) -> list[dict[str, Any]]:
    """One row's full contribution vector as (feature, value, contribution), manifest order,
    and the currency of a money value (``unit``, where the feature holds one)."""
    units = feature_units(manifest)
    return [
        {
            "feature": spec.name,
            "value": display_value(spec, float(X[j])),
            "contribution": float(contributions[j]),
            **({"unit": units[spec.name]} if spec.name in units else {}),
        }
        for j, spec in enumerate(manifest.features)
    ]


def feature_units(manifest: FeatureManifest) -> dict[str, str]:
    """The currency each money feature's values are in. Their names end in ``_eur`` whatever
    the base currency (a model's columns must not change with a setting): declared values
    are in ``features.base_currency`` (their texts name it, ``priced_in``), recovered revenue
    in EUR. An auditor read "value_eur 125.9" for a parcel of about 31 EUR, its amount in AED
    (probe 40)."""
    return _units(manifest.features, str(manifest.params.get("base_currency") or "EUR"))


@functools.lru_cache(maxsize=8)  # per manifest, not per decision shown
def _units(specs: tuple[FeatureSpec, ...], base: str) -> dict[str, str]:
    return {
        spec.name: "EUR" if re.search(r"\bEUR\b", spec.description) else base
        for spec in specs
        if spec.name.endswith("_eur")
    }
