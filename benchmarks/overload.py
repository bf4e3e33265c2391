"""Overload: many clients sending big requests to the real server, far beyond what it scores.

Starts ``parcelrisk serve`` (2 workers) on a champion (``benchmarks/serving.py`` builds a small
one unless ``--tracking-uri`` is given), then ``--clients`` closed-loop clients each send
requests of ``--rows`` fresh declarations (new ids every time: idempotency does not help) for
``--seconds``. Counts the answers by status, the declarations delivered (in 200 answers) and
the decisions the store holds afterwards: decisions stored but never delivered are the
dishonest ones (an auditor sees decisions no clearance system received). Useful throughput is
delivered declarations per second. Prints one JSON document.

    python benchmarks/overload.py [--clients 64 --rows 1000 --seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))


# Throwaway keys when none are configured: the benchmark makes its own data and decision
# store, so no key file is needed (keys already set in the environment are used instead).
# Without the audit key `parcelrisk serve` refuses to open a store on a fresh machine.
os.environ.setdefault("PARCELRISK_PSEUDONYM_KEY", "benchmark-throwaway-pseudonym-key-" + "0" * 32)
os.environ.setdefault("PARCELRISK_AUDIT_KEY", "benchmark-throwaway-audit-key-" + "0" * 32)


def _serving_benchmark():
    spec = importlib.util.spec_from_file_location(
        "serving_benchmark", ROOT / "benchmarks/serving.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _client(url: str, key: str, template: list[dict], rows: int, k: str, until: float):
    """One closed-loop client: (status counts, declarations delivered, latencies)."""
    import httpx

    statuses: Counter[int] = Counter()
    delivered, latencies, n = 0, [], 0
    async with httpx.AsyncClient(timeout=60) as client:
        while time.monotonic() < until:
            body = [
                {**template[(n * rows + i) % len(template)], "declaration_id": f"O{k}-{n}-{i}"}
                for i in range(rows)
            ]
            n += 1
            started = time.monotonic()
            try:
                r = await client.post(
                    f"{url}/score", json={"declarations": body}, headers={"X-API-Key": key}
                )
            except httpx.HTTPError:
                statuses[0] += 1
                continue
            latencies.append(time.monotonic() - started)
            statuses[r.status_code] += 1
            if r.status_code == 200:
                delivered += len(r.json()["decisions"])
            elif r.status_code == 429:  # as told, but not past the end of the run
                retry_after = float(r.headers.get("Retry-After", "1"))
                await asyncio.sleep(max(0.0, min(retry_after, until - time.monotonic())))
    return statuses, delivered, latencies


async def _overload(url: str, key: str, template: list[dict], args, phase: str) -> dict:
    """``args.clients`` clients for ``args.seconds``; ids start with ``phase`` (each phase
    sends new declarations: a repeated one would get its stored decision back)."""
    until = time.monotonic() + args.seconds
    started = time.monotonic()
    results = await asyncio.gather(
        *(_client(url, key, template, args.rows, f"{phase}{k}", until) for k in range(args.clients))
    )
    elapsed = time.monotonic() - started
    statuses: Counter[int] = Counter()
    delivered, latencies = 0, []
    for s, d, lat in results:
        statuses.update(s)
        delivered += d
        latencies += lat
    latencies.sort()
    return {
        "answers": {str(k): v for k, v in sorted(statuses.items())},
        "delivered_declarations": delivered,
        "useful_parcels_per_s": round(delivered / elapsed),
        "request_p50_s": round(latencies[len(latencies) // 2], 2) if latencies else None,
        "elapsed_s": round(elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri")
    parser.add_argument("--declarations", type=Path, help="history the requests are drawn from")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--port", type=int, default=3921)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rows", type=int, default=1000, help="declarations per request")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    if args.clients < 1 or args.rows < 1 or args.seconds <= 0:
        parser.error("--clients, --rows and --seconds must be positive")
    bench = _serving_benchmark()
    work = Path(tempfile.mkdtemp(prefix="parcelrisk-bench-overload-"))
    if args.tracking_uri:
        if not args.declarations:
            parser.error("--declarations is required with --tracking-uri")
        uri, declarations, params = args.tracking_uri, args.declarations, args.params
    else:
        uri, declarations, params = bench.build_champion(work)
    template = bench.fresh_payloads(declarations, 2000)
    url = f"http://127.0.0.1:{args.port}"
    proc = bench.start_server(args.port, uri, params, work, 2)
    try:
        bench.wait_ready(url, proc)
        # unloaded: one client, the same requests
        calm = asyncio.run(
            _overload(
                url,
                bench.SCORER_KEY,
                template,
                argparse.Namespace(
                    **{**vars(args), "clients": 1, "seconds": min(10.0, args.seconds)}
                ),
                "C",
            )
        )
        loaded = asyncio.run(_overload(url, bench.SCORER_KEY, template, args, "L"))
        time.sleep(2)  # batches still running when the clients stopped are recorded
    finally:
        bench.stop_server(proc)
    with sqlite3.connect(work / "audit.db") as db:
        stored = db.execute(
            "SELECT COUNT(*) FROM decisions WHERE declaration_id LIKE 'O%'"
        ).fetchone()[0]
        marked = db.execute("SELECT COUNT(*) FROM undelivered").fetchone()[0]
    delivered = calm["delivered_declarations"] + loaded["delivered_declarations"]
    print(
        json.dumps(
            {
                "benchmark": "overload",
                "clients": args.clients,
                "rows_per_request": args.rows,
                "unloaded": calm,
                "overloaded": loaded,
                "stored_decisions": stored,
                "delivered_decisions": delivered,
                "stored_not_delivered": stored - delivered,
                "marked_undelivered": marked,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
