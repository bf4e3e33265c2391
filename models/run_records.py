"""Records written beside a model version's run (lane sets, promotion decisions): how they
are read back and whom they name. Imports nothing of the project, so the modules that write
them (``models.lane_versions``, ``models.promotion``) share it without a cycle.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient


def read_run_json(client: MlflowClient, run_id: str, path: str) -> Any:
    """A JSON artifact of a run (a lane set's record, a promotion decision), parsed."""
    import json

    with tempfile.TemporaryDirectory(prefix="parcelrisk-record-") as tmp:
        local = client.download_artifacts(run_id, path, tmp)
        return json.loads(Path(local).read_text())


def operator_name() -> str:
    """Who runs the command, as records of lane sets and promotions name them."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry or $USER
        return "unknown"
