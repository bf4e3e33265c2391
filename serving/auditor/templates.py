"""The auditor pages' HTML: Jinja2 templates with autoescape on, inline CSS, no script.

Values reach the page escaped, URIs without their user and password; only the SVG built by ``serving.auditor.charts`` (which escapes
its own labels) is marked safe, by the page code.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2
import markupsafe

from serving.audit.safe_text import display_uri, page_safe
from serving.auditor.charts import display

_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}parcelrisk auditor{% endblock %}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f2d3d;color:#fff;padding:8px 20px;display:flex;gap:18px;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}
header form{margin-left:auto}
main{padding:16px 24px;max-width:1100px}
h1{font-size:20px;margin:8px 0 14px}
h2{font-size:16px;margin:22px 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}
table{border-collapse:collapse;background:#fff;margin:6px 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.lane{display:inline-block;padding:1px 8px;border-radius:3px;color:#fff;font-weight:600}
.lane-red{background:#c0392b}.lane-yellow{background:#d4ac0d;color:#222}.lane-green{background:#27ae60}
.ok{color:#1e8449;font-weight:600}.bad{color:#c0392b;font-weight:600}
.note{color:#555}.flag{color:#c0392b;font-weight:600}
.msg{background:#fdecea;border:1px solid #e6b0aa;padding:8px 12px;margin:10px 0}
form.filters{display:flex;flex-wrap:wrap;gap:10px;align-items:end;margin-bottom:10px}
form.filters label{display:flex;flex-direction:column;font-size:12px}
.kv th{width:220px}
pre{white-space:pre-wrap;word-break:break-all;margin:0}
</style></head>
<body>
<header><a href="/auditor/decisions">parcelrisk · auditor</a>
{% if signed_in %}<a href="/auditor/decisions">Decisions</a>
{% if champion %}<a href="/auditor/models/{{ champion.name|urlencode }}/{{ champion.version|urlencode }}">Model {{ champion.name }} v{{ champion.version }}</a>{% endif %}
<form method="post" action="/auditor/logout"><button type="submit">Sign out</button></form>{% endif %}
</header>
<main>{% block main %}{% endblock %}</main>
</body></html>
"""

_LOGIN = """{% extends "base" %}
{% block title %}Sign in · parcelrisk auditor{% endblock %}
{% block main %}
<h1>Auditor sign-in</h1>
{% if message %}<p class="msg" id="message">{{ message }}</p>{% endif %}
<form method="post" action="/auditor/login" autocomplete="off">
<label>Auditor API key <input type="password" name="key" id="key" size="40" required></label>
<button type="submit" id="sign-in">Sign in</button>
</form>
<p class="note">The key is checked once; the session is kept in a cookie for this site's auditor
pages only, for {{ hours }} hours or until you sign out.</p>
{% endblock %}
"""

_MESSAGE = """{% extends "base" %}
{% block main %}<h1>{{ heading }}</h1><p class="msg">{{ message }}</p>{% endblock %}
"""

_DECISIONS = """{% extends "base" %}
{% block title %}Decisions · parcelrisk auditor{% endblock %}
{% block main %}
<h1>Decisions</h1>
<form class="filters" method="get" action="/auditor/decisions">
<label>answered from (UTC) <input name="from" value="{{ filters['from'] }}" placeholder="2026-05-01T00:00"></label>
<label>answered up to (UTC; a date: that whole day) <input name="to" value="{{ filters['to'] }}" placeholder="2026-05-02"></label>
<label>lane <select name="lane"><option value="">any</option>
{% for lane in lanes %}<option value="{{ lane }}"{% if filters['lane'] == lane %} selected{% endif %}>{{ lane }}</option>{% endfor %}
</select></label>
<label>model version <input name="model_version" value="{{ filters['model_version'] }}" size="6"></label>
<label>declaration id <input name="declaration_id" value="{{ filters['declaration_id'] }}"></label>
<button type="submit">Filter</button> <a href="/auditor/decisions">clear</a>
</form>
{% if message %}<p class="msg">{{ message }}</p>{% endif %}
<table id="decisions"><thead><tr><th>seq</th><th>answered at (UTC)</th><th>declaration</th>
<th>lane</th><th>risk</th><th>expected revenue</th><th>model</th><th></th></tr></thead><tbody>
{% for r in records %}<tr>
<td class="num">{{ r.seq }}</td><td>{{ r.answered_at }}</td><td>{{ r.declaration_id }}</td>
<td><span class="lane lane-{{ r.lane }}">{{ r.lane }}</span>{% if r.exploration %} <span class="note">(exploration)</span>{% endif %}</td>
<td class="num">{{ '%.1f%%' % (r.risk * 100) }}</td><td class="num">{{ '%.2f' % r.expected_revenue }}</td>
<td>{{ r.model_name }} v{{ r.model_version }}</td>
<td><a class="open" href="/auditor/decisions/{{ r.decision_id|urlencode }}">open</a></td>
</tr>{% else %}<tr><td colspan="8" class="note">no decision matches</td></tr>{% endfor %}
</tbody></table>
{% if next_query %}<p><a id="next" href="/auditor/decisions?{{ next_query }}">next {{ page_size }} →</a></p>{% endif %}
{% endblock %}
"""

_DECISION = """{% extends "base" %}
{% block title %}Decision {{ r.decision_id }} · parcelrisk auditor{% endblock %}
{% block main %}
<h1>Declaration {{ r.declaration_id }} <span class="lane lane-{{ r.lane }}" id="lane">{{ r.lane }}</span></h1>
<table class="kv">
<tr><th>decision id</th><td>{{ r.decision_id }}</td></tr>
<tr><th>risk (calibrated)</th><td id="risk">{{ '%.2f%%' % (r.risk * 100) }}</td></tr>
<tr><th>raw score (log-odds)</th><td>{{ '%.4f' % r.raw_score }}</td></tr>
<tr><th>expected revenue</th><td>{{ '%.2f' % r.expected_revenue }}</td></tr>
<tr><th>exploration</th><td>{{ 'yes (lane drawn at random)' if r.exploration else 'no' }}</td></tr>
<tr><th>model</th><td><a href="/auditor/models/{{ r.model_name|urlencode }}/{{ r.model_version|urlencode }}">{{ r.model_name }} v{{ r.model_version }}</a>,
thresholds {{ r.thresholds_version }}</td></tr>
<tr><th>MLflow run</th><td>{% if run_link %}<a href="{{ run_link }}" rel="noreferrer">{{ run_id }}</a>{% elif run_id %}{{ run_id }} <span class="note">(the tracking store has no web UI to link: open it with <code>mlflow ui --backend-store-uri {{ tracking_uri|display_uri }}</code>)</span>{% else %}<span class="note">unknown: see below</span>{% endif %}</td></tr>
<tr><th>scored at / answered at</th><td>{{ r.scored_at }} / {{ r.answered_at }}</td></tr>
<tr><th>request / key id</th><td>{{ r.request_id or '-' }} / {{ r.api_key_id or '-' }}</td></tr>
<tr><th>integrity (chain)</th><td id="integrity">{% if intact %}<span class="ok">intact</span>: its MAC matches its content and its neighbours' links{% else %}<span class="bad">BROKEN</span>: this record or its link in the chain was altered; run <code>parcelrisk audit verify</code>{% endif %}</td></tr>
{% if r.warnings %}<tr><th>warnings</th><td>{% for w in r.warnings %}{{ w }}<br>{% endfor %}</td></tr>{% endif %}
</table>

<h2>Inspection</h2>
{% if results %}<table id="results"><thead><tr><th>stored at</th><th>by</th><th>inspected at</th><th>found</th><th>offence</th><th>revenue recovered</th><th>why inspected</th><th>correction</th><th>integrity</th></tr></thead><tbody>
{% for x in results %}<tr{% if loop.last %} class="current"{% endif %}><td>{{ x.recorded_at }}</td><td>{{ x.source }}</td><td>{{ x.inspected_at }}</td><td>{{ 'illicit' if x.illicit else 'clean' }}</td><td>{{ x.offence_type or '-' }}</td><td class="num">{{ '-' if x.revenue_recovered is none else '%.2f' % x.revenue_recovered }}</td><td>{{ x.selection_reason or '-' }}</td><td>{{ x.correction or '' }}</td><td class="integrity">{% if x.intact is none %}<span class="note">not chained</span>{% elif x.intact %}<span class="ok">intact</span>{% else %}<span class="bad">ALTERED</span>: not what was stored; run <code>parcelrisk audit verify</code>{% endif %}</td></tr>{% endfor %}
</tbody></table>
{% if results|length > 1 %}<p class="note">The last row is the current result: each correction was stored beside the result it replaced, which stays as it was (chained: <code>parcelrisk audit verify</code>).</p>{% endif %}
{% else %}<p class="note" id="results">no inspection result stored</p>{% endif %}

<h2>Reasons</h2>
{% if r.reasons %}<ol id="reasons">{% for reason in r.reasons %}<li><span class="reason-text">{{ reason.text }}</span> <span class="note">({{ reason.feature }}, {{ '%+.3f' % reason.contribution }})</span></li>{% endfor %}</ol>
{% else %}<p class="note" id="reasons">no reasons recorded (green lanes carry none)</p>{% endif %}

<h2>How the score was reached</h2>
{% if waterfall %}<p class="note">Base value {{ '%.3f' % explanation.base_value }} + contributions = raw score {{ '%.3f' % explanation.raw_score }} → calibrated risk {{ '%.2f%%' % (explanation.risk * 100) }}.</p>
<div id="waterfall">{{ waterfall }}</div>
{% else %}<p class="msg">{{ explanation_problem }}</p>{% endif %}

<h2>Feature values</h2>
<table id="features"><thead><tr><th>feature</th><th>value</th><th>contribution</th></tr></thead><tbody>
{% for f in features %}<tr><td>{{ f.feature }}</td><td>{{ '-' if f.value is none else f.value|display }}{{ ' ' ~ f.get('unit') if f.get('unit') and f.value is not none else '' }}</td><td class="num">{{ '' if f.contribution is none else '%+.4f' % f.contribution }}</td></tr>{% endfor %}
</tbody></table>

<h2>Declaration</h2>
<table class="kv" id="declaration">{% for k, v in declaration.items() %}<tr><th>{{ k }}</th><td><pre>{{ '' if v is none else v }}</pre></td></tr>{% endfor %}</table>
{% endblock %}
"""

_MODEL = """{% extends "base" %}
{% block title %}Model {{ m.name }} v{{ m.version }} · parcelrisk auditor{% endblock %}
{% block main %}
<h1>Model {{ m.name }} v{{ m.version }}{% if is_champion %} <span class="note">(serving now)</span>{% endif %}</h1>
<table class="kv">
<tr><th>MLflow run</th><td>{% if m.run_link %}<a href="{{ m.run_link }}" rel="noreferrer">{{ m.run_id }}</a>{% else %}{{ m.run_id }} <span class="note">(no MLflow web UI at {{ tracking_uri|display_uri }})</span>{% endif %}</td></tr>
<tr><th>thresholds</th><td>{{ m.tags.get('thresholds_version', '-') }}</td></tr>
<tr><th>data fingerprint</th><td>{{ m.tags.get('data_fingerprint', '-') }}</td></tr>
</table>
{% if m.missing %}<p class="note">Not in this run: {{ m.missing|join(', ') }}.</p>{% endif %}

<h2>Promotion record</h2>
{% if m.promotion %}<table class="kv" id="promotion">{% for k, v in m.promotion.items() if k != 'metrics' %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
{% if m.promotion_metrics %}<table><thead><tr><th>metric</th><th>value</th></tr></thead><tbody>{% for k, v in m.promotion_metrics.items() %}<tr><td>{{ k }}</td><td class="num">{{ v }}</td></tr>{% endfor %}</tbody></table>{% endif %}
{% else %}<p class="note">never judged by <code>parcelrisk promote</code></p>{% endif %}
{% if m.history is none %}<p class="note">the promotion history could not be read from the registry just now</p>
{% elif m.history %}<h3>Every decision about this version</h3>
<table id="promotion-history"><thead><tr><th>at</th><th>outcome</th><th>by</th><th>champion before</th><th>replaced by</th><th>forced because</th><th>comparison</th></tr></thead><tbody>
{% for r in m.history %}<tr><td>{{ r.get('at', '') }}</td><td>{{ r.get('outcome', '') }}</td><td>{{ r.get('by', '') }}</td><td>{{ r.get('champion_before', '') }}</td><td>{{ r.get('replaced_by', '') }}</td><td>{{ r.get('force_reason', '') }}</td><td>{{ r.get('comparison', '') }}</td></tr>
{% endfor %}</tbody></table>{% endif %}

<h2>Global explanation (mean |SHAP| on the holdout)</h2>
{% if shap_bars %}{{ shap_bars }}{% endif %}
{% if m.images.get('shap/shap_summary.png') %}<p><img alt="SHAP summary" src="{{ m.images['shap/shap_summary.png'] }}" width="720"></p>{% endif %}

<h2>Calibration (unbiased holdout sample)</h2>
{% if calibration %}{{ calibration }}{% else %}<p class="note">no calibration table in this run</p>{% endif %}
{% for path, uri in m.images.items() if path.startswith('plots/') %}<figure><img alt="{{ path }}" src="{{ uri }}" width="480"><figcaption class="note">{{ path }}</figcaption></figure>{% endfor %}

<h2>Lanes and hit rates by group (decisions of this version)</h2>
<p class="note">Red rate: share of the group's decisions sent to red; hit rate: share of the group's inspected parcels found illicit. ⚑ a group whose red rate, relative to all groups', departs from its relative hit rate by more than ×{{ tolerance }} (groups with at least {{ min_results }} results).</p>
{% for d in disparity %}
<h3>{{ d.title }}</h3>
{% if d.rates %}{{ d.chart }}
<table><thead><tr><th>{{ d.dimension }}</th><th>decisions</th><th>red rate</th><th>red or yellow</th><th>results</th><th>hit rate</th><th>flag</th></tr></thead><tbody>
{% for g in d.rates %}<tr><td>{{ g.group }}</td><td class="num">{{ g.decisions }}</td><td class="num">{{ '%.1f%%' % (g.red_rate * 100) }}</td><td class="num">{{ '%.1f%%' % (g.selected_rate * 100) }}</td><td class="num">{{ g.inspected }}</td><td class="num">{{ '-' if g.hit_rate is none else '%.1f%%' % (g.hit_rate * 100) }}</td><td class="{{ 'flag' if g.flag and g.flag != 'too few results' else 'note' }}">{{ g.flag }}</td></tr>{% endfor %}
</tbody></table>
{% else %}<p class="note">no decision of this version is stored</p>{% endif %}
{% endfor %}
{% endblock %}
"""


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.DictLoader(
            {
                "base": _BASE,
                "login": _LOGIN,
                "message": _MESSAGE,
                "decisions": _DECISIONS,
                "decision": _DECISION,
                "model": _MODEL,
            }
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_shown,  # every value shown: invisible and bidi characters made visible
    )
    env.filters["display"] = display
    env.filters["display_uri"] = display_uri  # a tracking URI's password is not for the page
    return env


def _shown(value: Any) -> Any:
    """``page_safe`` of a value the page escapes; markup built here (the SVG charts, which
    escape their own labels) as it is."""
    return value if isinstance(value, markupsafe.Markup) else page_safe(value)


def render(template: str, **context: Any) -> str:
    context.setdefault("signed_in", False)
    context.setdefault("champion", None)
    return environment().get_template(template).render(**context)
