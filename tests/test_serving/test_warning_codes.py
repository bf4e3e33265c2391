"""Every warning of a decision has a stable code beside its text (``warning_codes``, same
order): a clearance system branches on the code, never on English that is reworded between
releases (probe 14 F-08: an ignored misspelt field turned a red parcel yellow, said only in a
sentence). ``lane.*`` codes: the lane was set by policy, not by the risk alone."""

from __future__ import annotations

import dataclasses

from features.intake.rules import Limits, rules_for
from features.notes import CODES, UNCLASSIFIED, is_lane_code
from features.params import FeatureParams, ValidateParams
from serving.decision import STORED_FIELDS
from tests.test_serving.conftest import auth, make_declarations
from tests.test_serving.test_store import _record

RULE_NAMES = {
    rule.name
    for rule in rules_for(
        Limits.from_params(ValidateParams(), FeatureParams()), with_outcomes=False, contract=None
    )
}


def _decide(client, declarations: list[dict]) -> list[dict]:
    r = client.post("/score", json={"declarations": declarations}, headers=auth())
    assert r.status_code == 200, r.text
    return r.json()["decisions"]


def _documented(code: str) -> bool:
    return code in CODES or code in RULE_NAMES


def test_each_warning_has_its_code_in_the_same_order(client) -> None:
    sent = make_declarations(3, seed=61, prefix="CODES")
    sent[0] = {**sent[0], "hsCode": "640399"}  # a camelCase mapping mistake: ignored
    sent[1] = {**sent[1], "currency": "GEL"}  # no exchange rate: not valued, lane raised
    sent[2] = {**sent[2], "declared_value": 1e300}  # above its plausible bound
    decisions = _decide(client, sent)
    for decision in decisions:
        assert len(decision["warning_codes"]) == len(decision["warnings"]), decision
        assert all(_documented(code) for code in decision["warning_codes"]), decision
    ignored, unvalued, implausible = (d["warning_codes"] for d in decisions)
    assert "field.ignored" in ignored
    text = decisions[0]["warnings"][ignored.index("field.ignored")]
    assert "hsCode" in text
    assert "currency.rate" in unvalued and "lane.unvalued_currency" in unvalued
    assert "declared_value.plausible" in implausible and "lane.implausible" in implausible
    assert is_lane_code("lane.implausible") and not is_lane_code("currency.rate")
    # a retry and the stored record carry the same codes
    assert _decide(client, sent) == decisions
    stored = client.get(
        "/decision", params={"decision_id": decisions[1]["decision_id"]}, headers=auth("auditor")
    ).json()
    assert stored["warning_codes"] == unvalued


def test_an_amendment_says_so_by_its_code(client) -> None:
    (sent,) = make_declarations(1, seed=62, prefix="AMENDCODE")
    _decide(client, [sent])
    (amended,) = _decide(client, [{**sent, "declared_value": sent["declared_value"] * 3 + 1}])
    assert "declaration.amended" in amended["warning_codes"]


def test_a_decision_recorded_before_codes_says_unclassified() -> None:
    old = dataclasses.replace(_record(0), warnings=["an old warning", "another"])
    assert old.warning_codes == [] and old.codes_of_warnings == [UNCLASSIFIED, UNCLASSIFIED]
    assert old.api_item()["warning_codes"] == [UNCLASSIFIED, UNCLASSIFIED]
    values = old.stored_values()
    assert values[STORED_FIELDS.index("warning_codes_json")] == ""  # left out of its MAC
    coded = dataclasses.replace(old, warning_codes=["currency.rate", "lane.exploration"])
    back = type(coded).from_stored_values(coded.stored_values())
    assert back.warning_codes == ["currency.rate", "lane.exploration"]


def test_every_code_is_documented() -> None:
    assert all(text for text in CODES.values())
    assert "currency.rate" in RULE_NAMES and "declared_value.plausible" in RULE_NAMES
