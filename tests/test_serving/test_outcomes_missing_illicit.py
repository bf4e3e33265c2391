"""A result with a missing or unreadable field, for a declaration that already has a stored
result: refused as a first result is (400 naming the field), never a 500 from the comparison."""

from __future__ import annotations

import pandas as pd
import pytest

from serving.outcomes import OutcomesRefused, results_of
from tests.test_serving import test_outcomes, test_outcomes_service
from tests.test_serving.test_outcomes import post, result
from tests.test_serving.test_outcomes_service import _post, _result, _scored_ids

# Their fixtures, shared rather than copied: both kinds of store, the in-process service.
store = test_outcomes.store
client = test_outcomes_service.client


def _refusal(store, declaration_id: str | None, changes: dict) -> OutcomesRefused:
    with pytest.raises(OutcomesRefused) as refused:
        post(store, result(declaration_id, **changes))
    return refused.value


@pytest.mark.parametrize(
    "changes",
    [
        {"illicit": None},
        {"illicit": "maybe"},
        {"inspected_at": None},
        {"inspected_at": "not a time"},
        {"illicit": None, "inspected_at": None, "offence_type": None, "revenue_recovered": None},
    ],
    ids=[
        "illicit-null",
        "illicit-unreadable",
        "inspected-null",
        "inspected-unreadable",
        "all-null",
    ],
)
def test_a_missing_field_over_a_stored_result_is_refused_as_a_first_result(store, changes) -> None:
    post(store, result("D1"))  # D1 has a stored result, D2 none
    over_stored = _refusal(store, "D1", changes)
    first = _refusal(store, "D2", changes)
    assert [(p.field, p.rule) for p in over_stored.problems] == [
        (p.field, p.rule) for p in first.problems
    ]
    assert {p.declaration_id for p in over_stored.problems} == {"D1"}
    assert "result.conflict" not in {p.rule for p in over_stored.problems}
    assert store.count() == 1


def test_an_absent_illicit_beside_a_good_row_is_refused_over_a_stored_result(store) -> None:
    post(store, result("D1"))
    absent = {k: v for k, v in result("D1").items() if k != "illicit"}
    with pytest.raises(OutcomesRefused) as refused:
        post(store, result("D2"), absent)  # the frame holds NaN in D1's illicit cell
    assert [(p.row, p.declaration_id, p.field) for p in refused.value.problems] == [
        (1, "D1", "illicit")
    ]
    assert store.count() == 1


def test_a_valid_change_over_a_stored_result_is_still_a_conflict(store) -> None:
    post(store, result("D1"))
    (problem,) = _refusal(store, "D1", {"offence_type": None}).problems
    assert (problem.field, problem.rule) == ("offence_type", "result.conflict")


def test_a_row_without_an_id_names_no_nan(store) -> None:
    refused = _refusal(store, None, {"illicit": False, "offence_type": None})
    assert {p.declaration_id for p in refused.problems} == {None}
    assert "nan" not in str(refused)


@pytest.mark.parametrize("field", ["illicit", "inspected_at"])
def test_results_of_refuses_a_result_missing_a_required_field(field) -> None:
    unchecked = pd.DataFrame([result("D1", **{field: None})], dtype="object")
    with pytest.raises(ValueError, match=field):
        results_of(unchecked)


@pytest.mark.parametrize("illicit", ["absent", None], ids=["absent", "null"])
def test_post_outcomes_without_illicit_over_a_stored_result_answers_400(client, illicit) -> None:
    stored, fresh = _scored_ids(client, 2, seed=71 if illicit is None else 72)
    assert _post(client, [_result(stored)]).json() == {"stored": 1, "unchanged": 0}
    answers = {}
    for declaration_id in (stored, fresh):
        sent = _result(declaration_id, illicit=illicit)
        if illicit == "absent":
            del sent["illicit"]
        r = _post(client, [sent])
        assert r.status_code == 400, r.text
        body = r.json()
        assert declaration_id in body["error"]
        answers[declaration_id] = [
            (p["loc"], p["declaration_id"] == declaration_id, p["rule"]) for p in body["problems"]
        ]
    assert (
        answers[stored]
        == answers[fresh]
        == [(["outcomes", 0, "illicit"], True, "illicit.when_inspected")]
    )
