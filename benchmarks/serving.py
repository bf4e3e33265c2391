"""Serving speed: the real HTTP server on loopback vs in-process scoring and LightGBM predict.

Starts ``parcelrisk serve`` as a subprocess (bounded run, stopped at the end), then measures
1. throughput with batches of 100 declarations (reasons for red/yellow), several clients;
2. single-declaration latency with 16 concurrent clients (p50/p99), and with single
   declarations arriving at fixed rates (open loop);
3. in-process: the whole scoring path (``serving.scoring.score_frame``) and LightGBM predict
   alone on the same rows, so HTTP/BentoML overhead shows as a ratio;
and prints one JSON document. Without ``--tracking-uri`` it first builds a small champion
(generate 20k parcels / 60 days -> features build -> train -> promote) in a temp directory.

    python benchmarks/serving.py [--tracking-uri URI --declarations FILE] [--seconds 10]
        [--profile DIR]   # py-spy stacks of each worker per load phase
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, its own folder comes first on sys.path, where benchmarks/features.py would
# shadow the features package: the repo root goes first and the script's folder goes.
sys.path[:] = [str(ROOT)] + [
    p for p in sys.path if Path(p or ".").resolve() not in (ROOT, Path(__file__).resolve().parent)
]

SCORER_KEY = "bench-scorer-key-0123456789"
BIN = Path(sys.executable).parent
# Declaration ids of the payloads start with this; every request sent gets ids of its own.
ID_PREFIX = b'"BENCH'
_SENT = itertools.count()


# Throwaway keys when none are configured: the benchmark makes its own data and decision
# store, so no key file is needed (keys already set in the environment are used instead).
# Without the audit key `parcelrisk serve` refuses to open a store on a fresh machine.
os.environ.setdefault("PARCELRISK_PSEUDONYM_KEY", "benchmark-throwaway-pseudonym-key-" + "0" * 32)
os.environ.setdefault("PARCELRISK_AUDIT_KEY", "benchmark-throwaway-audit-key-" + "0" * 32)


def absolute_sqlite(uri: str) -> str:
    """A relative ``sqlite:///file.db`` made absolute: the server runs in a temporary directory,
    where it would open an empty store (and its two workers race to create its tables)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def _run(args: list[str], cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def build_champion(work: Path, uri: str | None = None) -> tuple[str, Path, Path]:
    """A small champion in ``work``, registered at ``uri`` (default: a SQLite store in
    ``work``): returns (tracking uri, declarations file, params file)."""
    import yaml

    from features.params import params_for_copy

    params = params_for_copy(ROOT / "params.yaml")  # run from ``work``: files made absolute
    params["train"]["lightgbm"]["n_estimators"] = 300
    params_path = work / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    uri = uri or f"sqlite:///{work / 'mlflow.db'}"
    cli = str(BIN / "parcelrisk")
    _run(
        [cli, "generate", "--parcels", "20000", "--days", "60", "--seed", "11", "--out", "raw"],
        work,
    )
    _run([cli, "features", "build", "--declarations", "raw/declarations.parquet", "--out", "processed", "--params", str(params_path)], work)  # fmt: skip
    _run([cli, "train", "--features", "processed", "--params", str(params_path), "--tracking-uri", uri, "--metrics-out", "metrics.json"], work)  # fmt: skip
    _run([cli, "promote", "--params", str(params_path), "--tracking-uri", uri], work)
    return uri, work / "raw" / "declarations.parquet", params_path


def fresh_payloads(declarations_file: Path, n: int) -> list[dict]:
    """The last ``n`` declarations re-issued a day after the history ends (as new arrivals)."""
    import pandas as pd

    from features.intake.io import read_declarations

    history, _ = read_declarations(declarations_file, with_outcomes=False)
    out = history.tail(n).reset_index(drop=True)
    start = history["declared_at"].max() + pd.Timedelta(days=1)
    out["declared_at"] = start + pd.to_timedelta(np.arange(n), unit="s")
    out["declaration_id"] = [f"{ID_PREFIX[1:].decode()}{i:07d}" for i in range(n)]
    return json.loads(out.to_json(orient="records", date_format="iso"))


def start_server(
    port: int, uri: str, params: Path, work: Path, workers: int, audit_db: str | None = None
) -> subprocess.Popen:
    """``parcelrisk serve`` in ``work`` (its log: serve.log); decisions in ``audit_db``
    (default: a SQLite file in ``work``)."""
    env = {
        **os.environ,
        "PARCELRISK_API_KEYS": f"scorer:{SCORER_KEY}",
        "PARCELRISK_AUDIT_DB": audit_db or str(work / "audit.db"),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "BENTOML_DO_NOT_TRACK": "True",
    }
    args = [str(BIN / "parcelrisk"), "serve", "--port", str(port), "--tracking-uri", uri]
    args += ["--params", str(params), "--workers", str(workers)]
    log = (work / "serve.log").open("w")
    return subprocess.Popen(
        args, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # our own session: the arbiter and its workers
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 180) -> float:
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError("server exited during start-up; see serve.log")
        try:
            r = httpx.get(f"{base}/readyz", timeout=2)
            if r.status_code == 200:
                return time.perf_counter() - started
            if r.status_code == 503 and "reason" in r.text:
                raise RuntimeError(f"server not ready: {r.text}")
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError("server not ready in time")


class _Connection:
    """One keep-alive HTTP/1.1 connection with the least client work per request.

    httpx spends about half a millisecond of CPU per request; on this 2-core machine the
    load generator shares the cores with the server, so a heavy client shows up as server
    latency. Requests are pre-built bytes (ids renamed per send); a response is its status line, headers and
    ``Content-Length`` bytes of body (the service always sends a length).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection(host, port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                raise RuntimeError("chunked responses are not expected from /score")
        return int(head[9:12]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def _renamed(raw: bytes) -> bytes:
    """``raw`` with declaration ids no request has sent before (same length, so the same
    Content-Length): the service answers a declaration it has decided before with that
    decision (idempotent retries), so re-sent bodies would measure look-ups, not scoring."""
    n = next(_SENT)
    tag = "".join("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[n // 36**k % 36] for k in range(4))
    return raw.replace(ID_PREFIX, b'"R' + tag.encode())


def _post(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: bench", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _closed_loop(
    host: str, port: int, requests: list[bytes], clients: int, seconds: float
) -> tuple[list[float], list[tuple[int, bytes]]]:
    """``clients`` connections, each sending the next request as soon as it has an answer."""
    # One at a time, as clients arriving independently would: opened in a burst, the first
    # worker to wake accepts them all (a shared listening socket) and the other idles.
    connections = []
    for _ in range(clients):
        connections.append(await _Connection.open(host, port))
        await asyncio.sleep(0.02)
    latencies: list[float] = []
    responses: list[tuple[int, bytes]] = []
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        i = k
        while time.perf_counter() < deadline:
            raw = _renamed(requests[i % len(requests)])
            t0 = time.perf_counter()
            responses.append(await connections[k].request(raw))
            latencies.append(time.perf_counter() - t0)
            i += clients

    try:
        await asyncio.gather(*(client(k) for k in range(clients)))
    finally:
        for connection in connections:
            connection.close()
    return latencies, responses


async def _open_loop(
    host: str, port: int, requests: list[bytes], rate: float, seconds: float
) -> tuple[list[float], int]:
    """Requests sent at a fixed ``rate`` whatever the answers, as independent parcels arrive.

    Latency runs from each request's scheduled time (no coordinated omission: a stalled server
    cannot slow the arrivals down and hide its own delay). Returns latencies and errors.
    """
    pool: asyncio.Queue[_Connection] = asyncio.Queue()
    opened: list[_Connection] = []
    latencies: list[float] = []
    errors = 0

    async def one(raw: bytes, scheduled: float) -> None:
        nonlocal errors
        connection = pool.get_nowait() if not pool.empty() else None
        if connection is None:
            connection = await _Connection.open(host, port)
            opened.append(connection)
        status, _ = await connection.request(raw)
        latencies.append(time.perf_counter() - scheduled)
        errors += status != 200
        pool.put_nowait(connection)

    start = time.perf_counter()
    tasks = []
    for i in range(int(rate * seconds)):
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        raw = _renamed(requests[i % len(requests)])
        tasks.append(asyncio.ensure_future(one(raw, scheduled)))
    await asyncio.gather(*tasks)
    for connection in opened:
        connection.close()
    return latencies, errors


def _floor(host: str, port: int, clients: int, seconds: float) -> list[float]:
    """Latencies of GET /livez under the same load: the HTTP stack and client, no scoring."""
    raw = b"GET /livez HTTP/1.1\r\nHost: bench\r\n\r\n"
    return asyncio.run(_closed_loop(host, port, [raw], clients, seconds))[0]


def _load(
    host: str, port: int, bodies: list[bytes], clients: int, seconds: float
) -> tuple[list[float], int, int, dict[str, int]]:
    """``clients`` closed-loop clients posting ``bodies`` round-robin for ``seconds``."""
    headers = {"X-API-Key": SCORER_KEY, "Content-Type": "application/json"}
    requests = [_post("/score", body, headers) for body in bodies]
    latencies, responses = asyncio.run(_closed_loop(host, port, requests, clients, seconds))
    parcels = errors = 0
    lanes: dict[str, int] = {}
    for status, body in responses:
        if status != 200:
            errors += 1
            continue
        for decision in json.loads(body)["decisions"]:
            parcels += 1
            lanes[decision["lane"]] = lanes.get(decision["lane"], 0) + 1
    return latencies, parcels, errors, lanes


class _Profiles:
    """py-spy sampling every worker during a load phase (``--profile DIR``): one file of
    collapsed stacks per phase and worker, ``PHASE-PID.txt`` (``py-spy record -f raw``), to
    break a worker's CPU down by function. Off (no-op) without a directory."""

    def __init__(self, directory: Path | None, server: subprocess.Popen) -> None:
        self.directory, self.server = directory, server
        self.running: list[subprocess.Popen] = []
        if directory is not None:
            if shutil.which("py-spy") is None and not (BIN / "py-spy").exists():
                raise SystemExit("--profile needs py-spy (pip install py-spy)")
            directory.mkdir(parents=True, exist_ok=True)

    def start(self, phase: str, seconds: float) -> None:
        if self.directory is None:
            return
        spy = str(BIN / "py-spy") if (BIN / "py-spy").exists() else "py-spy"
        children = Path(f"/proc/{self.server.pid}/task/{self.server.pid}/children")
        for pid in children.read_text().split():  # the workers (Linux)
            out = self.directory / f"{phase}-{pid}.txt"
            args = [spy, "record", "-p", pid, "-d", str(max(1, int(seconds))), "-r", "200"]
            args += ["-f", "raw", "--nonblocking", "-o", str(out)]
            self.running.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))

    def wait(self) -> None:
        for spy in self.running:
            spy.wait()
        self.running.clear()


def _ms(values: list[float], q: float) -> float:
    return round(float(np.quantile(values, q)) * 1000, 2) if values else float("nan")


def server_side(base: str) -> dict[str, float]:
    """Cumulative batch counts, rows and scoring seconds from the service's own metrics."""
    import httpx

    text = httpx.get(f"{base}/metrics", headers={"X-API-Key": SCORER_KEY}, timeout=5).text
    sums = {"batches": 0.0, "rows": 0.0, "seconds": 0.0}
    names = {
        "parcelrisk_scoring_seconds_count": "batches",
        "parcelrisk_batch_rows_sum": "rows",
        "parcelrisk_scoring_seconds_sum": "seconds",
    }
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in names:
            sums[names[name]] += float(line.rsplit(" ", 1)[1])
    return sums


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Merged batches of one phase: how many, rows per batch, scoring time per batch."""
    batches = after["batches"] - before["batches"]
    return {
        "batches": int(batches),
        "mean_batch_rows": round((after["rows"] - before["rows"]) / max(batches, 1), 1),
        "mean_batch_scoring_ms": round(
            1000 * (after["seconds"] - before["seconds"]) / max(batches, 1), 2
        ),
    }


def in_process(uri: str, params: Path, payloads: list[dict], work: Path) -> dict[str, float]:
    """Same rows, no HTTP: the full scoring path and LightGBM predict alone (one thread).

    The path starts, as in the service, from validated ``Declaration`` models; it excludes
    the audit write.
    """
    from features.intake.columns import RecordColumns
    from features.intake.contract import Declaration
    from features.params import load_settings
    from serving.scoring import load_runtime, score_frame

    runtime = load_runtime(load_settings(params, must_exist=True), uri, work / "inproc-model")
    models = [Declaration.model_validate(p) for p in payloads[:1000]]
    frames = [RecordColumns(models[i : i + 100], runtime.contract) for i in range(0, 1000, 100)]
    manifest = runtime.model.manifest  # the model's features (it may use a subset)
    X = np.vstack(
        [
            manifest.matrix_of(v.values, len(v))
            for v in (runtime.compute_features(f)[0] for f in frames)
        ]
    )

    def rate(fn, rows: int, seconds: float = 3.0) -> float:
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            fn()
            n += rows
        return n / (time.perf_counter() - started)

    predict_100 = rate(
        lambda: [runtime.model.score(X[i : i + 100]) for i in range(0, 1000, 100)], 1000
    )
    predict_1 = rate(lambda: runtime.model.score(X[:1]), 1, 1.0)
    path_100 = rate(lambda: [score_frame(f, runtime) for f in frames], 1000)
    features_100 = rate(lambda: [runtime.compute_features(f) for f in frames], 1000)
    singles = [RecordColumns([m], runtime.contract) for m in models[:200]]
    path_1 = rate(lambda: [score_frame(one, runtime) for one in singles], len(singles))
    return {
        "lightgbm_predict_parcels_per_s_batch100": round(predict_100),
        "lightgbm_predict_parcels_per_s_single": round(predict_1),
        "online_features_parcels_per_s_batch100": round(features_100),
        "scoring_path_parcels_per_s_batch100": round(path_100),
        "scoring_path_ms_single": round(1000 / path_1, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri")
    parser.add_argument("--declarations", type=Path, help="history the requests are drawn from")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--port", type=int, default=3917)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0, help="per load phase")
    parser.add_argument(
        "--profile",
        type=Path,
        help="sample the workers with py-spy during each load phase; stacks written here",
    )
    parser.add_argument(
        "--batch-clients",
        type=int,
        nargs="+",
        default=[4, 16],
        help="concurrent batch clients per run (concurrent requests are scored together)",
    )
    parser.add_argument(
        "--open-loop-rates",
        type=float,
        nargs="*",
        default=[150.0, 450.0],
        help="single-declaration arrivals per second (EU-wide average ~150/s; peaks ~3x)",
    )
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    work = Path(tempfile.mkdtemp(prefix="parcelrisk-bench-serving-"))
    try:
        if args.tracking_uri:
            if not args.declarations:
                parser.error("--declarations is required with --tracking-uri")
            uri, declarations, params = (
                absolute_sqlite(args.tracking_uri),
                args.declarations,
                args.params,
            )
        else:
            t0 = time.perf_counter()
            uri, declarations, params = build_champion(work)
            print(f"built a champion in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        payloads = fresh_payloads(declarations, 2000)
        batch_bodies = [
            json.dumps({"declarations": payloads[i : i + 100]}).encode()
            for i in range(0, len(payloads), 100)
        ]
        single_bodies = [json.dumps({"declarations": [p]}).encode() for p in payloads]

        base = f"http://127.0.0.1:{args.port}"
        proc = start_server(args.port, uri, params, work, args.workers)
        try:
            ready_s = wait_ready(base, proc)
            host, port = "127.0.0.1", args.port
            _load(host, port, batch_bodies[:2], 2, 2.0)  # warm-up
            profiles = _Profiles(args.profile, proc)
            batch_runs = []
            for clients in args.batch_clients:
                before = server_side(base)
                profiles.start(f"batch100-{clients}", args.seconds)
                lat_b, parcels_b, err_b, lanes = _load(
                    host, port, batch_bodies, clients, args.seconds
                )
                profiles.wait()
                batch_runs.append(
                    {
                        "clients": clients,
                        "parcels_per_s": round(parcels_b / args.seconds),
                        "request_p50_ms": _ms(lat_b, 0.5),
                        "request_p99_ms": _ms(lat_b, 0.99),
                        "errors": err_b,
                        "lane_share": {
                            k: round(v / max(parcels_b, 1), 4) for k, v in sorted(lanes.items())
                        },
                        "server": _delta(before, server_side(base)),
                    }
                )
            # warm-up for this traffic shape (the batch phases leave big batches in flight)
            _load(host, port, single_bodies[-200:], 16, 2.0)
            before = server_side(base)
            profiles.start("single-16", args.seconds)
            lat_s, parcels_s, err_s, _ = _load(host, port, single_bodies, 16, args.seconds)
            profiles.wait()
            single_server = _delta(before, server_side(base))
            floor = _floor(host, port, 16, min(args.seconds, 5.0))
            single_requests = [
                _post("/score", body, {"X-API-Key": SCORER_KEY}) for body in single_bodies
            ]
            open_loop = []
            for rate in args.open_loop_rates:
                lat_o, err_o = asyncio.run(
                    _open_loop(host, port, single_requests, rate, args.seconds)
                )
                open_loop.append(
                    {
                        "arrivals_per_s": rate,
                        "p50_ms": _ms(lat_o, 0.5),
                        "p90_ms": _ms(lat_o, 0.9),
                        "p99_ms": _ms(lat_o, 0.99),
                        "errors": err_o,
                    }
                )
        finally:
            stop_server(proc)

        inproc = in_process(uri, params, payloads, work)
        throughput = max(run["parcels_per_s"] for run in batch_runs)
        result = {
            "benchmark": "serving",
            "machine_cores": os.cpu_count(),
            "workers": args.workers,
            "server_ready_seconds": round(ready_s, 1),
            "batch100": {"target_parcels_per_s": 3000, "runs": batch_runs},
            "single": {
                "clients": 16,
                "requests_per_s": round(parcels_s / args.seconds),
                "p50_ms": _ms(lat_s, 0.5),
                "p90_ms": _ms(lat_s, 0.9),
                "p99_ms": _ms(lat_s, 0.99),
                "target_p99_ms": 20,
                "errors": err_s,
                "server": single_server,
                # the same 16 clients on GET /livez: what HTTP and the client cost with no work
                "http_floor_livez": {
                    "requests_per_s": round(len(floor) / min(args.seconds, 5.0)),
                    "p50_ms": _ms(floor, 0.5),
                    "p99_ms": _ms(floor, 0.99),
                },
            },
            # single declarations arriving at a fixed rate (latency from the scheduled time)
            "single_open_loop": open_loop,
            "in_process": inproc,
            "best_http_vs_lightgbm_predict_ratio": round(
                inproc["lightgbm_predict_parcels_per_s_batch100"] / max(throughput, 1), 1
            ),
            "best_http_vs_scoring_path_ratio": round(
                inproc["scoring_path_parcels_per_s_batch100"] / max(throughput, 1), 2
            ),
            # the target (>= 0.5): HTTP batches of 100 against what the workers could
            # score in-process, one core each (the in-process path runs on one thread)
            "http_batch_vs_workers_scoring_path": round(
                throughput / max(args.workers * inproc["scoring_path_parcels_per_s_batch100"], 1),
                2,
            ),
        }
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
