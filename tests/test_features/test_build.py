"""Point-in-time features: leakage, order invariance, online/batch parity, priors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.intake.contract import DECLARATION_COLUMNS, Contract, coerce_declarations
from features.params import FeatureParams, Settings
from features.pipeline.build import build_features
from features.pipeline.history import EventIndex
from features.pipeline.online import compute_online_features
from features.pipeline.prepare import (
    as_known_at,
    outcome_events,
    outcomes_known_at,
    period_of,
    period_start_us,
    sort_declarations,
)
from features.pipeline.snapshot import EntityState, build_entity_state
from features.synthetic import SyntheticParams, generate

PARAMS = FeatureParams()


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    declarations, _ = generate(SyntheticParams(seed=11, parcels=12_000, days=50))
    return declarations


@pytest.fixture(scope="module")
def built(history: pd.DataFrame):
    return build_features(history, Contract(), PARAMS)


def _features(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    return frame.set_index("declaration_id")[names]


def _assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.index) == list(b.index)
    for name in a.columns:
        x, y = a[name].to_numpy(float), b[name].to_numpy(float)
        ok = np.isclose(x, y, rtol=1e-9, atol=1e-9, equal_nan=True)
        assert ok.all(), f"{name}: {(~ok).sum()} rows differ, e.g. {x[~ok][:3]} vs {y[~ok][:3]}"


def _batch_features_with(
    known: pd.DataFrame,
    new: pd.DataFrame,
    contract: Contract,
    categories,
    params: FeatureParams = PARAMS,
) -> pd.DataFrame:
    """Batch features of a history plus new declarations that have no outcomes yet."""
    pending = new.assign(
        inspected=False,
        inspected_at=pd.NaT,
        illicit=pd.NA,
        offence_type=None,
        revenue_recovered=np.nan,
        selection_reason=None,
    )
    world = coerce_declarations(
        pd.concat([known, pending], ignore_index=True), with_outcomes=True, contract=contract
    )
    return build_features(world, contract, params, categories=categories).frame


def test_one_row_per_declaration_with_labels_apart(built, history):
    frame, manifest = built.frame, built.manifest
    assert len(frame) == len(history)
    assert frame["declaration_id"].is_unique
    assert not set(manifest.names) & {
        "inspected",
        "illicit",
        "revenue_recovered",
        "inspected_at",
        "offence_type",
    }
    assert frame["declared_at"].is_monotonic_increasing
    assert len(manifest.names) == len(set(manifest.names))
    groups = manifest.groups()
    for group in (
        "entity_history",
        "valuation",
        "split_shipment",
        "text",
        "declaration",
        "calendar",
        "weight",
    ):
        assert groups.get(group, 0) > 0, group


def test_truncating_history_leaves_earlier_rows_unchanged(built, history):
    """Every column of the features frame, categorical codes included (learned, not given)."""
    cut = history["declared_at"].quantile(0.6)
    prefix = coerce_declarations(
        history[history["declared_at"] < cut].reset_index(drop=True), with_outcomes=True
    )
    short = build_features(prefix, Contract(), PARAMS).frame
    full = built.frame[built.frame["declared_at"] < cut].reset_index(drop=True)
    assert list(short.columns) == list(full.columns)
    pd.testing.assert_frame_equal(short, full, check_exact=True)


def test_truncating_what_is_known_leaves_earlier_features_unchanged(built, history):
    """As known at the cut: later results unknown too; features of earlier rows unchanged."""
    names = built.manifest.names
    cut = history["declared_at"].quantile(0.6)
    truncated = coerce_declarations(as_known_at(history, cut), with_outcomes=True)
    short = build_features(truncated, Contract(), PARAMS).frame
    full = built.frame[built.frame["declared_at"] < cut]
    _assert_same(_features(full, names), _features(short, names))


def test_category_codes_are_first_seen_and_capped(history):

    two = build_features(history.head(500), Contract(), PARAMS.replace(max_categories=2))
    spec = two.manifest.spec("cat_origin_country")
    ordered = history.sort_values(["declared_at", "declaration_id"])["origin_country"].head(500)
    assert spec.categories == tuple(ordered.drop_duplicates().head(2))
    codes = two.frame.set_index("declaration_id")["cat_origin_country"]
    expected = ordered.map({v: i for i, v in enumerate(spec.categories)}).fillna(-1)
    assert codes.loc[history.loc[ordered.index, "declaration_id"]].tolist() == expected.tolist()


def test_shuffling_input_changes_nothing(built, history):
    shuffled = history.sample(frac=1.0, random_state=3).reset_index(drop=True)
    again = build_features(shuffled, Contract(), PARAMS).frame
    _assert_same(
        _features(built.frame, built.manifest.names), _features(again, built.manifest.names)
    )


def test_outcome_recorded_after_declaration_does_not_leak(history, built):
    inspected = history.index[history["inspected"] & history["illicit"].fillna(False)]
    row = inspected[len(inspected) // 2]
    seller = history.at[row, "seller_id"]
    recorded = history.at[row, "inspected_at"]
    frame = built.frame.set_index("declaration_id")
    same_seller = history[(history["seller_id"] == seller)]
    before = same_seller[
        (same_seller["declared_at"] > history.at[row, "declared_at"])
        & (same_seller["declared_at"] <= recorded)
    ]
    after = same_seller[same_seller["declared_at"] > recorded]
    # flip the label: parcels of the same seller declared before the result was recorded must not move
    flipped = history.copy()
    flipped.loc[row, "illicit"] = False
    flipped.loc[row, "offence_type"] = None
    flipped.loc[row, "revenue_recovered"] = 0.0
    frame2 = build_features(flipped, Contract(), PARAMS).frame.set_index("declaration_id")
    cols = ["seller_n_illicit", "seller_hit_rate", "seller_revenue_recovered_eur"]
    if len(before):
        assert np.allclose(
            frame.loc[before["declaration_id"], cols], frame2.loc[before["declaration_id"], cols]
        )
    if len(after):
        assert (
            frame.loc[after["declaration_id"], "seller_n_illicit"]
            - frame2.loc[after["declaration_id"], "seller_n_illicit"]
            == 1
        ).all()
    assert len(before) + len(after) > 0


def test_same_timestamp_parcels_do_not_see_each_other():
    codes = np.array([0, 0, 0])
    times = np.array([10, 10, 20])
    index = EventIndex(codes, times)
    assert index.prefix(codes, times)["count"].tolist() == [0, 0, 2]


def test_unknown_entities_get_the_prior(built, history):
    cutoff = history["declared_at"].max() + pd.Timedelta(seconds=1)
    state = build_entity_state(history, Contract(), PARAMS, cutoff=cutoff, manifest=built.manifest)
    new = history[list(DECLARATION_COLUMNS)].tail(2).copy()
    new["declared_at"] = cutoff + pd.Timedelta(hours=1)
    new["declaration_id"] = ["N1", "N2"]
    new["seller_id"] = ["NEVER-SEEN-1", "NEVER-SEEN-2"]
    frame = compute_online_features(new, state)
    assert (frame["seller_n_inspected"] == 0).all()
    assert frame["seller_days_since_first"].isna().all()
    rates = frame["seller_hit_rate"].to_numpy()
    assert np.all((rates > 0) & (rates < 1))
    assert rates[0] == pytest.approx(rates[1])
    assert (frame["operator_n_inspected"] > 0).all()  # known entities keep their history


def test_online_features_equal_batch_after_cutoff(tmp_path, built, history):
    manifest = built.manifest
    categories = {s.name: s.categories for s in manifest.features if s.dtype == "category"}
    cut = pd.Timestamp(history["declared_at"].quantile(0.7)).floor("h")
    cut_us = cut.value // 1000
    period_end = period_start_us(
        int(period_of(np.array([cut_us]), PARAMS.refit_period_days)[0]) + 1,
        PARAMS.refit_period_days,
    )
    new = history[
        (history["declared_at"] >= cut)
        & (history["declared_at"] < pd.Timestamp(period_end * 1000, tz="UTC"))
    ]
    assert len(new) > 100
    # batch: the world as known at the cutoff plus the new declarations (no outcomes yet)
    batch = _batch_features_with(as_known_at(history, cut), new, Contract(), categories)
    state = build_entity_state(history, Contract(), PARAMS, cutoff=cut, manifest=manifest)
    state.save(tmp_path / "state")
    loaded = EntityState.load(tmp_path / "state")
    request = new[list(DECLARATION_COLUMNS)].sample(frac=1.0, random_state=5)
    online = compute_online_features(request, loaded)
    assert list(online["declaration_id"]) == list(request["declaration_id"])  # input order kept
    b = _features(batch, manifest.names).loc[online["declaration_id"]]
    o = _features(online, manifest.names)
    for name in manifest.names:
        x, y = b[name].to_numpy(float), o[name].to_numpy(float)
        if (
            name.endswith(("_n_7d", "_n_30d", "_n_180d", "_n_inspected", "_n_illicit"))
            or "parcels" in name
        ):
            assert np.array_equal(x, y, equal_nan=True), name  # counts exact (NaN: unknown key)
        else:
            assert np.allclose(x, y, rtol=1e-9, atol=1e-9, equal_nan=True), name


def test_online_matrix_and_context_equal_those_of_the_feature_frame(built, history):
    """The scoring path reads the matrix and reason context without building the frame."""
    from features.intake.columns import python_values
    from features.pipeline.manifest import DERIVED_CONTEXT, REASON_CONTEXT
    from features.pipeline.online import online_features

    cutoff = history["declared_at"].max() + pd.Timedelta(seconds=1)
    state = build_entity_state(history, Contract(), PARAMS, cutoff=cutoff, manifest=built.manifest)
    request = history[list(DECLARATION_COLUMNS)].tail(40).reset_index(drop=True)
    request.loc[3, "origin_country"] = "ZZ"  # unknown category -> NaN in both
    request.loc[4, "platform_id"] = None
    features = online_features(request, state)
    frame = features.frame()
    assert len(features) == len(request)
    assert np.array_equal(features.matrix(), built.manifest.matrix(frame), equal_nan=True)
    assert np.isnan(features.matrix()[3, built.manifest.names.index("cat_origin_country")])
    # the frame holds the declaration's context; the online path adds what families derive
    # for reasons alone (the word a text reason names)
    assert list(features.context) == [*REASON_CONTEXT, *DERIVED_CONTEXT]
    for name in REASON_CONTEXT:
        assert features.context[name].tolist() == python_values(frame[name]), name
    words = features.context["description_word"]
    rate = features.values["text_word_hit_rate_max"]
    assert all((w is None) == np.isnan(r) for w, r in zip(words, rate, strict=True))


def test_a_reason_word_is_kept_only_for_the_value_it_explains(built, history):
    """``context_of``: a stored decision's vector explained against its declaration recomputed
    now names the word only where the feature it explains still has the stored value (a refit
    text model may rank another word first)."""
    from features.pipeline.online import online_features

    cutoff = history["declared_at"].max() + pd.Timedelta(seconds=1)
    state = build_entity_state(history, Contract(), PARAMS, cutoff=cutoff, manifest=built.manifest)
    request = history[list(DECLARATION_COLUMNS)].tail(20).reset_index(drop=True)
    features = online_features(request, state)
    words = features.context["description_word"]
    worded = [i for i, w in enumerate(words) if w is not None]
    assert len(worded) >= 2
    X = features.matrix()
    assert features.context_of(X)["description_word"].tolist() == words.tolist()
    X[worded[0], built.manifest.names.index("text_word_hit_rate_max")] += 0.01
    kept = features.context_of(X)["description_word"]
    assert kept[worded[0]] is None
    assert kept[worded[1]] == words[worded[1]]


def test_online_features_of_api_models_equal_those_of_their_frame(built, history):
    """The service scores validated models without building their frame: same features."""
    from features.intake.columns import RecordColumns
    from features.intake.contract import Declaration
    from features.pipeline.online import online_features

    cutoff = history["declared_at"].max() + pd.Timedelta(seconds=1)
    state = build_entity_state(history, Contract(), PARAMS, cutoff=cutoff, manifest=built.manifest)
    request = history[list(DECLARATION_COLUMNS)].tail(30).reset_index(drop=True)
    request["declared_at"] = cutoff + pd.to_timedelta(np.arange(30), unit="min")
    request.loc[2, "seller_id"] = "NEVER-SEEN"
    request.loc[5, "currency"] = "XXX"  # no exchange rate: empty value features
    records = request.to_dict(orient="records")
    models = [
        Declaration(**{k: (None if pd.isna(v) else v) for k, v in r.items()}) for r in records
    ]
    from_models, from_frame = [], []
    fast = online_features(RecordColumns(models), state, from_models)
    slow = online_features(request, state, from_frame)
    np.testing.assert_array_equal(fast.matrix(), slow.matrix())
    assert from_models == from_frame
    pd.testing.assert_frame_equal(fast.frame(), slow.frame())


def test_request_sized_shortcuts_give_the_general_paths_features(built, history, monkeypatch):
    """Requests of a few rows take dict/loop shortcuts instead of pandas (``hist.is_small``),
    and one declaration's own row is no event of its own queries (``hist.request_events``):
    the features are those of the general path, to the last bit, one declaration or many."""
    import features.pipeline.history as hist
    from features.pipeline.online import online_features

    cutoff = history["declared_at"].max() + pd.Timedelta(seconds=1)
    state = build_entity_state(history, Contract(), PARAMS, cutoff=cutoff, manifest=built.manifest)
    request = history[list(DECLARATION_COLUMNS)].tail(24).reset_index(drop=True)
    request["declared_at"] = cutoff + pd.to_timedelta(np.arange(24) // 3, unit="min")
    request.loc[1, "seller_id"] = "NEVER-SEEN"
    request.loc[2, "consignee_id"] = None  # a pair key with a part missing: unknown entity
    request.loc[3, "platform_id"] = None
    request.loc[4, "description"] = None
    request.loc[5, "origin_country"] = "ZZ"
    request.loc[6, "hs_code"] = "9999999999"  # no chapter the text model knows
    request.loc[7, "description"] = "kratom powder 1kg"  # a watchlist term, if the list has it
    requests = [request.iloc[[i]] for i in range(len(request))] + [request]

    fast = [online_features(r, state).matrix() for r in requests]
    monkeypatch.setattr(hist, "SMALL_INPUT", 0)
    monkeypatch.setattr(
        hist, "request_events", lambda codes, t, w=None: (hist.EventIndex(codes, t, w),)
    )
    general = [online_features(r, state).matrix() for r in requests]
    for i, (a, b) in enumerate(zip(fast, general, strict=True)):
        np.testing.assert_array_equal(a, b, err_msg=f"request {i}")


def test_corrupted_state_is_refused(tmp_path, built, history):
    from features.errors import ParcelriskError

    state = build_entity_state(
        history, Contract(), PARAMS, cutoff=history["declared_at"].max(), manifest=built.manifest
    )
    state.save(tmp_path / "s")
    target = tmp_path / "s" / "global.npz"
    target.write_bytes(target.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ParcelriskError, match="corrupt"):
        EntityState.load(tmp_path / "s")
    with pytest.raises(ParcelriskError, match="not found"):
        EntityState.load(tmp_path / "missing")


def test_mapped_extras_become_features_and_keep_parity(history):
    """Extra columns from a mapping flow through batch and online features alike."""
    from features.intake.contract import ExtraColumn

    rng = np.random.default_rng(3)
    extras = Contract(
        (
            ExtraColumn("broker_id", "entity"),
            ExtraColumn("incoterm", "categorical"),
            ExtraColumn("insured_value", "numeric"),
        )
    )
    data = history.copy()
    data["broker_id"] = rng.choice(["B1", "B2", "B3", None], len(data))
    data["incoterm"] = rng.choice(["DAP", "DDP"], len(data))
    data["insured_value"] = rng.uniform(0, 100, len(data))
    data = coerce_declarations(data, with_outcomes=True, contract=extras)
    built = build_features(data, extras, PARAMS)
    names = built.manifest.names
    assert {"broker_id_n_7d", "broker_id_hit_rate", "cat_incoterm", "extra_insured_value"} <= set(
        names
    )
    # the broker, not its id: "this broker id past inspections hit rate 18%" read as the hit
    # rate of an id (probe 9)
    assert built.manifest.spec("broker_id_n_7d").reason.startswith("this broker lodged")
    assert built.manifest.spec("broker_id_hit_rate").reason.startswith("this broker ")

    cut = pd.Timestamp(data["declared_at"].max()) + pd.Timedelta(seconds=1)
    state = build_entity_state(data, extras, PARAMS, cutoff=cut, manifest=built.manifest)
    request = data[[*DECLARATION_COLUMNS, "broker_id", "incoterm", "insured_value"]].tail(20).copy()
    request["declared_at"] = cut + pd.Timedelta(minutes=5)
    request["declaration_id"] = [f"R{i}" for i in range(len(request))]
    online = compute_online_features(request, state)
    assert np.allclose(online["extra_insured_value"], request["insured_value"])
    categories = {s.name: s.categories for s in built.manifest.features if s.dtype == "category"}
    batch = _batch_features_with(data, request, extras, categories)
    _assert_same(_features(batch, names).loc[online["declaration_id"]], _features(online, names))
    with pytest.raises(Exception, match="broker_id"):
        compute_online_features(request.drop(columns=["broker_id"]), state)


def test_online_warnings_name_unknown_codes_and_never_fail(built, history):
    cutoff = history["declared_at"].max() + pd.Timedelta(seconds=1)
    state = build_entity_state(history, Contract(), PARAMS, cutoff=cutoff, manifest=built.manifest)
    request = history[list(DECLARATION_COLUMNS)].tail(4).copy().reset_index(drop=True)
    request["declared_at"] = cutoff + pd.Timedelta(hours=1)
    request.loc[0, "currency"] = "XYZ"  # no exchange rate
    request.loc[1, "hs_code"] = "999999"  # never declared
    request.loc[2, "origin_country"] = "ZZ"  # unknown category
    request.loc[3, "declared_at"] = cutoff - pd.Timedelta(days=30)  # older than the snapshot
    warnings: list[tuple[int, str]] = []
    frame = compute_online_features(request, state, warnings)
    by_row = {row: [m for r, m, _ in warnings if r == row] for row in range(4)}
    assert np.isnan(frame.loc[0, "value_eur"])  # the rules warn of the rate (features.intake.rules)
    assert any("999999" in m for m in by_row[1])
    assert any("'ZZ'" in m and "unknown to the model" in m for m in by_row[2])
    assert frame.loc[2, "cat_origin_country"] == -1
    assert any("before the entity-state cutoff" in m for m in by_row[3])
    assert len(frame) == 4


def test_model_matrix_is_the_same_whatever_the_column_layout(built) -> None:
    """matrix() reads assemble()'s trailing block directly; any other layout by name."""
    from features.errors import ParcelriskError

    frame, manifest = built.frame.head(300), built.manifest
    fast = manifest.matrix(frame)  # as assembled: features are the trailing columns
    shuffled = frame[list(reversed(frame.columns))]
    np.testing.assert_array_equal(manifest.matrix(shuffled), fast)
    categorical = [j for j, f in enumerate(manifest.features) if f.dtype == "category"]
    raw = frame[manifest.names].to_numpy(dtype=np.float64)[:, categorical]
    assert np.array_equal(np.isnan(fast[:, categorical]), raw < 0)  # unknown codes -> NaN
    with pytest.raises(ParcelriskError, match="lacks manifest columns"):
        manifest.matrix(frame.drop(columns=manifest.names[3]))
    values = {name: frame[name].to_numpy() for name in manifest.names}
    np.testing.assert_array_equal(manifest.matrix_of(values, len(frame)), fast)  # from arrays
    del values[manifest.names[3]]
    with pytest.raises(ParcelriskError, match=f"lack manifest columns: {manifest.names[3]}"):
        manifest.matrix_of(values, len(frame))


# --- real exports: missing identifiers, absent fields, local time, as-of snapshots -------------


def _with_unknown_sellers(history: pd.DataFrame, step: int = 7) -> tuple[pd.DataFrame, pd.Index]:
    df = history.copy()
    df["seller_id"] = df["seller_id"].astype(object)
    gone = df.index[::step]
    df.loc[gone, "seller_id"] = None
    return df, gone


def test_missing_keys_are_unknown_entities_never_one_pooled_entity(history):
    df, gone = _with_unknown_sellers(history)
    built = build_features(df, Contract(), PARAMS)
    frame = built.frame.set_index("declaration_id")
    unknown = frame.loc[df.loc[gone, "declaration_id"]]
    for column in ("seller_n_7d", "seller_n_180d", "seller_n_inspected", "seller_days_since_first"):
        assert unknown[column].isna().all(), column
    assert unknown["seller_x_hs_chapter_n_30d"].isna().all()  # a pair with an unknown part
    # no history means the prior, the same for every unknown entity at the same time
    np.testing.assert_allclose(unknown["seller_hit_rate"], unknown["seller_x_hs_chapter_hit_rate"])
    # known sellers see exactly what they would if the unknown parcels were each a new seller:
    # the missing ids were never counted together, nor with anyone else
    distinct = df.copy()
    distinct.loc[gone, "seller_id"] = [f"NEW-{i}" for i in range(len(gone))]
    other = build_features(distinct, Contract(), PARAMS).frame.set_index("declaration_id")
    known = frame.index.difference(unknown.index)
    seller = [n for n in built.manifest.names if n.startswith("seller_")]
    _assert_same(frame.loc[known, seller], other.loc[known, seller])


def test_online_unknown_keys_match_batch_and_do_not_see_each_other(history, tmp_path):
    df, _ = _with_unknown_sellers(history)
    cutoff = df["declared_at"].max() + pd.Timedelta(seconds=1)
    built = build_features(df, Contract(), PARAMS)
    state = build_entity_state(df, Contract(), PARAMS, cutoff=cutoff, manifest=built.manifest)
    assert None not in set(state.parts["entity_history"].tables["seller_id"].vocabulary)
    request = df[list(DECLARATION_COLUMNS)].tail(3).copy()
    request["declared_at"] = cutoff + pd.Timedelta(hours=1)
    request["declaration_id"] = ["N1", "N2", "N3"]
    request["seller_id"] = [None, None, "S-NEW"]
    online = compute_online_features(request, state)
    assert online.loc[:1, "seller_n_7d"].isna().all()  # two unknowns in one request: not one seller
    assert online.loc[2, "seller_n_7d"] == 0  # a new seller is known, with an empty history


def test_families_without_inputs_are_left_out_of_the_manifest(history):
    df = history.copy()
    for column in ("description", "platform_id", "category"):
        df[column] = pd.Series(None, index=df.index, dtype="str")
    df["quantity"] = pd.Series(pd.NA, index=df.index, dtype="Int64")
    for column in ("ioss_prepaid", "aeo_operator"):
        df[column] = pd.Series(pd.NA, index=df.index, dtype="boolean")
    df["revenue_recovered"] = np.nan
    built = build_features(df, Contract(), PARAMS)
    manifest = built.manifest
    names = set(manifest.names)
    assert "text" not in manifest.groups()
    assert not any(n.startswith("platform_") for n in names)
    assert not names & {"quantity", "value_per_item_eur", "unit_value_ratio_hs6", "cat_category"}
    assert not names & {"ioss_prepaid", "aeo_operator", "platform_missing"}
    assert not any(
        n.endswith(("_revenue_recovered_eur", "_revenue_per_offence_eur")) for n in names
    )
    # what remains works without them: value per kg against HS6 x origin, reference values
    assert {"value_per_kg_ratio_hs6_origin", "reference_value_eur", "seller_hit_rate"} <= names
    assert built.frame["reference_value_eur"].notna().mean() > 0.4  # after the first refit
    assert "description" not in manifest.inputs and "hs_code" in manifest.inputs


def test_calendar_features_are_in_the_administration_local_time(history):

    df = history.head(3000)
    seoul = build_features(df, Contract(), PARAMS.replace(timezone="Asia/Seoul"))
    local = seoul.frame["declared_at"].dt.tz_convert("Asia/Seoul")
    assert (seoul.frame["hour_of_day"] == local.dt.hour).all()
    assert (seoul.frame["day_of_week"] == local.dt.dayofweek).all()


def test_local_time_follows_daylight_saving():
    from features.families.calendar import local_time_us

    stamps = pd.to_datetime(["2026-03-29T00:30Z", "2026-03-29T01:30Z", "2026-10-25T00:30Z"])
    t_us = stamps.as_unit("us").asi8
    local = pd.to_datetime(local_time_us(t_us, "Europe/Paris"), unit="us")
    assert [t.hour for t in local] == [1, 3, 2]  # CET, then CEST; back to CEST's last hour


def test_build_as_of_cuts_declarations_outcomes_and_state(history, tmp_path):
    from features.intake.io import write_declarations
    from features.pipeline.build import build_to_dir

    path = tmp_path / "declarations.parquet"
    write_declarations(history, path)
    as_of = history["declared_at"].quantile(0.6).floor("D")
    summary = build_to_dir(
        declarations_path=path,
        out=tmp_path / "f",
        settings=Settings(),
        as_of=str(as_of),
    )
    frame = pd.read_parquet(tmp_path / "f" / "features.parquet")
    assert frame["declared_at"].max() < as_of
    assert not (frame["inspected_at"] >= as_of).any()  # results recorded later were not known
    assert EntityState.load(tmp_path / "f" / "entity_state").cutoff == as_of
    assert summary["entity_state_cutoff"] == str(as_of)
    # the rows the cut left out are counted, not just gone
    assert summary["declarations_after_as_of"] == (history["declared_at"] >= as_of).sum() > 0
    assert summary["rows"] + summary["declarations_after_as_of"] == len(history)
    assert summary["inputs_unused"] == ["consignee_region"]  # held, read by no feature
    assert summary["inputs_absent"] == []  # no result_known_at: nothing switched off
    source = json.loads((tmp_path / "f" / "source.json").read_text())
    assert source["gate"] == "passed" and source["as_of"] == str(as_of)


def test_build_refuses_a_file_with_faults_unless_told(history, tmp_path):
    from features.intake.io import write_declarations
    from features.intake.validation import GateError
    from features.pipeline.build import build_to_dir

    bad = history.head(2000).copy()
    bad.loc[5, "hs_code"] = "12AB"
    path = tmp_path / "bad.parquet"
    write_declarations(bad, path)
    with pytest.raises(GateError, match=r"(?s)features build refuses it.*'12AB'"):
        build_to_dir(declarations_path=path, out=tmp_path / "f", settings=Settings())
    assert not (tmp_path / "f" / "features.parquet").exists()
    build_to_dir(
        declarations_path=path,
        out=tmp_path / "f",
        settings=Settings(),
        no_validate=True,
    )
    source = json.loads((tmp_path / "f" / "source.json").read_text())
    assert (source["gate"], source["gate_how"]) == ("skipped", "--no-validate")


def test_progress_bars_only_when_asked(history, capsys, monkeypatch):
    from features.pipeline import family

    monkeypatch.setattr(family, "PROGRESS_DELAY_S", 0.0)
    build_features(history.head(2000), Contract(), PARAMS)
    assert capsys.readouterr().err == ""
    build_features(history.head(2000), Contract(), PARAMS, show_progress=True)
    err = capsys.readouterr().err
    assert "entity histories" in err and "valuation" in err and "text" in err


@pytest.mark.parametrize(
    ("quiet", "tty", "shown"), [(False, True, True), (True, True, False), (False, False, False)]
)
def test_progress_shows_on_a_terminal_unless_quiet(monkeypatch, quiet, tty, shown):
    import sys

    from features.cli import _show_progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty, raising=False)
    assert _show_progress(quiet) is shown


def test_features_build_cli_passes_quiet_on(monkeypatch, tmp_path):
    import typer
    from typer.testing import CliRunner

    import features.pipeline.build
    from features.cli import register

    calls = []
    monkeypatch.setattr(
        features.pipeline.build, "build_to_dir", lambda **kw: calls.append(kw) or {}
    )
    app = typer.Typer()
    register(app)
    argv = ["features", "build", "--declarations", str(tmp_path / "d.parquet"), "--quiet"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert calls[0]["show_progress"] is False


@pytest.mark.parametrize("late_us", [1, 1500])  # just after the last declaration; sub-us cutoff
def test_outcomes_known_at_equal_the_outcomes_of_the_cut_history(history, late_us):
    declarations = sort_declarations(history)
    # results of the last days come back after the last declaration: some are cut
    cutoff = declarations["declared_at"].max() + pd.Timedelta(nanoseconds=late_us)
    recorded = declarations.assign(inspected_at=declarations["inspected_at"] + pd.Timedelta(days=3))
    got = outcomes_known_at(recorded, outcome_events(recorded), cutoff)
    expected = outcome_events(sort_declarations(as_known_at(recorded, cutoff)))
    assert 0 < len(got["rows"]) < len(outcome_events(recorded)["rows"])
    assert got.keys() == expected.keys()
    for name, values in expected.items():
        np.testing.assert_array_equal(got[name], values)


def test_outcomes_known_at_refuses_declarations_after_the_cutoff(history):
    declarations = sort_declarations(history)
    cutoff = declarations["declared_at"].iloc[len(declarations) // 2]
    with pytest.raises(ValueError, match="cut them first"):
        outcomes_known_at(declarations, outcome_events(declarations), cutoff)


def test_sort_declarations_keeps_a_sorted_history_and_sorts_any_other(history):
    ordered = sort_declarations(history.sample(frac=1.0, random_state=3))
    pd.testing.assert_frame_equal(sort_declarations(ordered), ordered)
    # same instant, ids in the wrong order: sorted by id
    tied = ordered.head(3).copy()
    tied["declared_at"] = tied["declared_at"].iloc[0]
    tied["declaration_id"] = ["c", "a", "b"]
    assert sort_declarations(tied)["declaration_id"].tolist() == ["a", "b", "c"]
    assert list(sort_declarations(tied.iloc[::-1]).index) == [0, 1, 2]


def test_a_build_that_fails_half_way_leaves_the_previous_output_whole(
    tmp_path, history, monkeypatch
):
    """Written file by file, a build killed or out of disk after features.parquet left it
    beside the previous entity_state/ and source.json, and train took the mix (probe)."""
    import hashlib
    import os

    from features.intake.io import write_declarations
    from features.pipeline import build as build_module
    from features.pipeline.snapshot import EntityState

    def digest(path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    settings = Settings()
    first, second = tmp_path / "first.parquet", tmp_path / "second.parquet"
    write_declarations(history.head(3_000), first)
    write_declarations(history.head(4_000), second)
    out = tmp_path / "feat"
    build_module.build_to_dir(declarations_path=first, out=out, settings=settings)
    (out / ".gitkeep").write_text("")  # what a build does not write stays, every time
    before = {p.relative_to(out): digest(p) for p in out.rglob("*") if p.is_file()}

    def full_disk(self, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(EntityState, "save", full_disk)
    with pytest.raises(OSError, match="No space"):
        build_module.build_to_dir(declarations_path=second, out=out, settings=settings)
    after = {p.relative_to(out): digest(p) for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".feat")] == []
    # a staging directory of a build still running is left alone; a dead one's is removed
    running = tmp_path / f".feat.building-{os.getpid()}-x"
    dead = tmp_path / ".feat.building-999999999-y"
    running.mkdir()
    dead.mkdir()
    monkeypatch.undo()
    summary = build_module.build_to_dir(declarations_path=second, out=out, settings=settings)
    assert summary["rows"] == 4_000 and summary["out"] == str(out)
    assert json.loads((out / "features_summary.json").read_text())["out"] == str(out)
    assert json.loads((out / "source.json").read_text())["declarations"] == str(second)
    assert (out / ".gitkeep").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".feat")] == [running.name]


def test_an_output_that_cannot_be_renamed_gets_the_builds_files_and_keeps_the_others(
    tmp_path, history, monkeypatch
):
    """A mount point (a container's volume) cannot be renamed: its build files are replaced
    in place (moved across file systems), what the build does not write stays."""
    from features.intake.io import write_declarations
    from features.pipeline import build as build_module

    source = tmp_path / "d.parquet"
    write_declarations(history.head(2_000), source)
    out = tmp_path / "feat"
    build_module.build_to_dir(declarations_path=source, out=out, settings=Settings())
    (out / ".gitkeep").write_text("")
    real_rename = build_module.os.rename

    def mount_point(src, dst):
        if str(src) == str(out):
            raise OSError(16, "Device or resource busy")
        return real_rename(src, dst)

    monkeypatch.setattr(build_module.os, "rename", mount_point)
    summary = build_module.build_to_dir(declarations_path=source, out=out, settings=Settings())
    assert summary["rows"] == 2_000 and (out / ".gitkeep").exists()
    assert (out / "features.parquet").exists() and (out / "entity_state").is_dir()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".feat")] == []
