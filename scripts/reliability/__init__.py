"""`make reliability`: the promises of docs/RELIABILITY.md checked against the real server.

Each module checks one promise and returns a JSON-able dict with ``"ok": bool``;
``python -m scripts.reliability`` runs them all and prints one JSON summary.
"""
