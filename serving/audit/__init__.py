"""The auditor's side of the decision store: the tamper-evident chain, its verification, the
archive of old days, and the ``parcelrisk audit`` commands."""
