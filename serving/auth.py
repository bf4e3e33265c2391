"""API keys with roles, and the ASGI middleware that enforces them and the body-size limit.

Keys come from ``PARCELRISK_API_KEYS`` (comma-separated ``role:key`` pairs) or the file named by
``PARCELRISK_API_KEYS_FILE`` (one ``role:key`` per line, ``#`` comments). A client sends its key
as ``X-API-Key: KEY`` or ``Authorization: Bearer KEY`` (what ``bentoml.SyncHTTPClient(token=)``
sends). Keys are compared in constant time and never logged; only the role is.

Paths are deny-by-default: the probes and metrics are open, each API path needs one of its
roles, and anything else (Swagger UI, schema) needs any valid key.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from features.errors import ParcelriskError

logger = logging.getLogger(__name__)

Role = Literal["scorer", "auditor"]
ROLES: tuple[Role, ...] = ("scorer", "auditor")

KEYS_ENV = "PARCELRISK_API_KEYS"
KEYS_FILE_ENV = "PARCELRISK_API_KEYS_FILE"
INSECURE_ENV = "PARCELRISK_INSECURE_NO_AUTH"

OPEN_PATHS = frozenset({"/livez", "/readyz", "/metrics", "/healthz"})
ROUTE_ROLES: dict[str, frozenset[str]] = {
    "/score": frozenset({"scorer"}),
    "/explain": frozenset({"scorer", "auditor"}),
    "/decision": frozenset({"auditor"}),
}


class AuthConfigError(ParcelriskError):
    """The API keys are missing or malformed; the message never contains a key."""


@dataclass(frozen=True)
class KeyRing:
    """(role, key) pairs; ``insecure`` means no auth at all (local demos only)."""

    entries: tuple[tuple[str, bytes], ...] = ()
    insecure: bool = False

    def role_of(self, presented: str | None) -> str | None:
        """The role of a presented key, or None. Checks every entry (no early exit on match)."""
        if not presented:
            return None
        candidate = presented.encode()
        found: str | None = None
        for role, key in self.entries:
            if hmac.compare_digest(candidate, key) and found is None:
                found = role
        return found


def _parse_pairs(lines: list[str], source: str) -> list[tuple[str, bytes]]:
    entries: list[tuple[str, bytes]] = []
    for n, raw in enumerate(lines, start=1):
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        role, sep, key = item.partition(":")
        role, key = role.strip(), key.strip()
        if not sep or role not in ROLES:
            raise AuthConfigError(
                f"{source}: entry {n} must be 'role:key' with role in {', '.join(ROLES)}"
            )
        if len(key) < 16:
            raise AuthConfigError(f"{source}: entry {n} ({role}): key shorter than 16 characters")
        entries.append((role, key.encode()))
    return entries


def load_keyring(
    env: Mapping[str, str] | None = None, *, insecure_no_auth: bool = False
) -> KeyRing:
    """Keys from the environment; raise ``AuthConfigError`` if none and auth was not waived."""
    env = os.environ if env is None else env
    entries: list[tuple[str, bytes]] = []
    if env.get(KEYS_ENV):
        entries += _parse_pairs(env[KEYS_ENV].split(","), KEYS_ENV)
    if env.get(KEYS_FILE_ENV):
        path = Path(env[KEYS_FILE_ENV])
        if not path.is_file():
            raise AuthConfigError(f"{KEYS_FILE_ENV}: file not found: {path}")
        entries += _parse_pairs(path.read_text().splitlines(), str(path))
    insecure = insecure_no_auth or env.get(INSECURE_ENV, "").lower() in ("1", "true", "yes")
    if not entries and not insecure:
        raise AuthConfigError(
            f"no API keys configured: set {KEYS_ENV}='scorer:KEY,auditor:KEY' or "
            f"{KEYS_FILE_ENV}=PATH (or --insecure-no-auth for a local demo only)"
        )
    if insecure and not entries:
        logger.warning(
            "AUTHENTICATION DISABLED (--insecure-no-auth): anyone who can reach this port can "
            "score and read decisions. Never run like this outside a local demo."
        )
    return KeyRing(tuple(entries), insecure=insecure and not entries)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from ``X-API-Key`` or ``Authorization: Bearer``; headers are lower-cased."""
    if key := headers.get("x-api-key"):
        return key.strip()
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def required_roles(path: str) -> frozenset[str] | None:
    """Roles allowed on ``path``; empty set = any valid key; None = open."""
    path = path.rstrip("/") or "/"
    if path in OPEN_PATHS:
        return None
    return ROUTE_ROLES.get(path, frozenset())


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="parcelrisk"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ApiKeyMiddleware:
    """Authenticate, authorise by role and cap the request body before the service sees it.

    ``keyring`` is resolved lazily from the environment on the first request (the service's
    constructor has already refused to start without keys). ``readiness`` returns the reason
    the service is not ready, so ``/readyz`` can say why instead of a generic 503.
    """

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        max_body_bytes: int | Callable[[], int] = 5_000_000,
        keyring: KeyRing | None = None,
        readiness: Callable[[], str | None] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self._keyring = keyring
        self._readiness = readiness

    @property
    def keyring(self) -> KeyRing:
        if self._keyring is None:
            self._keyring = load_keyring()
        return self._keyring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "/")
        if path.rstrip("/") == "/readyz" and self._readiness is not None:
            reason = self._readiness()
            if reason is not None:
                await _send_json(send, 503, {"ready": False, "reason": reason})
                return
        roles = required_roles(path)
        if roles is not None and not self.keyring.insecure:
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            key = presented_key(headers)
            if key is None:
                await _send_json(
                    send, 401, {"error": "missing API key (X-API-Key or Authorization: Bearer)"}
                )
                return
            role = self.keyring.role_of(key)
            if role is None:
                await _send_json(send, 401, {"error": "invalid API key"})
                return
            if roles and role not in roles:
                logger.info("role %s refused on %s", role, path)
                await _send_json(
                    send,
                    403,
                    {
                        "error": f"role {role!r} may not call {path}; needs {' or '.join(sorted(roles))}"
                    },
                )
                return
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            limit = self.max_body_bytes() if callable(self.max_body_bytes) else self.max_body_bytes
            body = await self._read_body(scope, receive, limit)
            if body is None:
                await _send_json(
                    send,
                    413,
                    {"error": f"request body larger than {limit} bytes (serve.max_body_bytes)"},
                )
                return
            await self.app(scope, _replay(body, receive), send)
            return
        await self.app(scope, receive, send)

    async def _read_body(self, scope: Scope, receive: Receive, limit: int) -> bytes | None:
        """The whole body, or None as soon as it exceeds ``limit`` (declared or streamed)."""
        for k, v in scope["headers"]:
            if k.lower() == b"content-length":
                try:
                    if int(v) > limit:
                        return None
                except ValueError:
                    return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
