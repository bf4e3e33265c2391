"""Keyed pseudonyms of personal identifiers: HMAC-SHA256(key, value) -> ``psn_`` + 24 hex.

The contract marks which fields identify a person (``ContractField.personal``, personal
extras); they are replaced by their pseudonym where declarations enter canonical form (a file
read by ``parse_declarations``, a request validated by ``Declaration``), so features, the entity
state, the decision store and the logs only ever see pseudonyms. The same value under the same
key always gets the same pseudonym, so a consignee keeps its history; whoever holds the key
(``parcelrisk keys pseudonym VALUE``) can find a person's pseudonym, nobody can reverse one.

96 bits of the digest: collisions between distinct consignees stay negligible (~1e-17 for a
million of them) while the value stays short enough to read in a reason or a log line.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from typing import TYPE_CHECKING

from features.errors import ParcelriskError
from features.intake.hidden_text import key_skeleton
from features.keys import hmac_sha256, key_id, load_key

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

PREFIX = "psn_"
HEX_CHARS = 24
PSEUDONYM = re.compile(rf"{PREFIX}[0-9a-f]{{{HEX_CHARS}}}")


class PseudonymKeyMismatch(ParcelriskError):
    """Data pseudonymised under one key met a process holding another."""


def pseudonym_of(value: str, key: bytes) -> str:
    """The pseudonym of one value; a value that already is one is returned as it is.

    Idempotent on purpose: a history exported from the decision store holds pseudonyms, and
    reading it again must not hash them a second time (the consignee would lose its history).
    """
    if len(value) == len(PREFIX) + HEX_CHARS and PSEUDONYM.fullmatch(value):
        return value
    return _keyed(value, key)


def _keyed(value: str, key: bytes) -> str:
    if not value.isascii():
        # what it prints, not how it was typed: NFKC (as identifiers are read), then the
        # letters that pass for Latin ones as those (``key_skeleton``). "АВС-123" in Cyrillic
        # is the consignee "ABC-123" is; a pseudonym keyed on the code points let a trader
        # make one consignee several (probe 20). Pseudonyms of ASCII values are unchanged.
        value = key_skeleton(unicodedata.normalize("NFKC", value))
    return PREFIX + hmac_sha256(key, value.encode()).hex()[:HEX_CHARS]


def pseudonymise(values: pd.Series, key: bytes) -> pd.Series:
    """A text column with every value replaced by its pseudonym (nulls stay null).

    Each distinct value is hashed once (a consignee appears on many parcels of a history),
    then mapped back by its code: on a 1M-row history that is a few hundred thousand HMACs.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    texts = pa.array(np.asarray(uniques, dtype=object), type=pa.large_string())
    # pseudonyms already (a history read again) found by Arrow in C, not one regex call each
    done = pc.match_substring_regex(texts, rf"^{PSEUDONYM.pattern}$").to_numpy(zero_copy_only=False)
    table = np.empty(len(uniques) + 1, dtype=object)
    table[:-1] = texts.to_pylist()
    todo = np.flatnonzero(~done)
    table[todo] = [_keyed(v, key) for v in table[todo].tolist()]
    table[-1] = None  # code -1 (missing) takes the last slot
    mapped = table[codes]
    # built by Arrow directly, in the canonical text dtype (see columns.text_array)
    array = pd.arrays.ArrowStringArray(
        pa.array(mapped, type=pa.large_string(), from_pandas=True),
        dtype=pd.StringDtype("pyarrow", na_value=np.nan),
    )
    return pd.Series(array, index=values.index, name=values.name)


@functools.cache
def process_key() -> bytes:
    """This process's pseudonym key, read once (``features.keys``; ``KeyUnavailable`` if none).

    Cached: every API request pseudonymises with it. ``forget_process_key`` drops it (tests)."""
    return load_key("pseudonym")


def forget_process_key() -> None:
    process_key.cache_clear()


def process_key_id() -> str:
    return key_id(process_key())


def require_same_key(recorded: str | None, what: str) -> None:
    """Refuse data pseudonymised under another key than this process's.

    ``recorded``: the key id stored with the data. None means it was built before consignee
    ids were keyed: its histories hold the raw ids, which no request (pseudonymised on entry)
    will ever match, so every consignee feature would silently read "never seen". Refused
    too: retrain; ``parcelrisk promote`` does not compare models built under two keys, and
    replaces such a champion only with ``--force --reason`` (``models.promotion``).
    """
    current = process_key_id()
    if recorded is None:
        raise PseudonymKeyMismatch(
            f"{what} was built before consignee ids were keyed (no pseudonym key id): its "
            "histories hold raw ids no pseudonymised request will match; rebuild features and "
            "train (`dvc repro`), then `parcelrisk promote --force --reason TEXT` replaces a "
            "champion built so"
        )
    if recorded != current:
        raise PseudonymKeyMismatch(
            f"{what} built with pseudonym key id {recorded}, this process has {current}: "
            "every consignee would lose its history; use the key the features were built with"
        )
