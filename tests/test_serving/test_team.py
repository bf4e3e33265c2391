"""A team's services on real servers, started by `scripts/team.sh` itself: PostgreSQL, an
MLflow tracking server on it, two single-worker replicas sharing one decision store, and
nginx in front of them.

Up (the replicas not ready: no champion yet; MLflow refuses whoever lacks the team's
credential) -> train and promote against the team's MLflow with it -> both replicas load the
champion from it -> declarations scored through nginx, answered by both replicas into the one
store -> an auditor reads a decision back and verifies the chain -> MLflow's main process
killed alone: `up` clears what it left on the port and starts it again -> down: every port
free, no process left.

Needs Debian's postgresql and nginx: `scripts/install_services.sh` installs them when this
runs as root (CI does, from `.ci/run`); without them the test is skipped, saying which and why
(a failure under ``PARCELRISK_REQUIRE_POSTGRES=1``, as CI runs).
Shares the xdist group of the live-worker tests: one small pipeline, whose features it trains on.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.postgres import REQUIRE_ENV
from tests.test_serving.conftest import (
    API_KEYS,
    AUDITOR_KEY,
    SCORER_KEY,
    fresh_declarations,
    wait_for,
)
from tests.test_serving.test_live_workers import _free_port, _payload

pytestmark = pytest.mark.xdist_group("serving_live_workers")

ROOT = Path(__file__).resolve().parents[2]
TEAM = ROOT / "scripts" / "team.sh"
REPLICAS = 2
REQUEST_TIMEOUT_S = 5


def _services_installed() -> None:
    """PostgreSQL and nginx from Debian, installed when missing (as root), else a skip."""
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install_services.sh")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        why = (done.stderr.strip() or done.stdout.strip()).splitlines()
        message = (
            "a team's services need Debian's postgresql and nginx, which are not installed and "
            f"could not be: {' '.join(why[-3:])}"
        )
        if os.environ.get(REQUIRE_ENV) == "1":  # CI: what it must prove is not skipped
            pytest.fail(f"{REQUIRE_ENV}=1: {message}")
        pytest.skip(message)


def _free_port_pair() -> int:
    """A port free together with the next one (the replicas take consecutive ports)."""
    for _ in range(50):
        port = _free_port()
        if port < 65535:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two consecutive free ports")


def _team_ports() -> dict[str, int]:
    """Free ports for the team's services, all different: each is drawn free and released,
    and the kernel may hand the same one out twice in a row (CI: nginx and MLflow were both
    given 56049, and nginx could not bind)."""
    for _ in range(50):
        replicas = _free_port_pair()
        ports = {
            "PARCELRISK_TEAM_PORT": _free_port(),
            "PARCELRISK_TEAM_REPLICA_PORT": replicas,
            "PARCELRISK_TEAM_MLFLOW_PORT": _free_port(),
            "PARCELRISK_TEAM_PG_PORT": _free_port(),
        }
        taken = [p for name, p in ports.items() if name != "PARCELRISK_TEAM_REPLICA_PORT"]
        taken += [replicas + i for i in range(REPLICAS)]
        if len(set(taken)) == len(taken):
            return ports
    raise RuntimeError("no distinct free ports for a team")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@dataclass
class Team:
    directory: Path
    env: dict[str, str]
    front: str  # nginx
    mlflow: str
    replicas: list[str]

    def run(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(TEAM), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def processes(self) -> set[int]:
        """Every process with the team directory in its command line or environment (the
        replicas' BentoML workers carry it in PARCELRISK_MODEL_DIR), and PostgreSQL's."""
        marker = str(self.directory).encode()
        found = set()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if (
                    marker in (proc / "cmdline").read_bytes()
                    or marker in (proc / "environ").read_bytes()
                ):
                    found.add(int(proc.name))
            except OSError:
                continue
        return found - {os.getpid()}


@contextlib.contextmanager
def _team(params: Path) -> Iterator[Team]:
    """A team on free ports in a directory of its own, replicas reading ``params``; whatever
    still runs at the end is stopped and the directory removed."""
    _services_installed()
    # Not under tmp_path: pytest makes its directories 0700, and as root the database server
    # runs as the postgres OS user, which must be able to enter the team directory.
    directory = Path(tempfile.mkdtemp(prefix="parcelrisk-team-"))
    directory.chmod(0o755)
    ports = _team_ports()
    env = {
        **os.environ,
        **{name: str(port) for name, port in ports.items()},
        "PARCELRISK_TEAM_DIR": str(directory),
        "PARCELRISK_TEAM_REPLICAS": str(REPLICAS),
        "PARCELRISK_TEAM_PARAMS": str(params),
        "PARCELRISK_PYTHON": sys.executable,
        "PARCELRISK_API_KEYS": API_KEYS,
    }
    env.pop("PARCELRISK_API_KEYS_FILE", None)
    first = ports["PARCELRISK_TEAM_REPLICA_PORT"]
    team = Team(
        directory,
        env,
        front=f"http://127.0.0.1:{ports['PARCELRISK_TEAM_PORT']}",
        mlflow=f"http://127.0.0.1:{ports['PARCELRISK_TEAM_MLFLOW_PORT']}",
        replicas=[f"http://127.0.0.1:{first + i}" for i in range(REPLICAS)],
    )
    try:
        yield team
    finally:
        if team.processes():  # the test failed before its own `down`
            team.run("down", timeout=120)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def team(tmp_path: Path, real_pipeline: dict) -> Iterator[Team]:
    """A team whose replicas serve with the test pipeline's settings."""
    params = yaml.safe_load(real_pipeline["params"].read_text())
    # promoted: ready soon; a short request timeout, so a request held by a replica that is
    # still starting shows well beyond it
    params["serve"] = {
        **params.get("serve", {}),
        "champion_check_s": 1,
        "request_timeout_s": REQUEST_TIMEOUT_S,
        "max_queue_wait_s": None,
    }
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    with _team(params_path) as team:
        yield team


def _rows_scored(replica: str) -> float:
    """Declarations a replica has scored, from its own Prometheus metrics."""
    text = httpx.get(f"{replica}/metrics", headers={"X-API-Key": SCORER_KEY}, timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("parcelrisk_batch_rows_sum")
    )


def _exports(printed: str, env: dict[str, str]) -> dict[str, str]:
    """The variables `up` tells its user to export, as a shell pasting those lines sets them
    (one of them reads a file: `$(cat .../mlflow-password)`)."""
    lines = "\n".join(re.findall(r"^\s*(export \w+=.*)$", printed, flags=re.M))
    names = re.findall(r"^export (\w+)=", lines, flags=re.M)
    shell = subprocess.run(
        [
            "bash",
            "-c",
            lines + '\nfor n in "$@"; do printf "%s=%s\\0" "$n" "${!n}"; done',
            "-",
            *names,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(item.split("=", 1) for item in shell.stdout.split("\0") if item)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_team_trains_promotes_and_scores_through_nginx_on_its_own_servers(
    team: Team, real_pipeline: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from features.params import load_settings
    from models.cli import run_promotion, run_training

    up = team.run("up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"export MLFLOW_TRACKING_URI={team.mlflow}" in up.stdout
    exported = _exports(up.stdout, team.env)
    # the decision store is the team's PostgreSQL database
    assert exported["PARCELRISK_AUDIT_DB"].startswith("postgresql://"), up.stdout
    running = team.processes()

    # no champion yet: each replica runs and says why it is not ready, through nginx too
    refused = httpx.get(f"{team.front}/readyz", timeout=10)
    assert refused.status_code == 503 and "champion" in refused.text
    status = team.run("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.count("not ready: champion model not loaded") == REPLICAS

    # `up` again starts nothing
    again = team.run("up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "started" not in again.stdout, again.stdout
    assert team.processes() == running

    # the registry the replicas follow takes no request without the team's credential: nobody
    # else moves the champion past promote's gate
    alias = {"name": "parcel-risk", "alias": "champion", "version": "1"}
    anonymous = httpx.post(f"{team.mlflow}/api/2.0/mlflow/registered-models/alias", json=alias)
    assert anonymous.status_code == 401, anonymous.text
    wrong = httpx.get(
        f"{team.mlflow}/api/2.0/mlflow/registered-models/search",
        auth=("parcelrisk", "not-the-password"),
    )
    assert wrong.status_code == 401, wrong.text
    password = team.directory / "mlflow-password"
    assert exported["MLFLOW_TRACKING_PASSWORD"] == password.read_text().strip()
    assert (password.stat().st_mode & 0o077) == 0
    # a password file that is not the one MLflow's user was made with: said at `up`, by name
    first = password.read_text()
    password.write_text("another-password")
    locked_out = team.run("up")
    assert locked_out.returncode == 1 and "refuses the team's credential" in locked_out.stderr
    password.write_text(first)
    assert ((team.directory / "mlflow").stat().st_mode & 0o077) == 0  # the model bundles

    # train and promote against the team's MLflow with the exports `up` printed (artifacts go
    # through the server)
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(name, exported[name])
    settings = load_settings(team.env["PARCELRISK_TEAM_PARAMS"])
    trained = run_training(
        real_pipeline["root"] / "processed",
        settings=settings,
        tracking_uri=team.mlflow,
        metrics_out=None,
    )
    run_promotion(settings=settings, tracking_uri=team.mlflow)
    for replica in team.replicas:
        assert wait_for(lambda r=replica: _ready(r), timeout=90), team.run("status").stdout
    # each replica names the model it decides with, so a promotion's arrival can be waited on
    status = team.run("status").stdout
    assert status.count(f"(ready: model {settings.serve.model_name} v1)") == REPLICAS, status
    assert f"all ready on model {settings.serve.model_name} v1\n" in status, status

    # scored through nginx, the client's request id passed through both ways
    declarations = _payload(fresh_declarations(real_pipeline["history"], 16, prefix="TEAM"))
    decided: dict[str, str] = {}
    with httpx.Client(base_url=team.front, timeout=30) as client:
        for i, declaration in enumerate(declarations):
            answer = client.post(
                "/score",
                json={"declarations": [declaration]},
                headers={"Authorization": f"Bearer {SCORER_KEY}", "X-Request-Id": f"team-{i}"},
            )
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-request-id"] == f"team-{i}"
            decision = answer.json()["decisions"][0]
            assert decision["model"]["version"] == str(trained["version"])
            decided[decision["decision_id"]] = declaration["declaration_id"]
    assert len(decided) == len(declarations)

    # both replicas answered, and wrote into the one store
    scored = [_rows_scored(replica) for replica in team.replicas]
    assert all(rows > 0 for rows in scored), scored
    assert sum(scored) == len(declarations)
    access = (team.directory / "logs" / "nginx-access.log").read_text()
    assert {f"upstream={r.removeprefix('http://')}" for r in team.replicas} <= set(
        re.findall(r"upstream=\S+", access)
    )
    # whichever replica decided, each replica reads every decision back from the store
    some = next(iter(decided))
    for replica in team.replicas:
        read = httpx.post(
            f"{replica}/decision",
            json={"decision_id": some},
            headers={"X-API-Key": AUDITOR_KEY},
            timeout=10,
        )
        assert read.status_code == 200, read.text
        assert read.json()["declaration_id"] == decided[some]
        assert read.json()["request_id"].startswith("team-")  # nginx passed it through

    # the auditor's commands with the exports `up` printed: one decision in full, then the
    # chain the replicas wrote together, one link per decision
    audit_env = {**team.env, **exported, "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "serving.main", "audit"]
    shown = subprocess.run(
        [*cli, "show", some, "--json", "--tracking-uri", team.mlflow],
        env=audit_env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert decided[some] in shown.stdout
    verified = subprocess.run(
        [*cli, "verify"], env=audit_env, capture_output=True, text=True, timeout=180, cwd=ROOT
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr[-2000:]
    head = subprocess.run(
        [*cli, "head"], env=audit_env, capture_output=True, text=True, timeout=180, cwd=ROOT
    )
    assert head.stdout.split(":")[0].strip() == str(len(declarations)), head.stdout + head.stderr

    # a replica killed and brought back by `up` while the other serves: it binds its port long
    # before its worker answers, and nginx sent it requests that hung until the worker had
    # loaded the champion (probe 41). Kept out of nginx's pool until it answers, no request
    # to the team waits much beyond serve.request_timeout_s
    _restart_replica_under_traffic(team, declarations)

    # MLflow's main process killed alone (the OOM killer's choice): its worker keeps the port
    # and answers; `up` stops what it left and starts MLflow again, which the replicas use
    mlflow_pid = int((team.directory / "run" / "mlflow.pid").read_text().split()[0])
    os.kill(mlflow_pid, 9)
    assert wait_for(lambda: team.run("status").returncode == 1, timeout=30)
    assert httpx.get(f"{team.mlflow}/health", timeout=10).status_code == 200  # the orphan
    restarted = team.run("up")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "mlflow: its main process is gone; stopping what it left running" in restarted.stdout
    assert "mlflow       started" in restarted.stdout, restarted.stdout
    assert team.run("status").returncode == 0
    registry = httpx.get(
        f"{team.mlflow}/api/2.0/mlflow/registered-models/get",
        params={"name": "parcel-risk"},
        auth=("parcelrisk", exported["MLFLOW_TRACKING_PASSWORD"]),
        timeout=30,
    )
    assert registry.status_code == 200, registry.text  # the same users after the restart

    # down: nothing left running, every port free again
    down = team.run("down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not team.processes()
    ports = [int(url.rsplit(":", 1)[1]) for url in (team.front, team.mlflow, *team.replicas)]
    ports.append(int(team.env["PARCELRISK_TEAM_PG_PORT"]))
    assert all(_port_free(port) for port in ports), ports
    assert team.run("status").returncode == 1


def _restart_replica_under_traffic(team: Team, declarations: list[dict]) -> None:
    """Kill replica 1 (SIGKILL), `up` while single declarations go through nginx all along:
    each answered 200 within about serve.request_timeout_s, and replica 1 serves again."""
    replica_pid = int((team.directory / "run" / "replica-1.pid").read_text().split()[0])
    os.kill(replica_pid, 9)
    timings: list[tuple[float, int]] = []
    stop = threading.Event()

    def keep_scoring() -> None:
        with httpx.Client(base_url=team.front, timeout=60) as client:
            n = 0
            while not stop.is_set():
                declaration = {**declarations[n % len(declarations)]}
                declaration["declaration_id"] = f"RESTART-{n}"
                n += 1
                started = time.monotonic()
                try:
                    status = client.post(
                        "/score",
                        json={"declarations": [declaration]},
                        headers={"Authorization": f"Bearer {SCORER_KEY}"},
                    ).status_code
                except httpx.HTTPError:
                    status = 0
                timings.append((time.monotonic() - started, status))
                time.sleep(0.1)

    traffic = threading.Thread(target=keep_scoring)
    traffic.start()
    try:
        up = team.run("up")
    finally:
        # a little longer: requests reach the replica once nginx takes it back
        time.sleep(3)
        stop.set()
        traffic.join()
    assert up.returncode == 0, up.stdout + up.stderr
    assert "replica 1    started" in up.stdout, up.stdout
    assert "out of the pool while they start" in up.stdout, up.stdout
    assert timings and {status for _, status in timings} == {200}, timings
    slowest = max(seconds for seconds, _ in timings)
    assert slowest < REQUEST_TIMEOUT_S + 3, (slowest, len(timings))
    assert _ready(team.replicas[0])
    conf = (team.directory / "nginx" / "nginx.conf").read_text()
    assert " down;" not in conf  # both back in the pool
    assert f"proxy_read_timeout {REQUEST_TIMEOUT_S + 2}s;" in conf


# A replica's /readyz as the service answers it, from a process whose command line names the
# team directory (as team.sh's `running` checks)
_FAKE_REPLICA = """
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port, version = int(sys.argv[1]), sys.argv[2]
body = json.dumps({"ready": True, "model": {"name": "parcel-risk", "version": version}}).encode()
class Ready(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", port), Ready).serve_forever()
"""


@pytest.mark.parametrize(
    ("versions", "said"),
    [
        (
            ["2", "1", "2"],
            "NOT on one model: model parcel-risk v1: replica 2; model parcel-risk v2: replica 1, 3",
        ),
        (["2", "2", "2"], "all ready on model parcel-risk v2"),
    ],
    ids=["one-behind", "all-on-one"],
)
def test_status_says_when_the_replicas_decide_with_different_models(
    tmp_path: Path, versions: list[str], said: str
) -> None:
    directory = tmp_path / "team"
    (directory / "run").mkdir(parents=True)
    first = _free_port()
    ports = [first, *(_free_port() for _ in versions[1:])]
    replicas = []
    try:
        for i, (port, version) in enumerate(zip(ports, versions, strict=True), start=1):
            replicas.append(
                subprocess.Popen(
                    [sys.executable, "-c", _FAKE_REPLICA, str(port), version, f"{directory}/"]
                )
            )
            (directory / "run" / f"replica-{i}.pid").write_text(f"{replicas[-1].pid} {port}\n")
        for port in ports:
            assert wait_for(lambda p=port: not _port_free(p), timeout=20)
        env = {**os.environ, "PARCELRISK_TEAM_DIR": str(directory)}
        status = subprocess.run(
            ["bash", str(TEAM), "status"], env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        for replica in replicas:
            replica.kill()
            replica.wait()
    assert said in status.stdout, status.stdout + status.stderr
    # PostgreSQL, MLflow and nginx are not running here: 1 either way
    assert status.returncode == 1


def test_up_refuses_a_taken_port_naming_it_and_starts_nothing() -> None:
    with _team(ROOT / "params.yaml") as team, socket.socket() as taken:
        taken.bind(("127.0.0.1", int(team.env["PARCELRISK_TEAM_PORT"])))
        taken.listen()
        up = team.run("up", timeout=120)
        assert up.returncode == 1
        assert "nginx port" in up.stderr and "PARCELRISK_TEAM_PORT" in up.stderr, up.stderr
        assert "Traceback" not in up.stderr
        assert not team.processes()
