"""The live entity state across real worker processes: `parcelrisk serve --workers 2`.

A parcel scored by one worker counts in the history of the next parcel whichever worker scores
it (the other one reads it from the decision store before its next batch).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from features.params import load_settings
from serving.scoring import load_runtime, score_frame
from tests.test_serving.conftest import AUDITOR_KEY, SCORER_KEY, fresh_declarations

SPLIT_24H = "consignee_parcels_24h"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _payload(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records", date_format="iso"))


@pytest.fixture
def two_workers(real_pipeline, tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "PARCELRISK_API_KEYS": f"scorer:{SCORER_KEY},auditor:{AUDITOR_KEY}",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    env.pop("PARCELRISK_WORKERS", None)
    command = [
        str(Path(sys.executable).parent / "parcelrisk"),
        "serve",
        *("--params", str(real_pipeline["params"]), "--port", str(port), "--workers", "2"),
        *("--tracking-uri", real_pipeline["tracking_uri"], "--audit-db", str(tmp_path / "a.db")),
    ]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"service did not start: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # the server and its workers
            server.wait(timeout=30)
        log.close()


def test_a_parcel_scored_on_one_worker_counts_on_both(two_workers, real_pipeline, tmp_path):
    parcels = fresh_declarations(real_pipeline["history"], 17, prefix="W")
    parcels["consignee_id"] = parcels["consignee_id"].iloc[0]
    first = pd.Timestamp("2026-03-10 10:00", tz="UTC")
    parcels["declared_at"] = [first] + [first + pd.Timedelta(minutes=5)] * 16
    # what the next parcels see without the first one: the snapshot alone
    runtime = load_runtime(
        load_settings(real_pipeline["params"]), real_pipeline["tracking_uri"], tmp_path / "m"
    )
    runtime.live = None
    alone = score_frame(parcels.iloc[1:].reset_index(drop=True), runtime).features.values[SPLIT_24H]

    scorer, auditor = {"X-API-Key": SCORER_KEY}, {"X-API-Key": AUDITOR_KEY}
    first_answer = httpx.post(
        f"{two_workers}/score", json={"declarations": _payload(parcels.head(1))}, headers=scorer
    )
    assert first_answer.status_code == 200, first_answer.text
    seen = []
    # one request per connection: a kept-alive connection would stay on one worker, new ones
    # are spread over both by the shared socket
    for i in range(1, len(parcels)):
        answer = httpx.post(
            f"{two_workers}/score",
            json={"declarations": _payload(parcels.iloc[[i]])},
            headers=scorer,
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        decision_id = answer.json()["decisions"][0]["decision_id"]
        stored = httpx.get(
            f"{two_workers}/decision", params={"decision_id": decision_id}, headers=auditor
        )
        seen.append(stored.json()["features"][SPLIT_24H])
    # the later parcels share one declared_at: they do not see each other, only the first one
    assert seen == [value + 1 for value in alone.tolist()], (seen, alone)
