"""The feature families: one module each, listed here in manifest order.

Each module exports ``FAMILY`` (a ``features.pipeline.family.Family``): its manifest specs, one
compute for batch and online, and its entity-state snapshot part if it learns from the past.
Adding a family is one module, its test, and one line below. Optional families are built only
when named in ``features.extra_families``.
"""

from __future__ import annotations

from collections.abc import Collection

from features.errors import ParcelriskError
from features.families import (
    calendar,
    categories,
    declaration,
    entity_history,
    extras,
    hs_heading_value,
    orders,
    shipments,
    text,
    valuation,
    watchlist,
)
from features.pipeline.family import Family, SpecContext
from features.pipeline.manifest import FeatureManifest, FeatureSpec

FAMILIES: tuple[Family, ...] = (
    declaration.FAMILY,
    calendar.FAMILY,
    categories.FAMILY,
    extras.FAMILY,
    valuation.FAMILY,
    text.FAMILY,
    shipments.FAMILY,
    orders.FAMILY,
    entity_history.FAMILY,
    hs_heading_value.FAMILY,
    watchlist.FAMILY,
)


def family_specs(ctx: SpecContext) -> list[tuple[Family, list[FeatureSpec]]]:
    """The families built under these settings, with their specs (families without any left out)."""
    chosen = set(ctx.params.extra_families)
    unknown = sorted(chosen - {f.name for f in FAMILIES if f.optional})
    if unknown:
        optional = ", ".join(f.name for f in FAMILIES if f.optional)
        raise ParcelriskError(
            f"features.extra_families: unknown family {', '.join(unknown)} (optional: {optional})"
        )
    out = []
    for family in FAMILIES:
        if family.optional and family.name not in chosen:
            continue
        specs = family.specs(ctx)
        if specs:
            out.append((family, specs))
    return out


def build_manifest(ctx: SpecContext) -> FeatureManifest:
    """The feature list: the union of the families' specs, in family order."""
    specs = tuple(spec for _, family in family_specs(ctx) for spec in family)
    return FeatureManifest(features=specs, params=ctx.params.to_dict(), inputs=ctx.inputs)


def features_reading(ctx: SpecContext, name: str) -> set[str]:
    """The features of ``ctx``'s manifest that read the input ``name`` (a contract field or a
    mapped extra): those the manifest built without it (neither fed nor a category) lacks."""
    return set(build_manifest(ctx).names) - set(build_manifest(_without(ctx, name)).names)


def _without(ctx: SpecContext, name: str) -> SpecContext:
    """``ctx`` as if the history held no value of the input ``name``."""
    from dataclasses import replace

    inputs = ctx.inputs if ctx.inputs is not None else tuple(ctx.contract.columns(True))
    return replace(
        ctx,
        inputs=tuple(n for n in inputs if n != name),
        categories={k: v for k, v in ctx.categories.items() if k != f"cat_{name}"},
    )


def inputs_of_features(ctx: SpecContext, names: Collection[str]) -> dict[str, tuple[str, ...]]:
    """Each of ``names`` (a model's features) that reads a declaration's field -> those fields
    (contract fields and mapped extras, the id and time aside), in contract order: what a
    reason names when the feature has no value because the parcel left one of them empty
    ("no description declared", where it said "text p illicit not computable")."""
    inputs = ctx.inputs if ctx.inputs is not None else tuple(ctx.contract.columns(True))
    declared = set(ctx.contract.columns(False)) - {"declaration_id", "declared_at"}
    built = set(build_manifest(ctx).names) & set(names)
    out: dict[str, list[str]] = {}
    for name in inputs:
        if name not in declared:  # an outcome field is never a declaration's to leave empty
            continue
        for feature in built - set(build_manifest(_without(ctx, name)).names):
            out.setdefault(feature, []).append(name)
    return {feature: tuple(fields) for feature, fields in out.items()}


def active_families(ctx: SpecContext) -> list[Family]:
    """The families that compute the features of a manifest built under ``ctx``."""
    return [family for family, _ in family_specs(ctx)]
