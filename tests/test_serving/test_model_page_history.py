"""The auditors' model page shows every gate decision about a version (``promotions/*.json``
on its run), escaped, and says so when the registry could not give them."""

from __future__ import annotations

from serving.auditor.model_evidence import ModelEvidence
from serving.auditor.templates import render


def _page(history) -> str:
    evidence = ModelEvidence(
        name="parcel-risk",
        version="2",
        run_id="r1",
        run_link=None,
        tags={"promotion.outcome": "replaced"},
        history=history,
    )
    return render(
        "model",
        m=evidence,
        signed_in=True,
        champion=None,
        is_champion=False,
        tracking_uri="",
        shap_bars="",
        calibration="",
        disparity=[],
        tolerance=0.1,
        min_results=30,
    )


def test_every_decision_is_listed_in_order_and_escaped() -> None:
    html = _page(
        [
            {"at": "2026-12-01T10:00:00+00:00", "outcome": "forced", "by": "ana",
             "champion_before": "1", "force_reason": "<script>x</script>"},
            {"at": "2026-12-02T10:00:00+00:00", "outcome": "replaced", "replaced_by": "1"},
        ]
    )  # fmt: skip
    table = html[html.index('id="promotion-history"') :]
    table = table[table.index("<tbody>") :]
    assert table.index("forced") < table.index("replaced")
    assert "&lt;script&gt;x&lt;/script&gt;" in table and "<script>x" not in html


def test_a_history_the_registry_did_not_give_is_said() -> None:
    assert "promotion history could not be read" in _page(None)
    assert 'id="promotion-history"' not in _page([])
