"""Synthetic declaration history: a seeded world of e-commerce parcels, frauds and inspections.

The generator stands in for an administration's history until real data is mapped in. It writes
the declarations (with outcomes only where the legacy policy inspected) and the ground truth no
real administration has: the true probability and the true label of every parcel.

The parts of the world, one module each:

- ``params``: the knobs (``SyntheticParams``), checked on construction.
- ``catalogue``: goods, HS codes, reference prices, weights, duty rates and their words.
- ``world``: sellers, consignees, platforms, operators, offices and their behaviour.
- ``fraud``: intent, the offence mechanisms, their signatures, concept drift, the truth.
- ``inspection``: the legacy inspection policy, its delays, and what an offence is worth.
- ``history``: ``generate`` runs the parts in order on one random stream and builds the
  frames; ``generate_to_dir`` writes them and returns ``summary.summarize``'s facts.
- ``sampling``: the random-draw primitives they share.
- ``live``: ``generate_cut_world``, one world cut into a history known at the cut and the
  live traffic after it (with its truth and exam times), the drift placed inside it.

The same seed gives the same data, bit for bit (``tests/test_features/test_synthetic.py`` pins a
fingerprint): a change that moves any draw changes every seed's data and must say so.
"""

from features.synthetic.history import GROUND_TRUTH_COLUMNS, generate, generate_to_dir
from features.synthetic.params import SyntheticParams, SyntheticParamsError

__all__ = [
    "GROUND_TRUTH_COLUMNS",
    "SyntheticParams",
    "SyntheticParamsError",
    "generate",
    "generate_to_dir",
]
