"""Hostile requests against the real server: every case of tests/corpus/hostile.py gets an allowed
status (a clear 4xx, or 200 where the input is legitimate), never a 5xx or a hang, and the
server's log holds none of the requests' values (markers, keys) and no traceback.

The same corpus runs in process in tests/test_serving/test_hostile_corpus.py; here it goes
through uvicorn, the worker processes and the real champion's features.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from scripts.reliability.server import KEYS, Champion, RealServer, fresh_payloads
from tests.corpus.hostile import CASES, Answer, HostileCase, Request, Setting, judge

BUDGET_S = 600  # the whole corpus; one case never waits longer than the request timeout + 20 s
MAX_FAILURES = 20


def run(champion: Champion, work: Path, quick: bool = False) -> dict[str, Any]:
    """Every case once (``quick`` changes nothing: the corpus takes ~15 s after start-up)."""
    from features.params import load_settings

    pool = fresh_payloads(champion, 1_100)
    with RealServer(champion, work, name="hostile") as server:
        serve = load_settings(server.params).serve
        timeout_s = serve.request_timeout_s  # what answers the slow body
        setting = Setting(
            declarations=lambda n, prefix: [
                {**pool[i % len(pool)], "declaration_id": f"{prefix}-{i}"} for i in range(n)
            ],
            keys=KEYS,
            max_body_bytes=serve.max_body_bytes,
            max_batch=serve.max_batch,
        )
        statuses: Counter[int] = Counter()
        failures: list[str] = []
        unexpected_5xx = hangs = 0
        started = time.monotonic()
        with httpx.Client(base_url=server.url, timeout=timeout_s + 20) as client:
            for case in CASES:
                if time.monotonic() - started > BUDGET_S:
                    failures.append(f"time budget of {BUDGET_S} s spent before {case.name}")
                    break
                answers = _send(client, server.port, case, setting, timeout_s + 20)
                statuses.update(a.status for a in answers)
                unexpected_5xx += sum(
                    a.status >= 500 and a.status not in case.allowed for a in answers
                )
                hangs += sum(a.status == 0 for a in answers)
                failures += judge(case, setting, answers)
            failures += _still_serving(client, setting)
            flood = _slow_bodies_hold_no_slot(client, server.port, setting, serve.max_concurrency)
            failures += flood.pop("failures")
        seconds = time.monotonic() - started
    log = server.log.read_text(errors="replace")
    leaked = [c.name for c in CASES if c.marker.lower() in log.lower()]
    keys_logged = [role for role, key in KEYS.items() if key in log]
    tracebacks = log.count("Traceback (most recent call last)")
    failures += [f"{name}: its marker is in the server log" for name in leaked]
    failures += [f"the {role} key is in the server log" for role in keys_logged]
    if tracebacks:
        failures.append(f"{tracebacks} traceback(s) in the server log")
    return {
        "ok": not failures,
        "cases": len(CASES),
        "answers": {str(k): v for k, v in sorted(statuses.items())},
        "unexpected_5xx": unexpected_5xx,  # the slow body's 504 is its allowed answer
        "no_answer": hangs,
        "slow_bodies": flood,
        "markers_in_log": len(leaked),
        "tracebacks_in_log": tracebacks,
        "seconds": round(seconds, 1),
        "failures": failures[:MAX_FAILURES],
    }


def _send(
    client: httpx.Client, port: int, case: HostileCase, setting: Setting, wait_s: float
) -> list[Answer]:
    """The case's request(s); a transport failure or a hang is an answer of status 0."""
    request = case.request(setting)
    answers = []
    for _ in range(case.sends):
        if request.declared_length is not None:
            answers.append(_send_slow(port, request, wait_s))
            continue
        try:
            r = client.request(
                request.method, request.path, content=request.body, headers=request.headers
            )
        except httpx.HTTPError as exc:
            answers.append(Answer(0, f"no answer: {type(exc).__name__}".encode()))
            continue
        answers.append(Answer(r.status_code, r.content, dict(r.headers)))
    return answers


def _send_slow(port: int, request: Request, wait_s: float) -> Answer:
    """Headers and part of the body over a raw socket, then silence: who answers, and when."""
    head = [f"{request.method} {request.path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    head += [f"{k}: {v}" for k, v in request.headers.items()]
    head += [f"Content-Length: {request.declared_length}", "", ""]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as s:
            s.sendall("\r\n".join(head).encode() + (request.body or b""))
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65_536)
                if not chunk:
                    break
                data += chunk
            header, _, body = data.partition(b"\r\n\r\n")
            lines = header.decode("latin-1").split("\r\n")
            fields = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
            fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
            length = int(fields.get("content-length", 0))
            while len(body) < length:
                chunk = s.recv(65_536)
                if not chunk:
                    break
                body += chunk
    except TimeoutError:
        return Answer(0, f"no answer within {wait_s:g} s".encode())
    except OSError as exc:
        return Answer(0, f"no answer: {exc}".encode())
    parts = lines[0].split(" ") if lines and lines[0] else []
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return Answer(status, body, fields)


def _still_serving(client: httpx.Client, setting: Setting) -> list[str]:
    """After the corpus: a legitimate declaration is scored and reads back intact."""
    body = {"declarations": setting.declarations(1, "after-hostile")}
    try:
        r = client.post("/score", json=body, headers={"X-API-Key": KEYS["scorer"]})
        if r.status_code != 200:
            return [f"after the corpus /score answers {r.status_code}: {r.text[:160]}"]
        decision_id = r.json()["decisions"][0]["decision_id"]
        stored = client.get(
            "/decision",
            params={"decision_id": decision_id},
            headers={"X-API-Key": KEYS["auditor"]},
        )
    except httpx.HTTPError as exc:
        return [f"after the corpus the server does not answer: {type(exc).__name__}"]
    if stored.status_code != 200 or stored.json().get("intact") is not True:
        return [f"after the corpus GET /decision answers {stored.status_code}: {stored.text[:160]}"]
    return []


def _slow_bodies_hold_no_slot(
    client: httpx.Client, port: int, setting: Setting, max_concurrency: int
) -> dict[str, Any]:
    """More requests whose body never comes than the service has concurrency slots, with a
    valid key; then real requests: answered 200, not 429 (serving.patches, 8.)."""
    body = b'{"declarations": ['
    head = (
        f"POST /score HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-API-Key: {setting.keys['scorer']}"
        f"\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n"
    ).encode()
    opened: list[socket.socket] = []
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    try:
        for _ in range(max_concurrency + 100):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(head + body)
            opened.append(s)
        time.sleep(1.0)  # every one of them read up to its body by a worker
        for i in range(10):
            declarations = setting.declarations(1, f"after-flood-{i}")
            r = client.post(
                "/score",
                json={"declarations": declarations},
                headers={"X-API-Key": setting.keys["scorer"]},
            )
            statuses[r.status_code] += 1
    finally:
        for s in opened:
            s.close()
    if statuses != Counter({200: 10}):
        failures.append(
            f"with {len(opened)} request bodies still arriving, real requests were answered "
            f"{dict(statuses)} (expected 10 x 200: a body that never comes holds no slot)"
        )
    return {
        "bodies_never_sent": len(opened),
        "real_requests_then": {str(k): v for k, v in statuses.items()},
        "failures": failures,
    }
