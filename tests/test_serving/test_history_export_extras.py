"""history export carries the model's mapped extras: the stored declarations hold them, and a
history without them would train the next model without the broker or office history, without
a word. Without the contract that names them (kinds), the export is refused, naming them."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd

from features.intake.contract import Contract, ExtraColumn, coerce_declarations
from features.intake.io import read_contract, read_declarations, write_declarations
from serving.outcomes import store_outcomes
from serving.store import open_outcome_store, open_store
from tests.test_serving.conftest import make_declarations, run_cli
from tests.test_serving.test_store import _record

CONTRACT = Contract((ExtraColumn("forwarder_id", "entity"), ExtraColumn("incoterm", "categorical")))


def _store_with_extras(tmp_path) -> str:
    location = str(tmp_path / "audit.db")
    store = open_store(location)
    records = []
    for i, declaration in enumerate(make_declarations(4, seed=3, prefix="EXT")):
        declaration.update(forwarder_id=f"F{i % 2}", incoterm="DAP")
        text = json.dumps(declaration)
        records.append(dataclasses.replace(_record(i), declaration_json=text, declaration_id=declaration["declaration_id"]))  # fmt: skip
    store.record(records)
    store.close()
    results = pd.DataFrame(
        [{"declaration_id": "EXT3-0", "inspected_at": "2026-05-02T09:00:00Z", "illicit": False}]
    )
    outcomes = open_outcome_store(location)
    store_outcomes(outcomes, results, source="t", now=pd.Timestamp("2026-06-01", tz="UTC"))
    outcomes.close()
    return location


def test_without_the_contract_the_export_names_the_extras_it_would_drop(tmp_path, capsys):
    location = _store_with_extras(tmp_path)
    out = tmp_path / "h.parquet"
    code, _, err = run_cli(capsys, "history", "export", "--db", location, "--out", str(out))
    assert code == 2 and "forwarder_id, incoterm" in err and "--contract-from" in err
    assert not out.exists()


def test_with_the_contract_the_history_carries_them(tmp_path, capsys):
    location = _store_with_extras(tmp_path)
    ingested = tmp_path / "declarations.parquet"  # what ingest wrote, with its contract
    frame = pd.DataFrame(make_declarations(1, seed=4)).assign(forwarder_id="F9", incoterm="DDP")
    write_declarations(coerce_declarations(frame, with_outcomes=False, contract=CONTRACT), ingested, CONTRACT)  # fmt: skip
    out = tmp_path / "h.parquet"
    args = ("history", "export", "--db", location, "--out", str(out), "--contract-from", str(ingested))  # fmt: skip
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    assert read_contract(out) == CONTRACT
    history, _ = read_declarations(out, with_outcomes=True)
    assert history["forwarder_id"].tolist() == ["F0", "F1", "F0", "F1"]
    assert set(history["incoterm"]) == {"DAP"} and history["inspected"].sum() == 1
