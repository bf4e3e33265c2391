"""API keys with roles, and the ASGI middleware that enforces them.

Keys come from ``PARCELRISK_API_KEYS`` (comma-separated ``role:key`` pairs) or the file named by
``PARCELRISK_API_KEYS_FILE`` (one ``role:key`` per line, ``#`` comments). A client sends its key
as ``X-API-Key: KEY`` or ``Authorization: Bearer KEY`` (what ``bentoml.SyncHTTPClient(token=)``
sends). Keys are compared in constant time and never logged; only the role is.

Paths are deny-by-default: the probes are open, so are the docs page, its Swagger UI files and
the OpenAPI document to read them (GET/HEAD: a browser cannot send a key, and they hold no
secret), each API path needs one of its roles, and anything else (metrics, BentoML's
``/schema.json``) needs any valid key.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from features.errors import ParcelriskError
from features.keys import key_id
from serving.errors import error_response
from serving.patches import REQUEST_ID  # set per request by the request timeout, outermost

if TYPE_CHECKING:
    from starlette.responses import JSONResponse

logger = logging.getLogger(__name__)

Role = Literal["scorer", "auditor", "inspector"]
ROLES: tuple[Role, ...] = ("scorer", "auditor", "inspector")

KEYS_ENV = "PARCELRISK_API_KEYS"
KEYS_FILE_ENV = "PARCELRISK_API_KEYS_FILE"
INSECURE_ENV = "PARCELRISK_INSECURE_NO_AUTH"

# /metrics is not open: lane volumes tell whoever reads them how much is being inspected;
# Prometheus sends a key as a bearer token (authorization: {credentials: KEY}).
OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz"})
# The docs page (serving.patches, 4.), the Swagger UI it loads from /static_content and the
# document it shows (serving.openapi, which names no site and no key; test_openapi checks it):
# open to read, exactly these paths, so a browser opens them. Any other method needs a key.
DOCS_PATHS = frozenset({"/", "/docs.json"})
DOCS_ASSETS_PREFIX = "/static_content/"
_READ_METHODS = frozenset({"GET", "HEAD"})
# The auditor pages sign their users in with a session cookie and refuse every other role
# themselves (serving.auditor.pages): no API key is expected on them.
SESSION_PREFIX = "/auditor"
ROUTE_ROLES: dict[str, frozenset[str]] = {
    "/score": frozenset({"scorer"}),
    "/explain": frozenset({"scorer", "auditor"}),
    "/decision": frozenset({"auditor"}),
    "/outcomes": frozenset({"inspector"}),  # results feed training: only those who inspect
}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent the request being handled: its request id and the id (never the key) of the
    API key it presented; recorded with every decision it gets (``DecisionRecord``)."""

    request_id: str
    api_key_id: str = ""  # empty when auth is off (--insecure-no-auth)
    role: str = ""


# Set by ``ApiKeyMiddleware`` for each request; the handler runs in a task that copies the
# context, so it reads the caller of its own request.
CALLER: ContextVar[Caller | None] = ContextVar("parcelrisk_caller", default=None)


class AuthConfigError(ParcelriskError):
    """The API keys are missing or malformed; the message never contains a key."""


@dataclass(frozen=True)
class KeyRing:
    """(role, key) pairs; ``insecure`` means no auth at all (local demos only)."""

    entries: tuple[tuple[str, bytes], ...] = ()
    insecure: bool = False

    def role_of(self, presented: str | None) -> str | None:
        """The role of a presented key, or None. Checks every entry (no early exit on match)."""
        found = self.identify(presented)
        return found[0] if found is not None else None

    def identify(self, presented: str | None) -> tuple[str, str] | None:
        """(role, key id) of a presented key, or None. Checks every entry (no early exit)."""
        if not presented:
            return None
        candidate = presented.encode()
        found: tuple[str, bytes] | None = None
        for role, key in self.entries:
            if hmac.compare_digest(candidate, key) and found is None:
                found = (role, key)
        return (found[0], key_id(found[1])) if found is not None else None


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


_CREDENTIAL_HEADERS = (b"x-api-key", b"authorization")


def several_credentials(raw_headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request presents more than one credential header (X-API-Key twice, or with
    Authorization): which one counts would be a parser's accident (the last one did), so a
    bad key beside a good one, or two roles' keys, is refused, not resolved."""
    return sum(k.lower() in _CREDENTIAL_HEADERS for k, _ in raw_headers) > 1


def required_roles(path: str, method: str) -> frozenset[str] | None:
    """Roles allowed to call ``method`` on ``path``; empty set = any valid key; None = open."""
    if method in _READ_METHODS and (path in DOCS_PATHS or path.startswith(DOCS_ASSETS_PREFIX)):
        return None
    path = path.rstrip("/") or "/"
    if path in OPEN_PATHS or path == SESSION_PREFIX or path.startswith(SESSION_PREFIX + "/"):
        return None
    return ROUTE_ROLES.get(path, frozenset())


class KeyCheck:
    """Whether a request presents a key the service knows (or needs none): asked before its
    body is read ahead of a concurrency slot (``serving.patches``, 8.), so an anonymous
    client never gets a body buffered. Its role is checked later, by ``ApiKeyMiddleware``."""

    def __init__(self, keyring: KeyRing | None = None) -> None:
        self._keyring = keyring

    def __call__(self, scope: dict[str, Any]) -> bool:
        if self._keyring is None:
            self._keyring = load_keyring()
        if required_roles(scope.get("path", "/"), scope.get("method", "")) is None:
            return True
        if self._keyring.insecure:
            return True
        if several_credentials(scope["headers"]):
            return False
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = presented_key(headers)
        return key is not None and self._keyring.identify(key) is not None


class ApiKeyMiddleware:
    """Authenticate and authorise by role before the service sees the request.

    ``keyring`` is resolved lazily from the environment on the first request (the service's
    constructor has already refused to start without keys).
    """

    def __init__(self, app: Callable[..., Awaitable[None]], keyring: KeyRing | None = None) -> None:
        self.app = app
        self._keyring = keyring

    @property
    def keyring(self) -> KeyRing:
        if self._keyring is None:
            self._keyring = load_keyring()
        return self._keyring

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path, method = scope.get("path", "/"), scope.get("method", "")
        refusal, caller = self._check(path, method, headers, REQUEST_ID.get())
        if (
            (refusal is None and caller.api_key_id)
            or (refusal is not None and refusal.status_code == 403)
        ) and several_credentials(scope["headers"]):
            # before the role's 403 too: which of two keys was judged must not depend on the
            # order the headers came in (a scorer's and an inspector's key gave 403 one way
            # round and 401 the other, probe 20)
            refusal = _unauthorised(
                "more than one credential (X-API-Key given twice, or with Authorization): send one",
                code="auth.several_credentials",
            )
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        CALLER.set(caller)
        await self.app(scope, receive, send)

    def _check(
        self, path: str, method: str, headers: Mapping[str, str], request_id: str
    ) -> tuple[JSONResponse | None, Caller]:
        """The 401/403 for this request (None if it may pass) and who it is."""
        roles = required_roles(path, method)
        key = presented_key(headers)
        found = self.keyring.identify(key) if roles is not None else None
        caller = Caller(request_id, *(found[::-1] if found else ("", "")))
        if roles is None or self.keyring.insecure:
            return None, caller
        if key is None:
            return _unauthorised(
                "missing API key (X-API-Key or Authorization: Bearer)", code="auth.missing_key"
            ), caller
        if found is None:
            return _unauthorised("invalid API key", code="auth.invalid_key"), caller
        role = found[0]
        if roles and role not in roles:
            logger.info("role %s refused on %s", role, path)
            return error_response(
                403,
                f"role {role!r} may not call {path}; needs {' or '.join(sorted(roles))}",
                code="auth.role",
            ), caller
        return None, caller


def _unauthorised(message: str, *, code: str) -> JSONResponse:
    return error_response(
        401, message, code=code, headers={"www-authenticate": 'Bearer realm="parcelrisk"'}
    )
