"""`parcelrisk monitor`: a period of live decisions against the champion's training reference
and lane targets: feature and score drift, lane shares, exploration hit rates, disparity,
alerts. ``data.py`` reads (read-only) and logs to MLflow, ``compute.py`` is the pure core,
``report.py`` the HTML page, ``cli.py`` the command.
"""
