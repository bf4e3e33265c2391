"""Serving two ways, one champion: 2 workers on one socket vs 2 replicas behind nginx.

The workers of one `parcelrisk serve` share a listening socket, so connections split between
them as the kernel hands them out (unevenly: 8/8 to 12/4 of 16 measured), which bounds the
tail latency. A team's services (`scripts/team.sh`) run single-worker replicas behind nginx,
which sends each request to the replica with the fewest in flight. Arms, each alone on the
machine in turn:

- ``one_socket_sqlite``: `parcelrisk serve --workers 2`, decisions in a SQLite file (today's);
- ``one_socket_postgres``: the same server on the team's PostgreSQL decision store, so the
  store's cost is told apart from the balancer's;
- ``nginx_replicas``: `scripts/team.sh` with 2 replicas behind nginx, the same PostgreSQL store.

Each takes single declarations from 16 concurrent clients (throughput, p50, p99) and batches of
100 from 4 and 16 clients (parcels/s), with the load generator and the request renaming of
``benchmarks/serving.py`` (every request carries declaration ids of its own). The champion is
built once (20k parcels, 60 days) and registered in the team's MLflow, where every arm loads it.
The load generator shares the 2 cores with the servers: run it on a quiet machine.

    python benchmarks/serving_topologies.py [--seconds 10] [--arms ARM ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# As in benchmarks/serving.py: the repository first, this folder out (its features.py would
# shadow the features package), then the serving benchmark as a module of the benchmarks folder.
sys.path[:] = [str(ROOT)] + [
    p for p in sys.path if Path(p or ".").resolve() not in (ROOT, Path(__file__).resolve().parent)
]

import benchmarks.serving as bench  # noqa: E402  (the load generator and server helpers)

TEAM = ROOT / "scripts" / "team.sh"
ARMS = ("one_socket_sqlite", "one_socket_postgres", "nginx_replicas")

# Throwaway keys when none are configured: the benchmark makes its own data and store.
os.environ.setdefault("PARCELRISK_AUDIT_KEY", "benchmark-throwaway-audit-key-" + "0" * 32)


def _free_port(pair: bool = False) -> int:
    """A free loopback port (with ``pair``: the next one free too, for two replicas)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not pair:
            return port
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free ports")


class Team:
    """`scripts/team.sh` on free ports in a directory of its own."""

    def __init__(self, directory: Path, api_keys: str) -> None:
        self.ports = {
            "PARCELRISK_TEAM_PORT": _free_port(),
            "PARCELRISK_TEAM_REPLICA_PORT": _free_port(pair=True),
            "PARCELRISK_TEAM_MLFLOW_PORT": _free_port(),
            "PARCELRISK_TEAM_PG_PORT": _free_port(),
        }
        self.env = {
            **os.environ,
            **{name: str(port) for name, port in self.ports.items()},
            "PARCELRISK_TEAM_DIR": str(directory),
            "PARCELRISK_PYTHON": sys.executable,
            "PARCELRISK_API_KEYS": api_keys,
        }
        self.env.pop("PARCELRISK_API_KEYS_FILE", None)
        self.exports: dict[str, str] = {}

    def run(self, command: str, **env: str) -> str:
        done = subprocess.run(
            ["bash", str(TEAM), command],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise SystemExit(f"scripts/team.sh {command} failed:\n{done.stderr[-3000:]}")
        self.exports.update(re.findall(r"export (\w+)=(\S+)", done.stdout))
        return done.stdout

    @property
    def front_port(self) -> int:
        return self.ports["PARCELRISK_TEAM_PORT"]

    def replica_urls(self, n: int) -> list[str]:
        first = self.ports["PARCELRISK_TEAM_REPLICA_PORT"]
        return [f"http://127.0.0.1:{first + i}" for i in range(n)]


def _wait_ready(urls: list[str], timeout: float = 240) -> float:
    import httpx

    started = time.perf_counter()
    waiting = list(urls)
    while waiting:
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"not ready in {timeout:.0f} s: {waiting}")
        try:
            if httpx.get(f"{waiting[0]}/readyz", timeout=2).status_code == 200:
                waiting.pop(0)
                continue
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    return time.perf_counter() - started


def measure(
    port: int,
    batch_bodies: list[bytes],
    single_bodies: list[bytes],
    batch_clients: list[int],
    seconds: float,
    servers: list[str],
) -> dict:
    """The load phases on 127.0.0.1:``port``; ``servers``: the processes whose own metrics
    tell how the single-declaration requests were shared out (one server: no split)."""
    host = "127.0.0.1"
    bench._load(host, port, batch_bodies[:2], 2, 2.0)  # warm-up
    batches = []
    for clients in batch_clients:
        latencies, parcels, errors, _ = bench._load(host, port, batch_bodies, clients, seconds)
        batches.append(
            {
                "clients": clients,
                "parcels_per_s": round(parcels / seconds),
                "request_p50_ms": bench._ms(latencies, 0.5),
                "request_p99_ms": bench._ms(latencies, 0.99),
                "errors": errors,
            }
        )
    bench._load(host, port, single_bodies[-200:], 16, 2.0)  # warm-up for this traffic shape
    before = [bench.server_side(url) for url in servers]
    latencies, answered, errors, _ = bench._load(host, port, single_bodies, 16, seconds)
    after = [bench.server_side(url) for url in servers]
    single = {
        "clients": 16,
        "requests_per_s": round(answered / seconds),
        "p50_ms": bench._ms(latencies, 0.5),
        "p90_ms": bench._ms(latencies, 0.9),
        "p99_ms": bench._ms(latencies, 0.99),
        "errors": errors,
    }
    if len(servers) > 1:
        single["requests_per_replica"] = [
            int(a["rows"] - b["rows"]) for b, a in zip(before, after, strict=True)
        ]
    return {"single": single, "batch100": batches}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per load phase")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--batch-clients", type=int, nargs="+", default=[4, 16])
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    work = Path(tempfile.mkdtemp(prefix="parcelrisk-bench-topologies-"))
    work.chmod(0o755)  # as root the database runs as the postgres user, which must enter it
    team = Team(work / "team", f"scorer:{bench.SCORER_KEY}")
    try:
        # the database and MLflow first (no replicas): the champion is registered there
        team.run("up", PARCELRISK_TEAM_REPLICAS="0")
        os.environ["PGPASSFILE"] = team.exports["PGPASSFILE"]  # the servers started here
        # the team's MLflow takes no request without its credential (`up` prints the exports;
        # the password's is a `$(cat FILE)`)
        os.environ["MLFLOW_TRACKING_USERNAME"] = team.exports["MLFLOW_TRACKING_USERNAME"]
        os.environ["MLFLOW_TRACKING_PASSWORD"] = (work / "team" / "mlflow-password").read_text()
        postgres_store = team.exports["PARCELRISK_AUDIT_DB"]
        tracking_uri = team.exports["MLFLOW_TRACKING_URI"]
        t0 = time.perf_counter()
        uri, declarations, params = bench.build_champion(work, tracking_uri)
        print(f"built a champion in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        payloads = bench.fresh_payloads(declarations, 2000)
        batch_bodies = [
            json.dumps({"declarations": payloads[i : i + 100]}).encode()
            for i in range(0, len(payloads), 100)
        ]
        single_bodies = [json.dumps({"declarations": [p]}).encode() for p in payloads]
        phases = (batch_bodies, single_bodies, args.batch_clients, args.seconds)

        arms: dict[str, dict] = {}
        for arm in args.arms:
            print(f"arm {arm}", file=sys.stderr)
            if arm == "nginx_replicas":
                started = time.perf_counter()
                team.run("up", PARCELRISK_TEAM_REPLICAS="2", PARCELRISK_TEAM_PARAMS=str(params))
                replicas = team.replica_urls(2)
                _wait_ready(replicas)
                ready_s = time.perf_counter() - started  # `up` and the loads, as for one server
                result = measure(team.front_port, *phases, servers=replicas)
                team.run("up", PARCELRISK_TEAM_REPLICAS="0")  # the replicas stop: next arm alone
                arms[arm] = {"store": "postgresql", "ready_seconds": round(ready_s, 1), **result}
                continue
            store = postgres_store if arm.endswith("postgres") else None
            directory = work / arm
            directory.mkdir()
            port = _free_port()
            proc = bench.start_server(port, uri, params, directory, 2, audit_db=store)
            try:
                ready_s = bench.wait_ready(f"http://127.0.0.1:{port}", proc)
                result = measure(port, *phases, servers=[f"http://127.0.0.1:{port}"])
            finally:
                bench.stop_server(proc)
            arms[arm] = {
                "store": "postgresql" if store else "sqlite",
                "ready_seconds": round(ready_s, 1),
                **result,
            }
        print(
            json.dumps(
                {
                    "benchmark": "serving_topologies",
                    "machine_cores": os.cpu_count(),
                    "workers_or_replicas": 2,
                    "seconds_per_phase": args.seconds,
                    "targets": {"single_p99_ms_behind_nginx": 10, "batch100_parcels_per_s": 11000},
                    "arms": arms,
                },
                indent=2,
            )
        )
    finally:
        team.run("down")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
