"""Only the extras a model reads are asked of the declarations it scores (probe 33 MEDIUM-2:
an inspection flag kept as an extra, its feature dropped in training as constant on the
inspected parcels, was still required of every declaration, before any inspection)."""

from __future__ import annotations

import pandas as pd
import pytest

from features.errors import ParcelriskError
from features.intake.contract import DECLARATION_COLUMNS, Contract, ExtraColumn

CONTRACT = Contract(
    (
        ExtraColumn("broker_id", "entity"),
        ExtraColumn("ctrl", "categorical"),
        ExtraColumn("total_taxes", "numeric", amount=True),
    )
)


def test_the_features_reading_each_extra_are_those_built_from_it() -> None:
    from features.families import build_manifest, features_reading
    from features.params import FeatureParams
    from features.pipeline.family import SpecContext

    ctx = SpecContext(FeatureParams(), CONTRACT, None, {"cat_ctrl": ("N", "Y")})
    assert features_reading(ctx, "ctrl") == {"cat_ctrl"}
    assert features_reading(ctx, "total_taxes") == {
        "extra_total_taxes", "extra_total_taxes_share_of_value"
    }  # fmt: skip
    broker = features_reading(ctx, "broker_id")
    assert broker and all("broker_id" in name for name in broker)
    # disjoint, and each in the manifest
    names = set(build_manifest(ctx).names)
    assert broker <= names and not broker & features_reading(ctx, "ctrl")
    # a contract field is read by its features too (the seller's history)
    assert any(name.startswith("seller") for name in features_reading(ctx, "seller_id"))


def _history() -> pd.DataFrame:
    from features.intake.contract import coerce_declarations
    from tests.test_features.family_frames import T0, declarations

    frame = declarations(
        *({"declared_at": T0 + pd.Timedelta(hours=i), "declared_value": 10.0 + i} for i in range(6))
    )
    frame["broker_id"] = ["B1", "B2", "B1", "B2", "B1", "B2"]
    frame["ctrl"] = ["Y", "N", "Y", "N", "Y", "N"]
    frame["total_taxes"] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    return coerce_declarations(frame, with_outcomes=True, contract=CONTRACT)


def test_a_model_that_does_not_read_an_extra_scores_declarations_without_it(tmp_path) -> None:
    from features.params import FeatureParams
    from features.pipeline.build import build_features
    from features.pipeline.online import compute_online_features
    from features.pipeline.snapshot import EntityState, build_entity_state
    from tests.test_features.family_frames import T0

    history = _history()
    built = build_features(history, CONTRACT, FeatureParams())
    assert "cat_ctrl" in built.manifest.names
    state = build_entity_state(
        history.iloc[:3], CONTRACT, FeatureParams(), cutoff=T0, manifest=built.manifest
    )
    state.save(tmp_path / "state")
    arriving = history.iloc[3:][[*DECLARATION_COLUMNS, "broker_id", "total_taxes"]]

    # tied to no model: every extra is asked for, as before
    state = EntityState.load(tmp_path / "state")
    with pytest.raises(
        ParcelriskError, match=r"lack the mapped extra field\(s\) the model uses: ctrl"
    ):
        compute_online_features(arriving, state)
    # a model that dropped cat_ctrl (constant on its inspected parcels) does not ask for it
    model_features = [n for n in built.manifest.names if n != "cat_ctrl"]
    state.extras_read = state.read_by(model_features)
    assert state.extras_read == ("broker_id", "total_taxes")
    online = compute_online_features(arriving, state)
    assert len(online) == 3 and (online["cat_ctrl"] == -1).all()  # unknown
    # the same features as with the column sent, for everything the model reads
    sent = compute_online_features(history.iloc[3:][[*DECLARATION_COLUMNS, "broker_id", "ctrl",
                                                     "total_taxes"]], state)  # fmt: skip
    pd.testing.assert_frame_equal(online[model_features], sent[model_features])
    # one it reads, left out, is still refused, naming it alone
    with pytest.raises(ParcelriskError, match=r"the model uses: total_taxes \("):
        compute_online_features(arriving.drop(columns="total_taxes"), state)


def test_a_snapshot_keeps_the_fields_its_history_folded(tmp_path) -> None:
    """The service folds a request's seller as the history was read (probe 35): the fields
    come from the entity state it loads."""
    import dataclasses

    from features.params import FeatureParams
    from features.pipeline.build import build_features
    from features.pipeline.snapshot import EntityState, build_entity_state
    from tests.test_features.family_frames import T0

    contract = dataclasses.replace(CONTRACT, folded=("seller_id",))
    history = _history()
    built = build_features(history, contract, FeatureParams())
    state = build_entity_state(
        history, contract, FeatureParams(), cutoff=T0, manifest=built.manifest
    )
    state.save(tmp_path / "state")
    assert EntityState.load(tmp_path / "state").contract.folded == ("seller_id",)
    # a history without folded fields writes its snapshot as before
    plain = build_entity_state(
        history, CONTRACT, FeatureParams(), cutoff=T0, manifest=built.manifest
    )
    plain.save(tmp_path / "plain")
    assert "folded" not in (tmp_path / "plain" / "meta.json").read_text()
