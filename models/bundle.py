"""The trained risk model as one deployable unit: boosters, calibration, lane thresholds, manifest.

This is the contract between training (``models.train`` writes it, ``models.registry`` logs it to
MLflow) and serving (loads it once at start-up). It is plain files in one directory so a decision
can be recomputed years later without MLflow: ``risk_model.txt`` / ``revenue_model.txt``
(LightGBM text format), ``bundle.json`` (calibration, thresholds, metadata) and the feature manifest.
``reference.json`` (``models.reference``), when present, is the training traffic's distribution
that ``parcelrisk monitor`` measures drift against; a bundle from before it loads without it.
``bundle.json`` records the SHA-256 of every other file (``file_sha256``): load checks them
before LightGBM reads a byte (``check_bundle_digests``).
A model refit on all labelled history also keeps its first-pass boosters
(``risk_model_eval.txt`` / ``revenue_model_eval.txt``): only those have honest held-out metrics,
so the champion/challenger gate scores them (``evaluation_model``).

Scores: ``raw`` is the risk booster's log-odds (what SHAP contributions add up to); ``risk`` is
the calibrated probability; ``expected_revenue`` = risk x E[revenue | illicit];
``priority`` is what lanes rank on (risk or expected revenue, chosen at training).
The revenue booster is one gamma model whatever training fitted behind it (by offence type it
is the distilled mixture, ``models.train``), so serving costs one prediction per booster.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from features.errors import ParcelriskError
from features.pipeline.manifest import FeatureManifest

if TYPE_CHECKING:
    import lightgbm as lgb
    import numpy as np

    from models.reference import ModelReference

log = logging.getLogger(__name__)

Objective = Literal["risk", "revenue"]

RISK_MODEL_FILE = "risk_model.txt"
REVENUE_MODEL_FILE = "revenue_model.txt"
RISK_EVAL_MODEL_FILE = "risk_model_eval.txt"
REVENUE_EVAL_MODEL_FILE = "revenue_model_eval.txt"
BUNDLE_FILE = "bundle.json"
DIGESTS_KEY = "file_sha256"  # in bundle.json: {file name: SHA-256 hex} of the files load reads


@dataclass(frozen=True)
class Calibration:
    """Monotone map from raw score (log-odds) to probability, as interpolation knots.

    Isotonic regression fitted on validation, stored as knots so the service needs only numpy.
    """

    raw_knots: tuple[float, ...]
    prob_knots: tuple[float, ...]
    method: str = "isotonic"

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        import numpy as np

        return np.interp(raw, np.asarray(self.raw_knots), np.asarray(self.prob_knots))


@dataclass(frozen=True)
class LaneThresholds:
    """Priority cut-offs that fill the red and yellow lanes at the configured traffic shares."""

    objective: Objective
    red_cutoff: float  # priority >= red_cutoff -> red
    yellow_cutoff: float  # red_cutoff > priority >= yellow_cutoff -> yellow
    red_rate: float
    yellow_rate: float
    version: str  # content hash, reported with every decision
    # What the cut-offs were fitted on (defaults: a bundle written before they were recorded,
    # fitted on the raw priority, i.e. AEO rows x 1.0). ``aeo_discount``: the AEO factor applied
    # to the priorities fitted on, the one ``serve.aeo_risk_discount`` should equal;
    # ``fitted_on``: which traffic (training period, decision store period, stored quantiles);
    # ``parcels``: how many parcels it held.
    aeo_discount: float = 1.0
    fitted_on: str = ""
    parcels: int = 0


def revenue_if_illicit(
    revenue_booster: lgb.Booster | None, X: np.ndarray, scale: float = 1.0
) -> np.ndarray:
    """E[revenue recovered | illicit], EUR: the gamma booster's mean (log link) x ``scale``,
    its balance on the labels (``models.train.revenue_balance``; 1.0 in a bundle from before)."""
    import numpy as np

    if revenue_booster is None:
        return np.zeros(len(X))
    return np.maximum(revenue_booster.predict(X), 0.0) * scale


def score_rows(
    X: np.ndarray,
    risk_booster: lgb.Booster,
    revenue_booster: lgb.Booster | None,
    calibration: Calibration,
    objective: Objective,
    revenue_scale: float = 1.0,
) -> dict[str, np.ndarray]:
    """raw, risk, expected_revenue and priority for each row of a manifest-ordered matrix.

    The one definition of the scores: ``RiskModel.score`` calls it, and training calls it
    directly to rank the traffic its lane cut-offs are fitted on, before the bundle exists.
    """
    raw = risk_booster.predict(X, raw_score=True)
    risk = calibration(raw)
    expected_revenue = risk * revenue_if_illicit(revenue_booster, X, revenue_scale)
    priority = expected_revenue if objective == "revenue" else risk
    return {"raw": raw, "risk": risk, "expected_revenue": expected_revenue, "priority": priority}


def digested_file_names() -> tuple[str, ...]:
    """The files of a bundle that ``RiskModel.load`` reads besides ``bundle.json``."""
    from features.pipeline.manifest import MANIFEST_FILE
    from models.reference import REFERENCE_FILE

    return (
        RISK_MODEL_FILE,
        REVENUE_MODEL_FILE,
        RISK_EVAL_MODEL_FILE,
        REVENUE_EVAL_MODEL_FILE,
        MANIFEST_FILE,
        REFERENCE_FILE,
    )


def digest_bundle_files(directory: Path) -> dict[str, str]:
    """SHA-256 (hex) of each of the bundle's files that is present, by file name."""
    from features.intake.validation import fingerprint_file

    directory = Path(directory)
    return {
        name: fingerprint_file(directory / name)
        for name in digested_file_names()
        if (directory / name).is_file()
    }


def check_bundle_digests(directory: Path, recorded: Any) -> None:
    """Refuse a bundle whose files are not, byte for byte, the ones digested when it was saved.

    LightGBM given a malformed model file aborts the whole process (SIGABRT/SIGSEGV, nothing to
    catch): ``promote`` died and every serving worker crash-looped on one truncated file. And an
    edited leaf value it loads without a word. So the bytes are checked before LightGBM sees them,
    and a bad file is a ``ParcelriskError``, which the callers already handle: ``promote`` prints
    one line, the service logs it and goes on serving the version it has. A missing file and a
    file the bundle did not have at training are refused too: load would read a different model.
    ``recorded`` None: a bundle saved before digests existed, nothing to check against; it loads
    as it always did (bundle.json itself is not digested: it holds the digests, and a corrupt one
    fails to parse).
    """
    directory = Path(directory)
    if recorded is None:
        log.warning(
            "model bundle in %s records no file digests (saved before they existed): "
            "its files are loaded unchecked",
            directory,
        )
        return
    if not isinstance(recorded, dict) or not all(isinstance(v, str) for v in recorded.values()):
        raise ParcelriskError(
            f"model bundle in {directory}: {BUNDLE_FILE} {DIGESTS_KEY} unreadable"
        )
    present = digest_bundle_files(directory)
    for name in sorted(set(recorded) | set(present)):
        if name not in present:
            problem = "is missing but was recorded at training"
        elif name not in recorded:
            problem = "was not part of the bundle at training"
        elif present[name] != recorded[name]:
            problem = "does not match the SHA-256 digest recorded at training (corrupted or edited)"
        else:
            continue
        raise ParcelriskError(
            f"model bundle in {directory}: {name} {problem}: retrain, or restore the bundle"
        )


@dataclass
class RiskModel:
    manifest: FeatureManifest
    risk_booster: lgb.Booster
    revenue_booster: lgb.Booster | None
    calibration: Calibration
    thresholds: LaneThresholds
    metadata: dict[str, Any] = field(
        default_factory=dict
    )  # entity_state_fingerprint, trained_at, data fingerprint...
    # First-pass boosters of a model refit on all labelled history (None: not refit). They were
    # fitted on the train period only, so their test-period metrics are the honest ones.
    risk_booster_eval: lgb.Booster | None = None
    revenue_booster_eval: lgb.Booster | None = None
    # The training traffic's feature and score distributions (None: a bundle from before).
    reference: ModelReference | None = None
    # Each revenue booster's balance on the labels (``revenue_if_illicit``): the deployed
    # one's, and the first pass's (None: not refit). 1.0 in a bundle from before.
    revenue_scale: float = 1.0
    revenue_scale_eval: float | None = None

    def evaluation_model(self) -> RiskModel:
        """The model whose held-out metrics were measured: the first pass, or self if not refit.

        Same calibration and thresholds (the metrics rank, they never use lanes).
        """
        if self.risk_booster_eval is None:
            return self
        return replace(
            self,
            risk_booster=self.risk_booster_eval,
            revenue_booster=self.revenue_booster_eval,
            risk_booster_eval=None,
            revenue_booster_eval=None,
            revenue_scale=(
                self.revenue_scale if self.revenue_scale_eval is None else self.revenue_scale_eval
            ),
            revenue_scale_eval=None,
        )

    # --- scoring -------------------------------------------------------------------------
    def raw_score(self, X: np.ndarray) -> np.ndarray:
        return self.risk_booster.predict(X, raw_score=True)

    def risk(self, X: np.ndarray, raw: np.ndarray | None = None) -> np.ndarray:
        return self.calibration(self.raw_score(X) if raw is None else raw)

    def revenue_if_illicit(self, X: np.ndarray) -> np.ndarray:
        return revenue_if_illicit(self.revenue_booster, X, self.revenue_scale)

    def score(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """raw, risk, expected_revenue and priority for each row of the manifest-ordered matrix."""
        return score_rows(
            X,
            self.risk_booster,
            self.revenue_booster,
            self.calibration,
            self.thresholds.objective,
            self.revenue_scale,
        )

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """TreeSHAP of the raw risk score: (n, n_features + 1), last column the base value."""
        return self.risk_booster.predict(X, pred_contrib=True)

    # --- persistence ---------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.risk_booster.save_model(str(directory / RISK_MODEL_FILE))
        for booster, name in (
            (self.revenue_booster, REVENUE_MODEL_FILE),
            (self.risk_booster_eval, RISK_EVAL_MODEL_FILE),
            (self.revenue_booster_eval, REVENUE_EVAL_MODEL_FILE),
        ):
            if booster is not None:
                booster.save_model(str(directory / name))
            else:  # a reused directory must not keep a booster this model does not have
                (directory / name).unlink(missing_ok=True)
        self.manifest.write(directory)
        from models.reference import REFERENCE_FILE

        if self.reference is not None:
            (directory / REFERENCE_FILE).write_text(json.dumps(self.reference.to_dict()))
        else:
            (directory / REFERENCE_FILE).unlink(missing_ok=True)
        payload = {
            "calibration": asdict(self.calibration),
            "thresholds": asdict(self.thresholds),
            "metadata": self.metadata,
            "manifest_fingerprint": self.manifest.fingerprint,
            "revenue_scale": {
                "deployed": self.revenue_scale,
                "first_pass": self.revenue_scale_eval,
            },
            # of the files as written above: load refuses any that differ (check_bundle_digests)
            DIGESTS_KEY: digest_bundle_files(directory),
        }
        (directory / BUNDLE_FILE).write_text(json.dumps(payload, indent=1, default=str))
        return directory

    @classmethod
    def load(cls, directory: Path) -> RiskModel:
        import lightgbm as lgb

        directory = Path(directory)
        bundle_path = directory / BUNDLE_FILE
        if not bundle_path.exists() or not (directory / RISK_MODEL_FILE).exists():
            raise ParcelriskError(
                f"model bundle incomplete in {directory}: need {BUNDLE_FILE} and {RISK_MODEL_FILE}"
            )
        try:
            payload = json.loads(bundle_path.read_text())
        except ValueError as exc:  # truncated or garbled (UnicodeDecodeError is one too)
            raise ParcelriskError(
                f"model bundle in {directory}: {BUNDLE_FILE} unreadable: {exc}"
            ) from None
        # before anything below reads a file: LightGBM aborts the process on a malformed one
        check_bundle_digests(directory, payload.get(DIGESTS_KEY))
        manifest = FeatureManifest.read(directory)
        if payload.get("manifest_fingerprint") != manifest.fingerprint:
            raise ParcelriskError(
                f"model bundle in {directory}: feature manifest does not match the model"
            )

        def optional_booster(name: str) -> lgb.Booster | None:
            path = directory / name
            return lgb.Booster(model_file=str(path)) if path.exists() else None

        from models.reference import REFERENCE_FILE, ModelReference

        reference_path = directory / REFERENCE_FILE
        reference = (
            ModelReference.from_dict(json.loads(reference_path.read_text()))
            if reference_path.exists()
            else None
        )
        cal = payload["calibration"]
        scale = payload.get("revenue_scale") or {}
        return cls(
            manifest=manifest,
            risk_booster=lgb.Booster(model_file=str(directory / RISK_MODEL_FILE)),
            revenue_booster=optional_booster(REVENUE_MODEL_FILE),
            calibration=Calibration(
                tuple(cal["raw_knots"]), tuple(cal["prob_knots"]), cal.get("method", "isotonic")
            ),
            thresholds=LaneThresholds(**payload["thresholds"]),
            metadata=payload.get("metadata", {}),
            risk_booster_eval=optional_booster(RISK_EVAL_MODEL_FILE),
            revenue_booster_eval=optional_booster(REVENUE_EVAL_MODEL_FILE),
            reference=reference,
            revenue_scale=float(scale.get("deployed") or 1.0),
            revenue_scale_eval=(
                float(scale["first_pass"]) if scale.get("first_pass") is not None else None
            ),
        )
