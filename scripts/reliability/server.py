"""The real `parcelrisk serve`, started, killed and restarted by the reliability checks.

One small champion (20k generated parcels, the benchmarks' recipe) is built once per run and
shared by every check; each check starts its own server on its own decision store.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
KEYS = {
    "scorer": "rel-scorer-key-0123456789abcdef",
    "auditor": "rel-auditor-key-0123456789abcdef",
    "inspector": "rel-inspector-key-0123456789abcdef",
}
API_KEYS = ",".join(f"{role}:{key}" for role, key in KEYS.items())


@functools.cache
def _serving_benchmark() -> Any:
    spec = importlib.util.spec_from_file_location(
        "serving_benchmark", ROOT / "benchmarks/serving.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Champion:
    """A promoted champion in a temporary MLflow store, and the history it was trained on."""

    tracking_uri: str
    declarations: Path
    params: Path


def build_champion(work: Path) -> Champion:
    """generate -> features build -> train -> promote in ``work`` (about a minute here)."""
    work.mkdir(parents=True, exist_ok=True)
    uri, declarations, params = _serving_benchmark().build_champion(work)
    return Champion(uri, declarations, params)


def fresh_payloads(champion: Champion, n: int) -> list[dict]:
    """``n`` declarations re-issued a day after the history ends (ids BENCH0000000...)."""
    return _serving_benchmark().fresh_payloads(champion.declarations, n)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RealServer:
    """`parcelrisk serve` in its own session on a free port, with its own decision store.

    ``serve`` overrides keys of the params' ``serve:`` section (e.g. ``request_timeout_s``).
    Restarting keeps the same port and store: that is what the kill checks need. A new
    instance starts from an empty ``work / name``.
    """

    def __init__(
        self,
        champion: Champion,
        work: Path,
        *,
        workers: int = 2,
        serve: dict[str, Any] | None = None,
        name: str = "server",
    ) -> None:
        self.champion = champion
        self.work = work / name
        # a fresh store and log per check: a --work reused from an earlier run would otherwise
        # hand the server that run's decisions (replayed into its live state at start-up) and
        # the check's counts of what was stored would include them
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.workers = workers
        self.port = free_port()
        self.audit_db = self.work / "audit.db"
        self.log = self.work / "serve.log"
        params = yaml.safe_load(champion.params.read_text())
        params["serve"] = {**params.get("serve", {}), "champion_check_s": 0, **(serve or {})}
        self.params = self.work / "params.yaml"
        self.params.write_text(yaml.safe_dump(params))
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> float:
        """Start and wait until /readyz answers 200; returns the seconds it took."""
        # loading the benchmark sets the throwaway pseudonym key the champion was built with
        # (unless one is configured): a run given --champion may start a server before
        # anything else loaded it, and that server would refuse the champion's entity state
        _serving_benchmark()
        env = {
            **os.environ,
            "PARCELRISK_API_KEYS": API_KEYS,
            "PARCELRISK_AUDIT_DB": str(self.audit_db),
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "BENTOML_DO_NOT_TRACK": "True",
            "BENTOML_HOME": str(self.work / "bentoml"),
        }
        command = [
            str(BIN / "parcelrisk"),
            "serve",
            *("--port", str(self.port), "--tracking-uri", self.champion.tracking_uri),
            *("--params", str(self.params), "--workers", str(self.workers)),
            *("--model-dir", str(self.work / "models")),
        ]
        self.starts += 1
        with self.log.open("a") as out:
            out.write(f"\n--- start {self.starts} ---\n")
            out.flush()
            self.process = subprocess.Popen(
                command,
                cwd=self.work,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited at start-up: {self.tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"server not ready in {timeout:.0f} s: {self.tail()}")

    def tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def kill9(self) -> None:
        """SIGKILL of the `serve` process (the arbiter): no handler runs there; its workers
        must stop with it (serving.process.exit_with_parent)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.wait_port_free()

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (drain, close the stores); SIGKILL of the whole session if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(timeout=10)

    def wait_port_free(self, timeout: float = 30) -> bool:
        """Until nothing listens on the port any more (the workers of a killed arbiter)."""
        from serving.process import listening_pids

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not listening_pids(self.port):
                return True
            time.sleep(0.2)
        return False

    def worker_pids(self) -> list[int]:
        import psutil

        if self.process is None or self.process.poll() is not None:
            return []
        return [p.pid for p in psutil.Process(self.process.pid).children(recursive=True)]

    def rss_mb(self) -> float:
        """Resident memory of `serve` and its workers, MB."""
        import psutil

        if self.process is None or self.process.poll() is not None:
            return 0.0
        parent = psutil.Process(self.process.pid)
        total = 0
        for p in [parent, *parent.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total / 2**20

    def __enter__(self) -> RealServer:
        try:
            self.start()
        except BaseException:
            self.stop()  # a server that never became ready is still running: not left behind
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        from serving.process import listening_pids

        for pid in listening_pids(self.port):  # never leave a worker behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
