"""`parcelrisk serve` as a process: a busy port, a SIGKILL, a SIGTERM (real servers).

circus starts every BentoML worker in a session of its own, so these tests look at the
workers by pid (children of the `serve` process, which runs the arbiter), not by group.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from serving.process import listening_pids
from tests.test_serving.conftest import SCORER_KEY, fresh_declarations, wait_for

pytestmark = pytest.mark.xdist_group("serving_process_hygiene")

PARCELRISK = str(Path(sys.executable).parent / "parcelrisk")
INITIALIZED = "Service parcelrisk initialized"  # BentoML logs it per worker, after __init__
IN_PROGRESS = "bentoml_service_request_in_progress"  # BentoML's HTTP instruments


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as circus binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _gone(pid: int) -> bool:
    # an orphan's new parent here may never reap it: a zombie no longer serves anything
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@dataclass
class Serve:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        return [p.pid for p in psutil.Process(self.process.pid).children()]


@pytest.fixture(scope="module")
def start_serve(real_pipeline, tmp_path_factory) -> Iterator[Callable[..., Serve]]:
    """Start `parcelrisk serve` (its own session, like a shell job) and wait for its workers."""
    tmp = tmp_path_factory.mktemp("hygiene")
    started: list[Serve] = []

    def start(port: int, workers: int = 2) -> Serve:
        n = len(started)
        env = {
            **os.environ,
            "PARCELRISK_API_KEYS": f"scorer:{SCORER_KEY}",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "BENTOML_HOME": str(tmp / f"bentoml-{n}"),
        }
        command = [
            PARCELRISK,
            "serve",
            *("--params", str(real_pipeline["params"]), "--port", str(port)),
            *("--workers", str(workers), "--tracking-uri", real_pipeline["tracking_uri"]),
            *("--audit-db", str(tmp / f"a{n}.db"), "--model-dir", str(tmp / f"models-{n}")),
        ]
        log = tmp / f"serve-{n}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        server = Serve(process, port, log)
        started.append(server)
        deadline = time.monotonic() + 120
        while log.read_text().count(INITIALIZED) < workers:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"service did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
        return server

    yield start
    for server in started:  # whatever a failed test left behind
        pids = [server.process.pid] if server.process.poll() is None else []
        for pid in [*pids, *(p for p in _orphans_of(server) if not _gone(p))]:
            os.kill(pid, signal.SIGKILL)
        if pids:
            server.process.wait(timeout=10)


def _orphans_of(server: Serve) -> list[int]:
    return [pid for pid in listening_pids(server.port) if pid != server.process.pid]


def test_a_busy_port_is_one_line_naming_it_and_its_holder(tmp_path):
    port = _free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = subprocess.run(
            [PARCELRISK, "serve", "--port", str(port)],
            env={**os.environ, "PARCELRISK_API_KEYS": f"scorer:{SCORER_KEY}"},
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path.cwd(),
        )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]], result.stderr  # one line, no traceback
    assert f"port {port} on 127.0.0.1 is in use (pid {os.getpid()}:" in lines[0]


@dataclass(frozen=True)
class AfterSigkill:
    workers: list[int]  # the killed server's
    own_sessions: bool  # each worker led a session of its own (circus)
    workers_gone: bool  # within 10 s of the kill
    port_freed: bool
    restarted: Serve  # on the same port; the tests below share it, the last one stops it


@pytest.fixture(scope="module")
def after_sigkill(start_serve) -> AfterSigkill:
    """`kill -9 -<pgid>` of a `serve` with two workers, then `serve` again on its port."""
    port = _free_port()
    server = start_serve(port)
    workers = server.workers()
    own_sessions = all(os.getsid(pid) == pid for pid in workers)
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=5)
    gone = wait_for(lambda: all(_gone(pid) for pid in workers), timeout=10)
    freed = gone and wait_for(lambda: _port_is_free(port), timeout=5)
    restarted = start_serve(port) if freed else server  # a start beside orphans would fail
    return AfterSigkill(workers, own_sessions, gone, freed, restarted)


def test_sigkill_of_serve_takes_its_workers_down(after_sigkill):
    assert len(after_sigkill.workers) == 2
    assert after_sigkill.own_sessions  # why the group kill alone does not reach them
    assert after_sigkill.workers_gone, [
        psutil.Process(pid).cmdline() for pid in after_sigkill.workers if not _gone(pid)
    ]
    assert after_sigkill.port_freed


def test_serve_starts_again_on_the_port_of_a_killed_one(after_sigkill):
    restarted = after_sigkill.restarted
    assert restarted.process.poll() is None
    assert len(restarted.workers()) == 2
    assert httpx.get(f"{restarted.url}/readyz", timeout=5).status_code == 200


def test_a_second_serve_beside_a_running_one_names_its_pids(after_sigkill):
    server = after_sigkill.restarted
    result = subprocess.run(
        [PARCELRISK, "serve", "--port", str(server.port)],
        env={**os.environ, "PARCELRISK_API_KEYS": f"scorer:{SCORER_KEY}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    # the arbiter and its workers hold the same listening socket
    holders = sorted([server.process.pid, *server.workers()])
    assert (
        f"port {server.port} on 127.0.0.1 is in use (pids {', '.join(map(str, holders))}:" in line
    )
    assert server.process.poll() is None  # and the running one is left alone


# Last in the module: it stops the server the tests above share.
def test_sigterm_lets_the_request_in_flight_finish_then_exits(after_sigkill, real_pipeline):
    server = after_sigkill.restarted
    workers = server.workers()
    # four requests of 1,000 at once: about a second of scoring, so the poll below sees it
    bodies = [
        {
            "declarations": json.loads(
                fresh_declarations(real_pipeline["history"], 1000, prefix=f"T{k}-").to_json(
                    orient="records", date_format="iso"
                )
            )
        }
        for k in range(4)
    ]
    answers: list[tuple[float, httpx.Response]] = []

    def post(body: dict) -> None:
        answer = httpx.post(
            f"{server.url}/score", json=body, headers={"X-API-Key": SCORER_KEY}, timeout=60
        )
        answers.append((time.monotonic(), answer))

    requests = [threading.Thread(target=post, args=(body,)) for body in bodies]
    for request in requests:
        request.start()

    def scoring() -> bool:
        # All four are inside the workers (BentoML's in-progress gauge, summed over them): a
        # request still being sent when SIGTERM comes was never in flight, and a closing server
        # may reset it (seen on a loaded CI machine, where the fourth body lagged the first).
        answered = len(answers)  # before the gauge: a request answered in between is in neither
        text = httpx.get(
            f"{server.url}/metrics", headers={"X-API-Key": SCORER_KEY}, timeout=30
        ).text
        in_progress = sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith(IN_PROGRESS) and 'endpoint="/score"' in line
        )
        # every request is inside a worker or answered already, and some are still in flight
        # (a loaded CI machine sent the fourth body after the first was answered: waiting for
        # all four in flight at once then never ended)
        return in_progress >= 1 and in_progress + answered >= len(bodies)

    assert wait_for(scoring, timeout=30), "the four requests never were all inside the workers"
    terminated_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    for request in requests:
        request.join(timeout=60)

    assert len(answers) == 4
    for _, answer in answers:
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["decisions"]) == 1000
    assert max(at for at, _ in answers) > terminated_at  # in flight when the signal came
    assert server.process.wait(timeout=30) == 0
    assert all(_gone(pid) for pid in workers)
    assert _port_is_free(server.port)
    # each worker removed its champion downloads (they were left under /tmp on every stop)
    models = server.log.with_name(server.log.stem.replace("serve-", "models-"))
    assert models.is_dir() and not list(models.glob("worker-*")), list(models.iterdir())
