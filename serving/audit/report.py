"""What an auditor reads and files: decisions as rows, a period's counts and hit rates, the
filed report as CSV or self-contained HTML. Pure (records and results in, frames and text out),
apart from ``read_outcomes``, which reads the results table of the store read-only."""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.errors import ParcelriskError

if TYPE_CHECKING:
    import pandas as pd

    from serving.decision import DecisionRecord

OUTCOME_COLUMNS = ("inspected_at", "illicit", "offence_type", "revenue_recovered", "correction")
_STORED_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # as the store writes answered_at: text order = time


def parse_when(text: str, option: str, *, end_of_day: bool = False) -> str:
    """A ``--from``/``--to`` value (a date or an ISO time; UTC unless it names an offset) as
    the store's time text. A bare date given with ``end_of_day`` means the whole day (the next
    midnight, the bound being exclusive)."""
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ParcelriskError(
            f"{option} {text!r}: not a date or ISO time (e.g. 2026-03-10 or "
            "2026-03-10T08:00:00Z; UTC unless an offset is given)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    is_date = len(value) == 10  # YYYY-MM-DD
    if is_date and end_of_day:
        moment += timedelta(days=1)
    return moment.astimezone(UTC).strftime(_STORED_TIME)


def read_outcomes(store: Any, declaration_ids: Sequence[str]) -> pd.DataFrame:
    """The current inspection result of these declarations (the store's ``outcomes`` table:
    the last stored, a correction replacing the one before, with its ``correction``; a SQLite
    file is opened read-only: an auditor's read must never create or change anything), one
    row per declaration id that has one. ``store``: a decision store or the path of a SQLite
    one."""
    import pandas as pd

    empty = pd.DataFrame(columns=["declaration_id", *OUTCOME_COLUMNS])
    ids = list(dict.fromkeys(declaration_ids))
    if not ids:
        return empty
    path = getattr(store, "path", store)
    if not isinstance(path, str | Path):  # PostgreSQL: the results beside its decisions
        from serving.decision import iso_utc
        from serving.postgres_store import read_results

        found = read_results(store.engine, ids)
        frame = pd.DataFrame(
            [
                (i, r.inspected_at_us, r.illicit, r.offence_type, r.revenue_recovered, r.correction)
                for i, r in found.items()
            ],
            columns=["declaration_id", *OUTCOME_COLUMNS],
        )
        frame["inspected_at"] = [iso_utc(int(t)) for t in frame["inspected_at"]]
        frame["illicit"] = frame["illicit"].astype(bool)
        return frame
    from serving.sqlite_store import connect_read_only

    # as every review read: the file never written, a copy on write-once media read whole
    # (its own ``mode=ro`` open failed there for want of the WAL index: probe 27)
    conn = connect_read_only(Path(path), table=None)
    try:
        has = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outcomes'"
        ).fetchone()
        if has is None:
            return empty
        columns = {row[1] for row in conn.execute("PRAGMA table_info(outcomes)")}
        correction = "correction" if "correction" in columns else "NULL"  # an older store
        rows = []
        for start in range(0, len(ids), 500):  # within SQLite's parameter limit
            part = ids[start : start + 500]
            rows += conn.execute(
                "SELECT declaration_id, inspected_at, illicit, offence_type, revenue_recovered, "
                f"{correction} FROM outcomes WHERE declaration_id IN "
                f"({','.join('?' * len(part))}) ORDER BY seq",
                part,
            ).fetchall()
    finally:
        conn.close()
    frame = pd.DataFrame(rows, columns=["declaration_id", *OUTCOME_COLUMNS])
    # in seq order: the last row of a declaration is its current result
    frame = frame.drop_duplicates("declaration_id", keep="last").reset_index(drop=True)
    frame["illicit"] = frame["illicit"].astype(bool)
    return frame


def read_result_history(store: Any, declaration_id: str) -> list[dict[str, Any]]:
    """Every inspection result stored for one declaration, first to current (who stored each,
    when, and why a correction replaced the one before), read-only. ``store``: a decision
    store (its results beside it)."""
    from serving.store import open_outcome_store

    results = open_outcome_store(store.source, store, read_only=True)
    try:
        return results.result_history(declaration_id)
    finally:
        results.close()


def decision_rows(records: Sequence[DecisionRecord], outcomes: pd.DataFrame) -> pd.DataFrame:
    """One row per decision (seq order as given) with its inspection result where one exists:
    ``outcome`` reads 'illicit', 'clean' or '' (not inspected, or not reported yet)."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame(
        {
            "seq": [r.seq for r in records],
            "decision_id": [r.decision_id for r in records],
            "declaration_id": [r.declaration_id for r in records],
            "answered_at": [r.answered_at for r in records],
            "lane": [r.lane for r in records],
            "risk": np.array([r.risk for r in records], dtype=np.float64),
            "expected_revenue": np.array([r.expected_revenue for r in records], dtype=np.float64),
            "model_version": [f"{r.model_name} v{r.model_version}" for r in records],
            "exploration": np.array([r.exploration for r in records], dtype=bool),
            "top_reasons": ["; ".join(x["text"] for x in r.reasons[:3]) for r in records],
            # what an inspector selects by (probe 30: "all decisions of seller S", "which
            # thresholds were live at T" needed one `show` per decision)
            "declared_at": [r.declaration.get("declared_at") for r in records],
            "seller_id": [r.declaration.get("seller_id") for r in records],
            "consignee_id": [r.declaration.get("consignee_id") for r in records],
            "thresholds_version": [r.thresholds_version for r in records],
        }
    )
    outcomes = outcomes.astype({"declaration_id": object})  # an empty frame's ids are float
    merged = frame.astype({"declaration_id": object}).merge(
        outcomes, on="declaration_id", how="left"
    )
    illicit = merged["illicit"]
    merged["outcome"] = np.where(
        illicit.isna(), "", np.where(illicit.fillna(False).astype(bool), "illicit", "clean")
    )
    return merged


def _text_columns(rows: pd.DataFrame) -> list[str]:
    """The columns that may hold text: object and string dtypes (pandas 3 reads text as
    ``str``), never the numeric and boolean ones."""
    from pandas.api.types import is_object_dtype, is_string_dtype

    return [c for c in rows.columns if is_object_dtype(rows[c]) or is_string_dtype(rows[c])]


def rows_csv(rows: pd.DataFrame, header: bool = True) -> str:
    """``rows`` as CSV a spreadsheet opens as data: a text cell that starts like a formula
    (a declaration's text is the declarant's) is prefixed with ``'``; numbers are left as
    they are."""
    from serving.audit.safe_text import csv_cell

    text_columns = _text_columns(rows)
    safe = rows.assign(**{c: rows[c].map(csv_cell) for c in text_columns})
    return safe.to_csv(index=False, header=header)


def terminal_table(rows: pd.DataFrame) -> str:
    """``rows`` as a text table for a terminal, every text cell ``terminal_safe`` (one cell
    cannot start a line of its own or move the cursor), floats to 4 decimals."""
    from serving.audit.safe_text import terminal_safe

    def cell(value: Any) -> Any:
        return terminal_safe(value) if isinstance(value, str) else value

    text_columns = _text_columns(rows)
    safe = rows.assign(**{c: rows[c].map(cell) for c in text_columns})
    return safe.to_string(index=False, float_format=lambda v: f"{v:.4f}")


def tally(rows: pd.DataFrame) -> pd.DataFrame:
    """How many decisions of ``rows`` have each (model version, lane, outcome): all a period's
    summary needs, so an export can add up pages and hold none of them."""
    import pandas as pd

    keys = ["model_version", "lane", "outcome"]
    if rows.empty:
        return pd.DataFrame({**{k: pd.Series(dtype=object) for k in keys}, "n": []})
    return rows.groupby(keys, dropna=False).size().rename("n").reset_index()


def period_summary(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Counts by lane and model version, and hit rates (illicit share among the inspected,
    where results exist) by lane and by model version."""
    return summary_of_tally(tally(rows))


def summary_of_tally(counted: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``period_summary`` from ``tally`` (or the sum of the tallies of a period's pages)."""
    import pandas as pd

    counted = counted.groupby(["model_version", "lane", "outcome"], as_index=False)["n"].sum()
    if counted.empty:
        counts = pd.DataFrame(columns=["model_version", "all"])
    else:
        counts = pd.crosstab(
            counted["model_version"],
            counted["lane"],
            values=counted["n"],
            aggfunc="sum",
            margins=True,
            margins_name="all",
        )
        counts = counts.fillna(0).astype("int64")
        counts = counts.reindex(
            columns=[c for c in ("red", "yellow", "green", "all") if c in counts]
        ).reset_index()
    inspected = counted[counted["outcome"] != ""]

    def hit_rates(by: str) -> pd.DataFrame:
        if inspected.empty:
            return pd.DataFrame(columns=[by, "inspected", "illicit", "hit_rate"])
        illicit = inspected["n"].where(inspected["outcome"] == "illicit", 0)
        out = pd.DataFrame(
            {
                "inspected": inspected.groupby(by)["n"].sum(),
                "illicit": illicit.groupby(inspected[by]).sum(),
            }
        )
        out["hit_rate"] = out["illicit"] / out["inspected"]
        return out.reset_index()

    return {
        "counts": counts,
        "hit_rate_by_lane": hit_rates("lane"),
        "hit_rate_by_model": hit_rates("model_version"),
    }


_HTML_HEAD = (
    "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
    "<title>parcelrisk audit report</title><style>"
    "body{font-family:sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin-bottom:1.5em;font-size:13px}"
    "th,td{border:1px solid #bbb;padding:3px 6px;text-align:left;vertical-align:top}"
    "th{background:#eee}.red{color:#b00}.yellow{color:#a60}.green{color:#070}"
    "</style></head><body><h1>parcelrisk audit report</h1>"
)


def report_html(
    header: dict[str, Any], summary: dict[str, pd.DataFrame], rows: pd.DataFrame
) -> str:
    """The filed report as one self-contained HTML page (inline CSS, no script, nothing
    fetched). Every value is escaped: declarations and reasons are untrusted text."""
    decisions = table_rows(rows) if not rows.empty else ""
    return "".join(
        report_html_parts(header, summary, len(rows), list(rows.columns), iter([decisions]))
    )


def report_html_parts(
    header: dict[str, Any],
    summary: dict[str, pd.DataFrame],
    n_rows: int,
    columns: list[str],
    decision_rows_html: Iterator[str],
) -> Iterator[str]:
    """``report_html`` in pieces, the decisions' table rows taken from an iterator (written
    page by page elsewhere), so no piece holds the whole period."""
    esc = html.escape
    yield _HTML_HEAD
    yield (
        "<table>"
        + "".join(
            f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in header.items()
        )
        + "</table>"
    )
    sections = [
        ("Decisions by model version and lane", summary["counts"]),
        ("Hit rate by lane (illicit share among inspected)", summary["hit_rate_by_lane"]),
        ("Hit rate by model version", summary["hit_rate_by_model"]),
    ]
    for title, frame in sections:
        yield f"<h2>{esc(title)}</h2>{_table(frame)}"
    yield f"<h2>{esc(f'Decisions ({n_rows})')}</h2>"
    if not n_rows:
        yield "<p>none</p>"
    else:
        yield f"<table>{table_head(columns)}"
        yield from decision_rows_html
        yield "</table>"
    yield "</body></html>\n"


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p>none</p>"
    return f"<table>{table_head(list(frame.columns))}{table_rows(frame)}</table>"


def table_head(columns: list[str]) -> str:
    esc = html.escape
    return "<tr>" + "".join(f"<th>{esc(str(c))}</th>" for c in columns) + "</tr>"


def table_rows(frame: pd.DataFrame) -> str:
    """``frame``'s rows as escaped HTML table rows (the lane cell coloured)."""
    esc = html.escape
    lane_at = list(frame.columns).index("lane") if "lane" in frame.columns else -1
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for j, value in enumerate(row):
            text = "" if value is None or value != value else _cell(value)  # NaN -> ''
            css = (
                f" class='{esc(text)}'"
                if j == lane_at and text in ("red", "yellow", "green")
                else ""
            )
            cells.append(f"<td{css}>{esc(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return "".join(body)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
