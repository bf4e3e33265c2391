"""The validation report: one self-contained HTML page, readable on a closed network.

Great Expectations' Data Docs pull stylesheets, scripts and a logo from public CDNs, so on a
customs network without internet they render as a bare list and every opening calls outside.
This page carries its own small stylesheet and no scripts, links or images: it reads the same
offline, in any browser, and can be attached to a ticket as one file.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np

from features.intake.contract import FIELDS_BY_NAME

if TYPE_CHECKING:
    import pandas as pd

    from features.intake.rules import Finding
    from features.intake.validation import GateResult

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;background:#f5f6f8}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#5b6472;font-size:13px}
.verdict{padding:12px 16px;border-radius:6px;font-weight:600;margin:16px 0}
.ok{background:#e3f4e8;color:#145c2b}.bad{background:#fbe4e4;color:#8a1c1c}.warn{background:#fff4d6;color:#6b4e00}
table{border-collapse:collapse;width:100%;background:#fff;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #dde1e7;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.tag{display:inline-block;padding:1px 6px;border-radius:3px;font-size:12px;font-weight:600}
.fault{background:#fbe4e4;color:#8a1c1c}.warning{background:#fff4d6;color:#6b4e00}
details{margin:2px 0}summary{cursor:pointer;color:#2b4a7a}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
footer{color:#5b6472;font-size:12px;margin-top:32px}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _rule_rows(result: GateResult, findings: list[Finding]) -> str:
    rows = []
    # a sampled cross-check counted other rows than these: its counts are in its own section
    gx = (result.cross_check or {}).get("counts", {}) if result.sampled_rows is None else {}
    for finding in findings:
        rule = finding.rule
        examples = "".join(
            f"<tr><td class=num>{ex['row']}</td><td>{_e(ex['declaration_id'])}</td>"
            f"<td>{_e(ex['message'])}</td></tr>"
            for ex in result.examples(finding)
        )
        share = finding.count / result.rows if result.rows else 0.0
        gx_cell = _e(gx.get(rule.name, ""))
        rows.append(
            f"<tr><td><span class='tag {rule.severity}'>{rule.severity}</span></td>"
            f"<td><code>{_e(rule.field)}</code></td><td>{_e(rule.requires)}</td>"
            f"<td class=num>{finding.count:,}</td><td class=num>{share:.2%}</td>"
            f"<td class=num>{gx_cell}</td>"
            f"<td><details><summary>{min(finding.count, len(result.examples(finding)))} "
            f"example(s)</summary><table><tr><th>row</th><th>declaration_id</th><th>message</th>"
            f"</tr>{examples}</table></details><code>{_e(rule.name)}</code></td></tr>"
        )
    if not rows:
        return "<p>None.</p>"
    return (
        "<table><tr><th>severity</th><th>field</th><th>requires</th><th>rows</th><th>share</th>"
        "<th>GX rows</th><th>examples / rule</th></tr>" + "".join(rows) + "</table>"
    )


def _profile(canonical: pd.DataFrame | None) -> str:
    """Per column: nulls, distinct values, range: what a data engineer checks first."""
    if canonical is None or canonical.empty:
        return "<p>No rows.</p>"
    import pandas as pd

    rows = []
    for name in canonical.columns:
        s = canonical[name]
        nulls = float(s.isna().mean())
        kind = FIELDS_BY_NAME[name].kind if name in FIELDS_BY_NAME else "extra"
        low = high = ""
        if isinstance(s.dtype, pd.DatetimeTZDtype) and s.notna().any():
            low, high = s.min().isoformat(), s.max().isoformat()
        elif pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            values = s.to_numpy(dtype=np.float64, na_value=np.nan)
            values = values[np.isfinite(values)]
            if len(values):
                low, high = f"{values.min():,.4g}", f"{values.max():,.4g}"
        distinct = int(s.nunique(dropna=True))
        rows.append(
            f"<tr><td><code>{_e(name)}</code></td><td>{_e(kind)}</td>"
            f"<td class=num>{nulls:.1%}</td><td class=num>{distinct:,}</td>"
            f"<td>{_e(low)}</td><td>{_e(high)}</td></tr>"
        )
    return (
        "<table><tr><th>column</th><th>type</th><th>null</th><th>distinct</th><th>min</th>"
        "<th>max</th></tr>" + "".join(rows) + "</table>"
    )


def render_report(result: GateResult, canonical: pd.DataFrame | None) -> str:
    """The whole page as text (UTF-8)."""
    faults, warnings = result.findings.faults, result.findings.warnings
    if result.success:
        verdict_class = "warn" if warnings else "ok"
        verdict = (
            f"PASSED with {len(warnings)} warning(s): the data is used as it is"
            if warnings
            else "PASSED: no faults, no warnings"
        )
    else:
        verdict_class = "bad"
        verdict = f"FAILED: {result.fault_count} fault(s); the file cannot enter the pipeline"
    structural = []
    if result.rows == 0:
        structural.append("<li>the file has no rows</li>")
    structural += [
        f"<li><code>{_e(c)}</code>: required column is missing</li>" for c in result.missing_columns
    ]
    sampled = (
        f"<p class='meta'>On the first {result.sampled_rows:,} rows of {result.rows:,}: the "
        "file is checked in chunks, the faults and warnings above cover every row.</p>"
        if result.sampled_rows is not None
        else ""
    )
    cross = result.cross_check
    if cross is None:
        cross_html = "<p>Not run.</p>"
    elif cross.get("error"):
        cross_html = (
            f"<p class='verdict bad'>Great Expectations did not run: {_e(cross['error'])}</p>"
        )
    elif cross.get("disagreements"):
        items = "".join(
            f"<li><code>{_e(d['rule'])}</code>: gate {d['parcelrisk']}, "
            f"Great Expectations {d['great_expectations']}</li>"
            for d in cross["disagreements"]
        )
        cross_html = (
            f"<p class='verdict bad'>Disagreements (a bug in one of the two):</p><ul>{items}</ul>"
        )
    else:
        cross_html = (
            f"<p>Great Expectations ran the same rules as {cross.get('compared', 0)} built-in "
            "expectations and agrees on every count. Its suite and result are in "
            "<code>great_expectations/</code> beside this page.</p>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>parcelrisk validation: {_e(result.source or "declarations")}</title>
<style>{_STYLE}</style></head>
<body><main>
<h1>Validation report</h1>
<div class="meta">file <code>{_e(result.source)}</code> &middot; sha256 <code>{_e((result.fingerprint or "")[:16])}</code>
&middot; {result.rows:,} rows &middot; {"history (with outcomes)" if result.with_outcomes else "declarations to score"}
&middot; {result.rules_checked} rules</div>
<div class="verdict {verdict_class}">{_e(verdict)}</div>
{"<h2>File faults</h2><ul>" + "".join(structural) + "</ul>" if structural else ""}
<h2>Faults ({len(faults)})</h2>
<p class="meta">Impossible values: the file is refused until they are fixed in the data or the mapping.</p>
{_rule_rows(result, faults)}
<h2>Warnings ({len(warnings)})</h2>
<p class="meta">Possible but unusual values (limits in params.yaml <code>validate</code>, in the base currency): counted, the data is kept.</p>
{_rule_rows(result, warnings)}
<h2>Columns</h2>
{sampled}{_profile(canonical)}
<h2>Cross-check</h2>
{sampled}{cross_html}
<footer>Generated by parcelrisk. This page is self-contained: it loads nothing from the network.</footer>
</main></body></html>
"""
