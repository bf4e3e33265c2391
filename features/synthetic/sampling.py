"""Random-draw primitives every part of the simulated world uses.

All draws come from one ``numpy.random.Generator`` passed down from ``generate``: a function
here never creates its own, so the order of calls decides the data (see the package docstring).
"""

from __future__ import annotations

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def weighted_choice(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """``n`` indices into ``weights``, each drawn with probability proportional to its weight."""
    cw = np.cumsum(weights)
    return np.minimum(np.searchsorted(cw, rng.random(n) * cw[-1], side="right"), len(cw) - 1)


def pick_in_pools(rng: np.random.Generator, start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Index of a uniformly chosen member of each row's [start, start+count) pool slice."""
    return start + (rng.random(len(start)) * count).astype(np.int64)


def format_ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    """Identifiers like ``S000042``: the prefix and the number zero-padded to ``width`` digits."""
    return np.strings.add(prefix, np.strings.zfill(numbers.astype(str), width)).astype(object)
