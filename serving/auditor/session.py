"""Signed, expiring session tokens for the auditor pages (pure functions).

Every worker process must accept a session another worker opened, and nothing is shared between
them but the configuration, so the session lives in the cookie: ``v1.KEY_ID.EXPIRES.NONCE.MAC``,
the MAC an HMAC-SHA256 under a secret derived from the audit key and the configured auditor API
keys (``session_secret``). Changing the auditor keys (revoking one) changes the secret and ends
every session; a token whose key id is no longer configured is refused as well. Holding an
auditor key is not enough to forge a session (the audit key is mixed in).

Signing out cannot be undone by a cookie alone: a copy of it would stay valid until it expires.
So a signed-out session's ``session_id`` (a digest of its token, never the token) is kept in the
decision store every worker and replica opens until the token expires, and every page asks the
store whether its session is one of them (``serving.auditor.pages``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

VERSION = "v1"
COOKIE_NAME = "parcelrisk_auditor"
COOKIE_PATH = "/auditor"
_LABEL = b"parcelrisk-auditor-session-v1\x1f"


@dataclass(frozen=True)
class Session:
    key_id: str  # the auditor key it was opened with (``features.keys.key_id``)
    expires_at: int  # unix seconds
    # SHA-256 of the token's signed part (version, key id, expiry, nonce): names the session in
    # the store's sign-outs; the token itself cannot be rebuilt from it
    session_id: str


def session_secret(server_key: bytes, auditor_keys: Iterable[bytes]) -> bytes:
    """The MAC key of the sessions: HMAC(server key, label + the sorted auditor keys)."""
    material = _LABEL + b"\x1e".join(sorted(set(auditor_keys)))
    return hmac.new(server_key, material, hashlib.sha256).digest()


def _mac(secret: bytes, payload: str) -> str:
    digest = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue_token(secret: bytes, key_id: str, now: int, ttl_s: int, nonce: str | None = None) -> str:
    """A token for ``key_id`` valid until ``now + ttl_s`` (unix seconds)."""
    if not key_id or "." in key_id:
        raise ValueError("key_id must be non-empty and contain no '.'")
    nonce = nonce if nonce is not None else secrets.token_urlsafe(16)
    payload = f"{VERSION}.{key_id}.{int(now) + int(ttl_s)}.{nonce}"
    return f"{payload}.{_mac(secret, payload)}"


def verify_token(
    secret: bytes, token: str | None, now: int, key_ids: Iterable[str], max_ttl_s: int
) -> Session | None:
    """The session a token carries, or None: malformed, forged, expired, expiring further
    ahead than ``max_ttl_s`` (never issued by this configuration), or of a key no longer
    configured."""
    if not token or len(token) > 512:
        return None
    parts = token.split(".")
    if len(parts) != 5 or parts[0] != VERSION:
        return None
    payload, mac = ".".join(parts[:4]), parts[4]
    if not hmac.compare_digest(mac.encode(), _mac(secret, payload).encode()):
        return None
    key_id, expires = parts[1], parts[2]
    if not expires.isdigit():
        return None
    expires_at = int(expires)
    if not now < expires_at <= now + max_ttl_s or key_id not in set(key_ids):
        return None
    return Session(key_id, expires_at, hashlib.sha256(payload.encode()).hexdigest())


def cookie_header(token: str, *, max_age_s: int, secure: bool) -> str:
    """The ``Set-Cookie`` value: HttpOnly, SameSite=Strict, Path=/auditor, Secure over https."""
    attrs = [
        f"{COOKIE_NAME}={token}",
        f"Max-Age={int(max_age_s)}",
        f"Path={COOKIE_PATH}",
        "HttpOnly",
        "SameSite=Strict",
    ]
    if secure:
        attrs.append("Secure")
    return "; ".join(attrs)


def clearing_cookie_header(*, secure: bool) -> str:
    """The ``Set-Cookie`` value that ends the session in the browser."""
    return cookie_header("", max_age_s=0, secure=secure)
