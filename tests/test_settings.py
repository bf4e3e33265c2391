"""One settings model: every key of params.yaml known, defaults once, errors that name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from features.errors import ParcelriskError
from features.params import (
    ENV_OVERRIDES,
    FeatureParams,
    ServeParams,
    Settings,
    TrainParams,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_params_file_is_valid_and_read_whole() -> None:
    settings = load_settings(ROOT / "params.yaml", environ={})
    assert settings.train.lightgbm.cat_smooth == 50
    assert settings.train.lanes.red_rate == 0.01
    assert settings.features.windows_days == (7, 30, 180)
    assert settings.validation.max_weight_kg == 1000
    assert settings.serve.workers == 2


def test_missing_file_or_section_means_the_defaults(tmp_path: Path) -> None:
    assert load_settings(tmp_path / "absent.yaml", environ={}) == Settings()
    assert load_settings(write(tmp_path, "train:\n  seed: 3\n"), environ={}).serve == ServeParams()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("trian:\n  seed: 1\n", "params.yaml -: trian: unknown section"),
        (
            "train:\n  lightgbm:\n    cat_smoothing: 5\n",
            "train.lightgbm: cat_smoothing: unknown key",
        ),
        ("serve:\n  worker: 3\n", "serve: worker: unknown key"),
        ("features:\n  windows_days: [7, 0]\n", "features.windows_days: must be a non-empty"),
        ("features:\n  timezone: Mars/Olympus\n", "features.timezone: unknown time zone"),
        ("train:\n  refit: 'yes'\n", "train.refit: must be true or false"),
        (
            "train:\n  revenue_by_offence: 'no'\n",
            "train.revenue_by_offence: must be true or false",
        ),
        ("validate:\n  max_value: -1\n", "validate.max_value: Input should be greater than 0"),
        ("serve:\n  workers: 4\n  max_concurrency: 2\n", "max_concurrency (2) must be at least"),
        ("features:\n  base_currency: USD\n", "base_currency USD needs its own fx_to_base"),
        (
            "features:\n  refit_period_days: 7\n  refit_lag_days: 7\n",
            "refit_lag_days (7) must be shorter than refit_period_days (7)",
        ),
        ("serve: [1, 2]\n", "section 'serve' must be a mapping"),
        ("a: [1\n", "not valid YAML"),
    ],
)
def test_a_wrong_key_or_value_is_one_line_naming_it(tmp_path: Path, text: str, message: str):
    with pytest.raises(ParcelriskError, match=re.escape(message)) as err:
        load_settings(write(tmp_path, text), environ={})
    assert "\n" not in str(err.value).strip()


def test_only_documented_environment_variables_override(tmp_path: Path) -> None:
    path = write(tmp_path, "serve:\n  audit_db: from-file.db\n")
    env = {"PARCELRISK_AUDIT_DB": "/srv/decisions.db", "PARCELRISK_WORKERS": "9"}
    settings = load_settings(path, environ=env)
    assert settings.serve.audit_db == "/srv/decisions.db"
    assert settings.serve.workers == 2  # not a documented override: ignored
    assert set(ENV_OVERRIDES) == {"PARCELRISK_AUDIT_DB", "PARCELRISK_EXPLORATION_SEED"}
    with pytest.raises(ParcelriskError, match=r"serve\.exploration_seed"):
        load_settings(path, environ={"PARCELRISK_EXPLORATION_SEED": "not-a-number"})


def test_sections_are_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        ServeParams().workers = 3  # type: ignore[misc]


def test_lightgbm_defaults_are_lightgbms_except_the_loop() -> None:
    params = TrainParams.from_dict({"lightgbm": {"num_leaves": 15}})
    booster = params.lgb_params("binary")
    assert booster["num_leaves"] == 15 and booster["num_threads"] == 2
    assert "learning_rate" not in booster  # LightGBM's own default applies
    assert (params.n_estimators, params.early_stopping_rounds) == (1000, 50)
    assert (
        TrainParams.from_dict({"lightgbm": {"subsample": 0.8}}).lgb_params("binary")[
            "bagging_fraction"
        ]
        == 0.8
    )


def test_feature_params_record_the_resolved_currency_table() -> None:
    recorded = FeatureParams().to_dict()
    assert recorded["fx_to_base"]["EUR"] == 1.0
    assert FeatureParams.from_dict(recorded) == FeatureParams(fx_to_base=recorded["fx_to_base"])


def test_a_copy_of_the_params_names_its_files_absolutely(tmp_path):
    """Benchmarks and checks write params.yaml elsewhere and run from there: the watchlist it
    names must still be found."""
    from features.params import params_for_copy

    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "goods.csv").write_text("kind,pattern,category\nterm,kratom,drugs\n")
    source = tmp_path / "params.yaml"
    source.write_text("features:\n  watchlist: lists/goods.csv\ntrain:\n  seed: 3\n")
    copied = params_for_copy(source)
    assert copied["features"]["watchlist"] == str(tmp_path / "lists" / "goods.csv")
    assert copied["train"] == {"seed": 3}
    source.write_text("features:\n  watchlist: /abs/goods.csv\n")
    assert params_for_copy(source)["features"]["watchlist"] == "/abs/goods.csv"
    source.write_text("train:\n  seed: 3\n")  # no features section at all
    assert params_for_copy(source) == {"train": {"seed": 3}}


def test_the_default_exchange_rates_cover_administrations_currencies() -> None:
    """Exports in NGN, XOF or ARS convert without a table of their own; XOF is pegged."""
    from features.params import DEFAULT_FX_TO_BASE

    assert {"NGN", "XOF", "XAF", "ARS", "IDR", "ZAR", "KES", "EGP"} <= set(DEFAULT_FX_TO_BASE)
    assert DEFAULT_FX_TO_BASE["XOF"] * 655.957 == pytest.approx(1.0, abs=1e-4)
    assert all(rate > 0 for rate in DEFAULT_FX_TO_BASE.values())
