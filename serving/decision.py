"""One decision record: what was decided for one declaration, and every view of it.

A ``DecisionRecord`` is built once per scored row (``serving.scoring.decision_records``). The
``/score`` response item, the stored row (and its content hash), the ``/decision`` body and the
offline ``parcelrisk score`` output are all read off it, so they cannot disagree.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

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
)


def iso_utc(t_us: int) -> str:
    """UTC microseconds as the store writes times (as ``declaration_json`` does)."""
    moment = datetime.fromtimestamp(t_us // 1_000_000, UTC).replace(microsecond=t_us % 1_000_000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso_us(text: str) -> int:
    """A stored UTC time back to microseconds since the epoch."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


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

    @property
    def declaration(self) -> dict[str, Any]:
        return json.loads(self.declaration_json)

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
            "model": {"name": self.model_name, "version": self.model_version},
            "thresholds_version": self.thresholds_version,
            "lane_policy": json.loads(self.lane_policy),
            "raw_score": self.raw_score,
            "risk": self.risk,
            "expected_revenue": self.expected_revenue,
            "lane": self.lane,
            "exploration": self.exploration,
            "reasons": self.reasons,
            "warnings": self.warnings,
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
        )

    @classmethod
    def from_stored_values(cls, values: Sequence[Any]) -> DecisionRecord:
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
        )


def content_hash(values: Sequence[Any]) -> str:
    """SHA-256 of a record's ``stored_values``: lets an auditor see it was not edited later."""
    # Fields joined by a unit separator; bytes as-is, everything else by its exact str()
    # (repr of floats round-trips), so the hash is canonical and cheap (one update per row).
    parts = [v if isinstance(v, bytes) else str(v).encode() for v in values]
    return hashlib.sha256(b"\x1f".join(parts)).hexdigest()


def features_for_storage(X: np.ndarray) -> list[bytes]:
    """Model input rows as little-endian float64 bytes."""
    X = np.ascontiguousarray(X, dtype="<f8")
    return [row.tobytes() for row in X]
