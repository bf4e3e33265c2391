"""The features frame: ids, labels, reason context, then the manifest's features in order."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.intake.columns import text_array, with_default_index
from features.pipeline.manifest import ID_COLUMNS, LABEL_COLUMNS, REASON_CONTEXT, FeatureManifest
from features.pipeline.prepare import Prepared


def assemble(
    prep: Prepared,
    declarations: pd.DataFrame,
    values: dict[str, np.ndarray],
    manifest: FeatureManifest,
    *,
    one_block: bool = True,
) -> pd.DataFrame:
    """ids + labels + reason context + manifest features, in manifest order.

    ``one_block``: the features copied into one float block, the cheapest to read back as the
    model matrix (a request); False frames the arrays as they are, column by column (a whole
    history: its features are a GB at a million rows, and a second copy of them was the
    build's peak memory).
    """
    meta = meta_columns(prep, declarations)
    names = manifest.names
    if not one_block:
        # float64 as the block is; no copy of arrays that already are
        columns = {name: np.asarray(values[name], dtype=np.float64) for name in names}
        features = pd.DataFrame(columns, copy=False)
        return pd.concat([pd.DataFrame(meta), features], axis=1)
    # one float block for all features: far cheaper than one column at a time
    block = np.empty((len(declarations), len(names)), dtype=np.float64, order="F")
    for j, name in enumerate(names):
        block[:, j] = values[name]
    features = pd.DataFrame(block, columns=names, copy=False)
    return pd.concat([pd.DataFrame(meta), features], axis=1)


def meta_columns(prep: Prepared, declarations: pd.DataFrame) -> dict[str, Any]:
    """The columns before the features: ids, labels (those the declarations hold), reason context."""
    declarations = with_default_index(declarations)
    # arrays, not Series: every column already has the same rows in the same order, and
    # index alignment of a dict of Series costs ~0.4 ms per online request
    meta: dict[str, Any] = {c: declarations[c].array for c in ID_COLUMNS}
    for c in LABEL_COLUMNS:
        if c in declarations.columns:
            meta[c] = declarations[c].array
    for c in REASON_CONTEXT:  # as declared where possible; derived keys (hs6...) as str
        meta[c] = declarations[c].array if c in declarations.columns else text_array(prep[c])
    return meta
