"""One decision record: what was decided for one declaration, and every view of it.

A ``DecisionRecord`` is built once per scored row (``serving.scoring.decision_records``). The
``/score`` response item, the stored row (and its chain MAC), the ``/decision`` body and the
offline ``parcelrisk score`` output are all read off it, so they cannot disagree.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from features.errors import ParcelriskError
from features.notes import DECLARATION_AMENDED, UNCLASSIFIED

# The stored values of a record, in this order: what a store keeps and what the hash covers.
STORED_FIELDS = (
    "decision_id",
    "scored_at",
    "declaration_id",
    "declaration_json",
    "features",
    "manifest_fingerprint",
    "model_name",
    "model_version",
    "thresholds_version",
    "lane_policy",
    "raw_score",
    "risk",
    "expected_revenue",
    "lane",
    "exploration",
    "reasons_json",
    "warnings_json",
    "request_id",
    "api_key_id",
    "known_seq",
    "known_results_seq",
    # Added after decisions were chained (``ADDED_FIELDS``): the model that decided, beyond
    # its registry name and version, which a rebuilt or re-registered registry can give to
    # another run (probe 12). Empty in every decision recorded before them.
    "model_run_id",
    "model_bundle_sha256",
    # the stable code of each warning, in order (``features.notes``): JSON, "" without any
    "warning_codes_json",
    # the id of the pseudonym key the declaration's consignee was keyed with (``parcelrisk
    # keys``): after a key rotation, which decisions a lookup by raw id can find (probe 30)
    "pseudonym_key_id",
)
# The stored fields added after decisions were chained, at the end of ``STORED_FIELDS``: empty
# in a decision recorded before them, and then left out of its MAC (``serving.audit.chain``).
ADDED_FIELDS = ("model_run_id", "model_bundle_sha256", "warning_codes_json", "pseudonym_key_id")


def iso_utc(t_us: int) -> str:
    """UTC microseconds as the store writes times (as ``declaration_json`` does)."""
    moment = datetime.fromtimestamp(t_us // 1_000_000, UTC).replace(microsecond=t_us % 1_000_000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso_us(text: str) -> int:
    """A stored UTC time back to microseconds since the epoch."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# An amended declaration is decided anew (its own decision, on what it now says), but the live
# entity state and `history export` keep the first version of a declaration id: its entities
# count once, and the next model learns its result against the first content. Said on the
# decision so the clearance system and an auditor know which content the history holds.
AMENDED_WARNING = (
    "declaration_id decided before with other content (amended): decided anew on this "
    "content, but entity histories and the exported history keep the first version"
)


class StoreFromNewerRelease(ParcelriskError):
    """A decision store a newer parcelrisk release has written: its decisions hold fields this
    release does not know. Their MACs cover those fields, so this release could neither check
    them (it would call intact decisions altered) nor extend the chain: it refuses the store
    by name instead (a rollback is a restore of the backup taken before the upgrade)."""


def refuse_newer_release(location: str, table: str, columns: set[str], known: set[str]) -> None:
    """``StoreFromNewerRelease`` when ``table`` of the store at ``location`` has ``columns``
    beyond those this release writes (``known``); nothing for a table not made yet."""
    unknown = sorted(columns - known)
    if unknown:
        raise StoreFromNewerRelease(
            f"decision store {location} was written by a newer parcelrisk release: its {table} "
            f"have fields this release does not know ({', '.join(unknown)}), so it can neither "
            "verify nor extend their chain; run the release that wrote it (or a later one), or "
            "restore the backup taken before the upgrade"
        )


class DamagedRecord(ParcelriskError):
    """A stored decision edited outside the service into something that no longer reads
    (JSON that does not parse, bytes that are not text): NOT INTACT, and nothing to show."""


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One decision, with everything needed to recompute and explain it.

    ``declaration_json`` is the canonical declaration as JSON text; ``features`` the model input
    row as little-endian float64 bytes in the order of the model's manifest (bit-exact, so the
    score can be recomputed exactly; NaN = missing).
    """

    decision_id: str
    scored_at: str
    declaration_id: str
    declaration_json: str
    features: bytes
    manifest_fingerprint: str
    model_name: str
    model_version: str
    thresholds_version: str
    lane_policy: str  # JSON of ServeParams.lane_policy(): AEO discount, exploration rate/seed/lane
    raw_score: float
    risk: float
    expected_revenue: float
    lane: str
    exploration: bool
    reasons: list[dict[str, Any]]
    warnings: list[str]
    # Who asked (``serving.auth``): the request's id (its X-Request-ID, or one made for it) and
    # the id of the API key that sent it, never the key; empty offline and without auth.
    request_id: str = ""
    api_key_id: str = ""
    # What was known: the live entity state held every decision of the log up to ``known_seq``
    # and every inspection result up to ``known_results_seq`` when this one was scored (plus
    # the earlier rows of its own batch), so ``parcelrisk audit recompute`` can rebuild it.
    known_seq: int = 0
    known_results_seq: int = 0
    # The model that decided, whatever the registry says later: its MLflow run and the SHA-256
    # of its bundle.json (which pins every file of the bundle by digest). Empty: recorded
    # before they were (the name and version are then all the record says).
    model_run_id: str = ""
    model_bundle_sha256: str = ""
    # The stable code of each of ``warnings``, in the same order (``features.notes``); empty
    # in a decision recorded before warnings had codes (``codes_of_warnings`` then says so).
    warning_codes: list[str] = field(default_factory=list)
    # The pseudonym key the declaration's personal ids were keyed with (its id, never the key):
    # a lookup of a person by raw id finds only the decisions keyed as it keys. Empty: recorded
    # before decisions said so.
    pseudonym_key_id: str = ""
    # Set by the store when it records the decision (None before): its place in the chain and
    # the time it was committed and released to its request (``serving.audit.chain``).
    seq: int | None = field(default=None, compare=False)
    answered_at: str | None = field(default=None, compare=False)

    def amended(self) -> DecisionRecord:
        """This decision saying its declaration id was decided before with other content
        (``AMENDED_WARNING``), once."""
        codes = self.codes_of_warnings
        if DECLARATION_AMENDED in codes:
            return self
        return replace(
            self,
            warnings=[*self.warnings, AMENDED_WARNING],
            warning_codes=[*codes, DECLARATION_AMENDED],
        )

    def stored_as(self, seq: int, answered_at: str) -> DecisionRecord:
        """This record as the store keeps it: at ``seq`` in the chain, answered at ``answered_at``."""
        return replace(self, seq=seq, answered_at=answered_at)

    @property
    def declaration(self) -> dict[str, Any]:
        """The stored declaration; ``DamagedRecord`` when it no longer reads as one (edited
        outside the service: bytes that are not text, text that is not a JSON object)."""
        try:
            value = json.loads(self.declaration_json)
        except (ValueError, TypeError) as exc:  # UnicodeDecodeError and JSONDecodeError too
            raise self._damaged(type(exc).__name__) from None
        if not isinstance(value, dict):
            raise self._damaged(f"a JSON {type(value).__name__}, not an object")
        return value

    def _damaged(self, why: str) -> DamagedRecord:
        return DamagedRecord(
            f"decision {self.decision_id} (seq {self.seq}): its stored declaration cannot be "
            f"read ({why}): edited outside the service, NOT INTACT; `parcelrisk audit verify` "
            "names where the chain breaks"
        )

    @property
    def codes_of_warnings(self) -> list[str]:
        """One code per warning, in order: ``unclassified`` for the warnings of a decision
        recorded before warnings had codes."""
        if len(self.warning_codes) == len(self.warnings):
            return list(self.warning_codes)
        return [UNCLASSIFIED] * len(self.warnings)

    @property
    def feature_vector(self) -> np.ndarray:
        return np.frombuffer(self.features, dtype="<f8")

    def api_item(self) -> dict[str, Any]:
        """The ``/score`` response item (``serving.schemas.Decision``)."""
        return {
            "decision_id": self.decision_id,
            "declaration_id": self.declaration_id,
            "risk": self.risk,
            "expected_revenue": self.expected_revenue,
            "lane": self.lane,
            "exploration": self.exploration,
            "reasons": self.reasons,
            "model": {"name": self.model_name, "version": self.model_version},
            "thresholds_version": self.thresholds_version,
            "warnings": self.warnings,
            "warning_codes": self.codes_of_warnings,
        }

    def stored_item(self, feature_names: Sequence[str], intact: bool) -> dict[str, Any]:
        """The ``/decision`` body (``serving.schemas.StoredDecision``).

        ``feature_names``: the manifest the features were stored in, one name per value.
        """
        features = [None if math.isnan(v) else v for v in self.feature_vector.tolist()]
        return {
            "decision_id": self.decision_id,
            "scored_at": self.scored_at,
            "declaration_id": self.declaration_id,
            "declaration": self.declaration,
            "features": dict(zip(feature_names, features, strict=True)),
            "model": {
                "name": self.model_name,
                "version": self.model_version,
                "run_id": self.model_run_id or None,
                "bundle_sha256": self.model_bundle_sha256 or None,
            },
            "thresholds_version": self.thresholds_version,
            "lane_policy": json.loads(self.lane_policy),
            "raw_score": self.raw_score,
            "risk": self.risk,
            "expected_revenue": self.expected_revenue,
            "lane": self.lane,
            "exploration": self.exploration,
            "reasons": self.reasons,
            "warnings": self.warnings,
            "warning_codes": self.codes_of_warnings,
            "request_id": self.request_id,
            "api_key_id": self.api_key_id,
            "known_seq": self.known_seq,
            "known_results_seq": self.known_results_seq,
            "seq": self.seq,
            "answered_at": self.answered_at,
            "intact": intact,
        }

    def stored_values(self) -> tuple[Any, ...]:
        """The values a store keeps, in ``STORED_FIELDS`` order: text, numbers and bytes only."""
        return (
            self.decision_id,
            self.scored_at,
            self.declaration_id,
            self.declaration_json,
            self.features,
            self.manifest_fingerprint,
            self.model_name,
            self.model_version,
            self.thresholds_version,
            self.lane_policy,
            float(self.raw_score),
            float(self.risk),
            float(self.expected_revenue),
            self.lane,
            int(self.exploration),
            json.dumps(self.reasons) if self.reasons else "[]",
            json.dumps(self.warnings) if self.warnings else "[]",
            self.request_id,
            self.api_key_id,
            int(self.known_seq),
            int(self.known_results_seq),
            self.model_run_id,
            self.model_bundle_sha256,
            json.dumps(self.warning_codes) if self.warning_codes else "",
            self.pseudonym_key_id,
        )

    @classmethod
    def from_stored_values(
        cls, values: Sequence[Any], seq: int | None = None, answered_at: str | None = None
    ) -> DecisionRecord:
        """The record back from ``stored_values`` (as a store returns them)."""
        v = dict(zip(STORED_FIELDS, values, strict=True))
        return cls(
            decision_id=v["decision_id"],
            scored_at=v["scored_at"],
            declaration_id=v["declaration_id"],
            declaration_json=v["declaration_json"],
            features=bytes(v["features"]),
            manifest_fingerprint=v["manifest_fingerprint"],
            model_name=v["model_name"],
            model_version=v["model_version"],
            thresholds_version=v["thresholds_version"],
            lane_policy=v["lane_policy"],
            raw_score=v["raw_score"],
            risk=v["risk"],
            expected_revenue=v["expected_revenue"],
            lane=v["lane"],
            exploration=bool(v["exploration"]),
            reasons=json.loads(v["reasons_json"]),
            warnings=json.loads(v["warnings_json"]),
            request_id=v["request_id"] or "",
            api_key_id=v["api_key_id"] or "",
            known_seq=int(v["known_seq"]),
            known_results_seq=int(v["known_results_seq"]),
            model_run_id=v["model_run_id"] or "",
            model_bundle_sha256=v["model_bundle_sha256"] or "",
            warning_codes=json.loads(v["warning_codes_json"]) if v["warning_codes_json"] else [],
            pseudonym_key_id=v["pseudonym_key_id"] or "",
            seq=seq,
            answered_at=answered_at,
        )


def features_for_storage(X: np.ndarray) -> list[bytes]:
    """Model input rows as little-endian float64 bytes."""
    X = np.ascontiguousarray(X, dtype="<f8")
    return [row.tobytes() for row in X]


# --- compact feature vectors ----------------------------------------------------------------
# A stored vector: a format byte, the vector's length (uint16), a bitmask of the values kept as
# float16 and one of those kept as float32 (each value exactly equal to its float64), then those
# values, then the rest as float64. Lossless by construction, so a stored vector recomputes the
# score bit for bit. Most of a vector is counts, flags and codes: on the demo, batches of 8 take
# ~700 bytes a vector instead of 1,312. A per-row zlib/deflate costs 20-80 us a row (a quarter
# of a core at 13,000 decisions/s); old days are compressed in bulk by the archive instead.
_PACKED = 2
_HEADER = struct.Struct("<BH")  # format, number of values


def pack_feature_rows(rows: Sequence[bytes]) -> list[bytes]:
    """Canonical float64 vectors (``features_for_storage``) of one batch, packed losslessly.
    The batch shares one pair of masks: one vectorised pass, no per-value Python."""
    if not rows:
        return []
    X = np.frombuffer(b"".join(rows), dtype="<f8").reshape(len(rows), -1)
    n_rows, n = X.shape
    bits = X.view("<u8")  # exact means the same bits back: -0.0 and the NaN's payload too
    with np.errstate(over="ignore", invalid="ignore"):  # too large: inf, not exact, kept wider
        half, single = X.astype("<f2"), X.astype("<f4")
    in_half = (half.astype("<f8").view("<u8") == bits).all(axis=0)
    in_single = (single.astype("<f8").view("<u8") == bits).all(axis=0) & ~in_half
    in_double = ~(in_half | in_single)
    head = (
        _HEADER.pack(_PACKED, n) + np.packbits(in_half).tobytes() + np.packbits(in_single).tobytes()
    )
    parts = [
        np.ascontiguousarray(half[:, in_half]).tobytes(),
        np.ascontiguousarray(single[:, in_single]).tobytes(),
        np.ascontiguousarray(X[:, in_double]).tobytes(),
    ]
    widths = [2 * int(in_half.sum()), 4 * int(in_single.sum()), 8 * int(in_double.sum())]
    return [
        head + b"".join(part[i * w : i * w + w] for part, w in zip(parts, widths, strict=True))
        for i in range(n_rows)
    ]


def unpack_features(blob: bytes) -> bytes:
    """A stored vector back to canonical little-endian float64 bytes."""
    if len(blob) < _HEADER.size or blob[0] != _PACKED:
        raise ValueError("stored feature vector: unknown format")
    _, n = _HEADER.unpack_from(blob)
    mask_bytes = (n + 7) // 8
    masks = np.frombuffer(blob, np.uint8, 2 * mask_bytes, _HEADER.size)
    in_half = np.unpackbits(masks[:mask_bytes])[:n].astype(bool)
    in_single = np.unpackbits(masks[mask_bytes:])[:n].astype(bool)
    in_double = ~(in_half | in_single)
    at = _HEADER.size + 2 * mask_bytes
    out = np.empty(n, dtype="<f8")
    for mask, dtype, width in ((in_half, "<f2", 2), (in_single, "<f4", 4), (in_double, "<f8", 8)):
        k = int(mask.sum())
        out[mask] = np.frombuffer(blob, dtype, k, at)
        at += width * k
    return out.tobytes()
