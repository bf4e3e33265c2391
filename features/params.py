"""Feature parameters: the ``features`` section of params.yaml as a frozen dataclass."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from features.errors import ParcelriskError

DEFAULT_VAGUE_TERMS = (
    "gift",
    "gifts",
    "present",
    "parts",
    "part",
    "spare",
    "goods",
    "accessories",
    "accessory",
    "sample",
    "samples",
    "item",
    "items",
    "stuff",
    "product",
    "products",
    "misc",
    "various",
    "merchandise",
    "package",
    "parcel",
    "other",
    "personal",
    "effects",
    "use",
)


@dataclass(frozen=True)
class FeatureParams:
    base_currency: str = "EUR"
    fx_to_base: dict[str, float] | None = None  # None: features.intake.contract.DEFAULT_FX_TO_BASE
    windows_days: tuple[int, ...] = (7, 30, 180)
    outcome_window_days: int = 90
    split_windows_hours: tuple[int, ...] = (24, 72, 168)
    split_entity: str = "consignee_id"  # whose recent parcels add up (split shipments)
    prior_strength: float = 20.0
    default_prior: float = 0.05  # hit-rate prior before any outcome is known
    refit_period_days: int = 14
    de_minimis_eur: float = 150.0
    min_reference_count: int = 5
    # Levels kept per categorical column (in order of first appearance in time, so codes never
    # depend on later data; levels first seen after that many others code as unknown). Sized
    # for tariff codes: about 5,600 HS6 subheadings and 1,230 headings exist.
    max_categories: int = 6000
    timezone: str = "UTC"  # the administration's time zone: calendar features in local time
    text_alpha: float = 0.5
    vague_terms: tuple[str, ...] = DEFAULT_VAGUE_TERMS
    entities: tuple[str, ...] = (
        "seller_id",
        "consignee_id",
        "platform_id",
        "operator_id",
        "origin_country",
        "hs_chapter",
        "hs6",
        "seller_id*hs_chapter",
        "seller_country*origin_country",
    )
    categoricals: tuple[str, ...] = (
        "seller_country",
        "channel",
        "category",
        "currency",
        "origin_country",
        "hs_chapter",
        "hs_heading",
        "hs6",
        "arrival_office",
    )
    extra_families: tuple[str, ...] = ()  # optional feature families (features.families)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.windows_days or min(self.windows_days) <= 0:
            raise ParcelriskError("features.windows_days must be positive day counts")
        if self.refit_period_days <= 0:
            raise ParcelriskError("features.refit_period_days must be positive")
        if self.prior_strength <= 0:
            raise ParcelriskError("features.prior_strength must be positive")
        if self.max_categories < 1:
            raise ParcelriskError("features.max_categories must be at least 1")
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ParcelriskError(
                f"features.timezone: unknown time zone {self.timezone!r} (use an IANA name "
                "such as Europe/Paris or Asia/Seoul)"
            ) from exc

    @property
    def fx(self) -> dict[str, float]:
        from features.intake.contract import DEFAULT_FX_TO_BASE

        return dict(self.fx_to_base or DEFAULT_FX_TO_BASE)

    @property
    def max_window_days(self) -> int:
        return max(
            max(self.windows_days),
            self.outcome_window_days,
            max(self.split_windows_hours) // 24 + 1,
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["fx_to_base"] = self.fx
        return out

    @classmethod
    def from_mapping(cls, raw: dict[str, Any] | None) -> FeatureParams:
        raw = dict(raw or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ParcelriskError(f"params.yaml features: unknown key(s) {', '.join(unknown)}")
        for key in (
            "windows_days",
            "split_windows_hours",
            "vague_terms",
            "entities",
            "categoricals",
            "extra_families",
        ):
            if key in raw:
                raw[key] = tuple(raw[key])
        return cls(**raw)


def load_section(path: Path, section: str) -> dict[str, Any]:
    """One section of params.yaml; a missing file means defaults, a broken one is an error."""
    import yaml

    path = Path(path)
    if not path.exists():
        return {}
    try:
        payload = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParcelriskError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(payload, dict):
        raise ParcelriskError(f"{path}: expected a mapping of sections")
    value = payload.get(section) or {}
    if not isinstance(value, dict):
        raise ParcelriskError(f"{path}: section {section!r} must be a mapping")
    return value


def load_feature_params(path: Path) -> FeatureParams:
    return FeatureParams.from_mapping(load_section(path, "features"))
