"""`serving/bentofile.yaml`: `bentoml build` packages the service, and the Bento serves.

The Bento is built into a BentoML home of its own (not ~/bentoml) and served with
`bentoml serve TAG` on the test pipeline's champion, configured by environment variables only,
as a container would be. Shares the xdist group of the live-worker tests: one pipeline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.test_serving.conftest import SCORER_KEY, fresh_declarations, wait_until_serving
from tests.test_serving.test_live_workers import _free_port, _payload

pytestmark = pytest.mark.xdist_group("serving_live_workers")

ROOT = Path(__file__).resolve().parents[2]
BENTOML = str(Path(sys.executable).parent / "bentoml")


def _pins(text: str) -> set[str]:
    return {
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "-"))
    }


@pytest.fixture(scope="module")
def bento(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    home = tmp_path_factory.mktemp("bentoml-home")
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    built = subprocess.run(
        [BENTOML, "build", "-f", "serving/bentofile.yaml", "--output", "tag", "."],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    tag = re.search(r"parcelrisk:\w+", built.stdout + built.stderr)
    assert tag, built.stdout[-2000:]
    # where the store keeps it (`bentoml get -o path` wraps long paths at the terminal width)
    name, version = tag.group(0).split(":")
    path = home / "bentos" / name / version
    return {"tag": tag.group(0), "path": path, "env": env}


def test_the_bento_holds_the_service_its_code_and_the_pinned_environment(bento):
    path = bento["path"]
    manifest = yaml.safe_load((path / "bento.yaml").read_text())
    assert manifest["service"] == "serving.service:ParcelRiskService"
    for module in ("serving/service.py", "features/pipeline/online.py", "models/bundle.py"):
        assert (path / "src" / module).is_file(), module
    assert (path / "src" / "params.yaml").is_file()
    assert not list((path / "src").rglob("__pycache__"))
    assert not (path / "src" / "tests").exists()
    # exactly the versions the tests ran with
    requirements = (path / "env" / "python" / "requirements.txt").read_text()
    assert _pins(requirements) == _pins((ROOT / "constraints.txt").read_text())
    assert {"name": "OMP_NUM_THREADS", "value": "1"}.items() <= manifest["envs"][0].items()


def test_a_built_bento_serves_the_champion_configured_by_environment(
    bento, real_pipeline, tmp_path
):
    port = _free_port()
    env = {
        **bento["env"],
        "PARCELRISK_API_KEYS": f"scorer:{SCORER_KEY}",
        "MLFLOW_TRACKING_URI": real_pipeline["tracking_uri"],
        "PARCELRISK_PARAMS": str(real_pipeline["params"]),
        "PARCELRISK_AUDIT_DB": str(tmp_path / "decisions.db"),
        "PARCELRISK_WORKERS": "1",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    log = (tmp_path / "bento.log").open("w")
    process = subprocess.Popen(
        [BENTOML, "serve", bento["tag"], "--port", str(port), "--host", "127.0.0.1"],
        cwd=tmp_path,  # nothing of the checkout: the Bento's own code and params
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process, Path(log.name))
        parcels = _payload(fresh_declarations(real_pipeline["history"], 3, prefix="BENTO"))
        answer = httpx.post(
            f"{url}/score",
            content=json.dumps({"declarations": parcels}),
            headers={"X-API-Key": SCORER_KEY, "Content-Type": "application/json"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        decisions = answer.json()["decisions"]
        assert [d["declaration_id"] for d in decisions] == [p["declaration_id"] for p in parcels]
        assert {d["lane"] for d in decisions} <= {"red", "yellow", "green"}
        assert all(d["model"]["version"] == real_pipeline["version"] for d in decisions)
        assert (tmp_path / "decisions.db").is_file()  # recorded where the environment said
        refused = httpx.post(f"{url}/score", json={"declarations": parcels}, timeout=30)
        assert refused.status_code == 401  # keys are enforced in the Bento too
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        log.close()
