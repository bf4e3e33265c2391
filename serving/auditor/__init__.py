"""The auditor's pages: decisions, their explanations and the models behind them, as HTML.

Served by the scoring service under ``/auditor`` to the ``auditor`` role only (a signed session
cookie, ``session.py``); charts are server-side SVG (``charts.py``): nothing is fetched from
another site, customs networks are closed.
"""
