"""The monitor's HTML report: one self-contained page (figures inline as base64 PNG, no scripts,
no CDN), the alerts first. Every text from the store or the model is escaped."""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from features.params import MonitorParams
    from models.reference import ValueReference


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="" src="data:image/png;base64,{data}">'


def _figure(width: float = 7.0, height: float = 3.2) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # no display, whatever the environment says
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def psi_chart(features: list[dict[str, Any]], top: int, threshold: float) -> str:
    """The features nearest their alert, each against its own bound: a feature that trends with
    time (an entity's age) has a high PSI by construction and a bound to match, so ranking by
    PSI alone would fill the chart with features that alert nothing."""

    def closeness(r: dict[str, Any]) -> float:
        return r["psi"] / (r.get("alert_above") or threshold)

    rows = sorted(features, key=closeness, reverse=True)[:top][::-1]
    fig, ax = _figure(7.0, 0.3 * len(rows) + 1.2)
    names = [r["name"] for r in rows]
    colours = ["#c0392b" if closeness(r) > 1 else "#4a78b0" for r in rows]
    ax.barh(names, [r["psi"] for r in rows], color=colours)
    ax.scatter(
        [r.get("alert_above") or threshold for r in rows],
        names,
        marker="|",
        s=200,
        color="black",
        label="its alert bound",
    )
    ax.set_xlabel("PSI against the training reference (red: above its bound)")
    ax.legend(loc="lower right")
    return _png(fig)


# Points of the live scores' CDF drawn at most: a figure ~600 pixels wide shows no more, and
# a 30M-decision period sorted every score (a 240 MB copy) and drew a step per decision.
_CDF_POINTS = 2048


def live_cdf(live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The live scores' empirical CDF as (x, share at or below x), for a step plot
    (``where="post"``): every score when there are at most ``_CDF_POINTS``, else at the edges
    of ``_CDF_POINTS`` equal bins from the lowest score to the highest, counted in one pass
    without a copy (each step then lies less than a bin, a fraction of a pixel, right of the
    scores it counts). Deterministic: the same scores draw the same chart. Missing (and
    infinite) scores are not counted."""
    live = np.asarray(live, dtype=float)
    counted = np.isfinite(live)
    n = int(counted.sum())
    if n <= _CDF_POINTS:
        x = np.sort(live[counted])
        return x, np.arange(1, n + 1) / max(n, 1)
    low = float(np.min(live, where=counted, initial=np.inf))
    high = float(np.max(live, where=counted, initial=-np.inf))
    if low == high:  # one value: np.histogram would widen the axis to +/-0.5 around it
        return np.array([low]), np.array([1.0])
    # np.histogram leaves out what lies outside its range: the missing and the infinite
    counts, edges = np.histogram(live, bins=_CDF_POINTS, range=(low, high))
    return edges[1:], np.cumsum(counts) / n


def score_chart(reference: ValueReference, live: np.ndarray | list[float]) -> str:
    """Live risk against the reference CDF (from its percentiles)."""
    fig, ax = _figure()
    p = np.asarray(reference.percentiles)
    ax.plot(p, np.linspace(0, 1, len(p)), label="training reference", color="#555")
    x, share = live_cdf(live)
    ax.step(x, share, where="post", label="live", color="#c0392b")
    ax.set_xlabel("calibrated risk")
    ax.set_ylabel("share of parcels at or below")
    ax.legend()
    return _png(fig)


def lane_chart(daily: list[dict[str, Any]]) -> str:
    fig, ax = _figure()
    x = np.arange(len(daily))  # positions, the days as labels (matplotlib would parse them)
    for lane, colour in (("red", "#c0392b"), ("yellow", "#d4a017")):
        ax.plot(x, [d[lane] for d in daily], marker="o", color=colour, label=f"{lane} share")
        ax.plot(x, [d[f"{lane}_target"] for d in daily], "--", color=colour, alpha=0.6)
    ax.set_xticks(x, [d["day"][5:] for d in daily], rotation=45)
    ax.set_ylabel("share of decisions (dashed: target)")
    ax.legend()
    return _png(fig)


def hit_rate_chart(buckets: list[dict[str, Any]]) -> str:
    judged = [b for b in buckets if b["results"]]
    fig, ax = _figure()
    x = np.arange(len(judged))
    rate = np.array([b["hit_rate"] for b in judged], dtype=float)
    low = np.array([b["hit_rate_low"] for b in judged], dtype=float)
    high = np.array([b["hit_rate_high"] for b in judged], dtype=float)
    # matplotlib refuses a negative error bar: never let a rounding residue crash the report
    yerr = [np.maximum(rate - low, 0.0), np.maximum(high - rate, 0.0)]
    ax.errorbar(x, rate, yerr=yerr, fmt="o", capsize=4, label="hit rate")
    ax.plot(x, [b["expected_hit_rate"] for b in judged], "s", color="#555", label="expected")
    ax.set_xticks(x, [f"{b['from']}\n({b['results']})" for b in judged])
    ax.set_ylabel("exploration hit rate (results)")
    ax.legend()
    return _png(fig)


def disparity_chart(rates: list[dict[str, Any]], title: str) -> str:
    rows = [r for r in rates if r["hit_rate"] is not None][:15]
    fig, ax = _figure()
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["red_rate"] for r in rows], 0.4, label="red rate", color="#c0392b")
    ax.bar(x + 0.2, [r["hit_rate"] for r in rows], 0.4, label="hit rate", color="#4a78b0")
    labels = [
        ("* " if r["flag"] and r["flag"] != "too few results" else "") + r["group"] for r in rows
    ]
    ax.set_xticks(x, labels, rotation=45, ha="right")
    ax.set_title(f"{title} (* flagged)")
    ax.legend()
    return _png(fig)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "-" if v != v else f"{v:.4g}"
        return html.escape("-" if v is None else str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_report(
    summary: dict[str, Any], reference: ValueReference | None, params: MonitorParams
) -> str:
    """The page for ``summary`` (``serving.monitor.compute.monitor_period``'s)."""
    esc = html.escape
    period, champion = summary["period"], summary["champion"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>parcelrisk monitor</title><style>body{font-family:sans-serif;margin:2em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
        ".alert{color:#a00}</style></head><body>",
        f"<h1>Monitoring {esc(period['since'])} to {esc(period['until'])}</h1>",
        f"<p>{summary['decisions']} declarations; champion {esc(champion['name'])} "
        f"v{esc(champion['version'])} (run {esc(champion['run_id'])}).</p>",
        "<h2>Alerts</h2>",
    ]
    alerts = summary["alerts"]
    parts.append(
        "<ul>" + "".join(f"<li class='alert'>{esc(a['message'])}</li>" for a in alerts) + "</ul>"
        if alerts
        else "<p>None.</p>"
    )
    acknowledged = summary.get("acknowledged", [])
    parts.append("<h2>Acknowledged</h2>")
    if acknowledged:
        parts.append(
            "<p>Alerts a person acknowledged, still at the level they were seen: not paged. "
            "Each pages again once it moves beyond that level, or after its date.</p><ul>"
            + "".join(
                f"<li>{esc(a['alert']['message'])} <i>(acknowledged by "
                f"{esc(a['acknowledgement']['by'])} at {a['acknowledgement']['value']:.4g} until "
                f"{esc(a['acknowledgement']['until'])}: {esc(a['acknowledgement']['reason'])})</i>"
                "</li>"
                for a in acknowledged
            )
            + "</ul>"
        )
    else:
        parts.append("<p>None.</p>")
    if summary.get("not_judged"):
        parts.append(
            "<h2>Not judged</h2><ul>"
            + "".join(f"<li>{esc(m)}</li>" for m in summary["not_judged"])
            + "</ul>"
        )
    drift = summary["drift"]
    parts.append("<h2>Drift against the training reference</h2>")
    parts.append(
        f"<p>{drift['comparable_decisions']} decisions made with the champion's feature manifest; "
        f"{drift['other_manifest_decisions']} with another (not compared).</p>"
    )
    if not drift.get("available"):
        parts.append(f"<p>{esc(drift['reason'])}</p>")
    else:
        if drift.get("not_judged"):
            parts.append(f"<p>Not judged: {esc(drift['not_judged'])}.</p>")
        if drift["features"]:
            parts.append(
                psi_chart(drift["features"], params.report_top_features, params.psi_feature_alert)
            )
        if drift["score"] is not None and reference is not None:
            parts.append(
                f"<p>Risk score: PSI {drift['score']['psi']:.3f}, KS {drift['score']['ks']:.3f}</p>"
            )
            parts.append(score_chart(reference, drift["score_live"]))
        parts.append(
            _table(
                drift["features"],
                [
                    "name",
                    "kind",
                    "psi",
                    "ks",
                    "ks_p_value",
                    "missing_share",
                    "reference_missing_share",
                ],
            )
        )
    lanes = summary["lanes"]
    parts.append("<h2>Lane shares</h2>")
    overall = lanes["overall"]
    parts.append(
        f"<p>Outside exploration, over {overall['decisions']} decisions with known targets: "
        f"red {_pct(overall['red'])} (target {_pct(overall['red_target'])}), yellow "
        f"{_pct(overall['yellow'])} (target {_pct(overall['yellow_target'])}). Exploration "
        f"{_pct(lanes['exploration']['share'])} of all (rate {_pct(lanes['exploration']['target'])})."
        f" {lanes['unknown_thresholds_decisions']} decisions under thresholds versions with no "
        "known target.</p>"
    )
    if lanes["daily"]:
        parts.append(lane_chart(lanes["daily"]))
    refit = lanes["refit"]
    if refit is not None:
        from serving.monitor.compute import distinct_cutoffs

        red = distinct_cutoffs(refit["red_cutoff"], refit["current_red_cutoff"], digits=5)
        yellow = distinct_cutoffs(refit["yellow_cutoff"], refit["current_yellow_cutoff"], digits=5)
        parts.append(
            f"<p>Cut-offs that would have filled the targets on this traffic ({esc(refit['objective'])}"
            f", after the AEO discount): red {red[0]} (now {red[1]}), yellow {yellow[0]} (now "
            f"{yellow[1]}).</p>"
        )
    exploration = summary["exploration"]
    ov = exploration["overall"]
    parts.append("<h2>Exploration hit rate</h2>")
    parts.append(
        f"<p>{ov['parcels']} exploration parcels, {ov['results']} results, "
        f"<b>{ov['results_missing']} results missing</b>. Hit rate {_pct(ov['hit_rate'])} "
        f"({_pct(ov['hit_rate_low'])}-{_pct(ov['hit_rate_high'])}), expected "
        f"{_pct(ov['expected_hit_rate'])}; revenue per inspection "
        f"{_num(ov['revenue_per_inspection'])} (expected "
        f"{_num(ov['expected_revenue_per_inspection'])}).</p>"
    )
    if any(b["results"] for b in exploration["buckets"]):
        parts.append(hit_rate_chart(exploration["buckets"]))
    parts.append(
        _table(
            exploration["buckets"],
            [
                "from",
                "parcels",
                "results",
                "results_missing",
                "hit_rate",
                "hit_rate_low",
                "hit_rate_high",
                "expected_hit_rate",
                "revenue_per_inspection",
                "revenue_low",
                "revenue_high",
                "expected_revenue_per_inspection",
            ],
        )
    )
    parts.append("<h2>Disparity</h2>")
    for dimension, rates in summary["disparity"].items():
        if any(r["hit_rate"] is not None for r in rates):
            parts.append(disparity_chart(rates, dimension))
        parts.append(
            _table(
                rates[:30],
                [
                    "group",
                    "decisions",
                    "red_rate",
                    "selected_rate",
                    "inspected",
                    "hit_rate",
                    "flag",
                ],
            )
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def _pct(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v:.2%}"


def _num(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v:.2f}"
