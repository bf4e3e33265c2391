"""`mapping draft` drafts a finding written in national codes (NIL, SEIZED, DUTY ADJ,
REFERRED) as ``illicit``: the codes it knows placed as yes or no, the ones it does not named in
a CHECK, whose rows ingest refuses until the person places them. It had left the finding a TODO
for two codes in four (probe 33)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from features.intake.contract import ContractError
from features.intake.draft import draft_mapping
from features.intake.mapping import apply_mapping, parse_mapping_text

N = 300


def _export(codes: list[str], name: str = "RESULT") -> pd.DataFrame:
    """Declarations with the finding in ``name``, filled on the inspected rows alone."""
    rng = np.random.default_rng(61)
    inspected = rng.random(N) < 0.25
    return (
        pd.DataFrame(
            {
                "DECL_NO": [f"{i:08d}" for i in range(N)],
                "LODGED": [f"2026-10-{1 + i % 28:02d} 10:{i % 60:02d}" for i in range(N)],
                "SELLER": [f"S{i % 13:02d}" for i in range(N)],
                "ORIGIN": rng.choice(["CN", "US"], N),
                "HS": rng.choice(["610910", "851712"], N),
                "VALUE": [f"{v:.2f}" for v in rng.uniform(5, 90, N)],
                "CUR": "EUR",
                "KG": [f"{w:.2f}" for w in rng.uniform(0.1, 3, N)],
                name: np.where(inspected, rng.choice(codes, N), ""),
                "RESULT_DATE": np.where(
                    inspected, [f"2026-10-{1 + i % 28:02d}" for i in range(N)], ""
                ),
            }
        )
        .astype("string")
        .replace("", pd.NA)
    )


def _filled(text: str, **columns: object) -> str:
    """The draft with its required TODOs filled as a person would, and ``columns`` over it."""
    mapping = yaml.safe_load(text)
    mapping["columns"] = {
        "channel": {"value": "postal"},
        "arrival_office": {"value": "OFF1"},
        **mapping["columns"],
        **columns,
    }
    return yaml.safe_dump(mapping)


def _line(text: str, field: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"  {field}:"))


def test_national_codes_are_drafted_as_the_finding_with_the_unknown_ones_named() -> None:
    draft = draft_mapping(_export(["NIL", "NIL", "SEIZED", "DUTY ADJ", "REFERRED"]))
    spec = yaml.safe_load(draft.text)["columns"]["illicit"]
    assert spec == {"column": "RESULT", "true_values": ["DUTY ADJ", "SEIZED"],
                    "false_values": ["NIL"]}  # fmt: skip
    line = _line(draft.text, "illicit")
    assert "CHECK: REFERRED: neither a yes- nor a no-word" in line
    assert "illicit" not in draft.missing


def test_an_unplaced_code_is_refused_by_ingest_naming_it() -> None:
    raw = _export(["NIL", "SEIZED", "REFERRED"])
    with pytest.raises(ContractError, match=r"not in true_values .*'REFERRED'"):
        apply_mapping(raw, parse_mapping_text(_filled(draft_mapping(raw).text)))


def test_once_placed_every_inspected_row_reads_its_finding() -> None:
    raw = _export(["NIL", "SEIZED", "DUTY_ADJ", "REFERRED"])
    spec = yaml.safe_load(draft_mapping(raw).text)["columns"]["illicit"]
    assert spec["true_values"] == ["DUTY_ADJ", "SEIZED"]  # underscores read as spaces
    spec["true_values"].append("REFERRED")
    declarations, _ = apply_mapping(
        raw, parse_mapping_text(_filled(draft_mapping(raw).text, illicit=spec))
    )
    found = raw["RESULT"].isin(["SEIZED", "DUTY_ADJ", "REFERRED"]).to_numpy(dtype=bool)
    inspected = raw["RESULT"].notna().to_numpy()
    assert (declarations.loc[inspected, "illicit"].to_numpy(dtype=bool) == found[inspected]).all()


@pytest.mark.parametrize(
    "codes",
    [
        ["A1", "B2", "C3", "NIL"],  # mostly unknown: no reading to offer
        ["SEIZED", "DETAINED", "REFERRED"],  # no code saying nothing was found
    ],
)
def test_codes_too_unknown_to_read_stay_a_todo(codes: list[str]) -> None:
    draft = draft_mapping(_export(codes))
    assert "illicit" not in yaml.safe_load(draft.text)["columns"]
    assert "illicit" in draft.missing


def test_a_column_not_named_as_the_result_is_not_read_for_its_codes() -> None:
    draft = draft_mapping(_export(["NIL", "SEIZED", "REFERRED"], name="REMARK"))
    assert "illicit" not in yaml.safe_load(draft.text)["columns"]
