"""Secret keys the product holds but never stores with its data: one place to find them.

Two kinds, each its own secret (rotating one must not touch the other):
- ``audit``: the MAC key of the decision store's chain (``serving.audit.chain``);
- ``pseudonym``: the key of the consignee pseudonyms (``features.intake.pseudonym``).

A key comes from, in this order, ``PARCELRISK_<KIND>_KEY`` (the secret itself),
``PARCELRISK_<KIND>_KEY_FILE`` (a file holding it) or the default file
``$XDG_CONFIG_HOME/parcelrisk/<kind>.key`` (``~/.config/...``), outside the repository and the
data directories on purpose: whoever can write the data must not also find the key beside it.
``parcelrisk keys new KIND`` writes a new key file (mode 0600); ``make demo`` makes both.
Keys are never logged; only their id (a one-way fingerprint) is recorded with what they sign.
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from features.errors import ParcelriskError

KeyKind = Literal["audit", "pseudonym"]
KEY_KINDS: dict[str, str] = {
    "audit": "the decision store's tamper-evident chain",
    "pseudonym": "consignee pseudonyms",
}
MIN_KEY_CHARS = 32  # 16 random bytes as hex, at least


class KeyUnavailable(ParcelriskError):
    """No key of this kind is configured, or the one configured is unusable."""


def key_env(kind: str) -> str:
    return f"PARCELRISK_{kind.upper()}_KEY"


def key_file_env(kind: str) -> str:
    return f"PARCELRISK_{kind.upper()}_KEY_FILE"


def default_key_path(kind: str, env: Mapping[str, str] | None = None) -> Path:
    """Where a key of this kind is looked for when no variable names one."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "parcelrisk" / f"{kind}.key"


def _check_kind(kind: str) -> None:
    if kind not in KEY_KINDS:
        raise KeyUnavailable(f"unknown key kind {kind!r}; one of {', '.join(KEY_KINDS)}")


def _usable(text: str, source: str) -> bytes:
    key = text.strip()
    if len(key) < MIN_KEY_CHARS:
        raise KeyUnavailable(f"{source}: key shorter than {MIN_KEY_CHARS} characters")
    return key.encode()


def load_key(kind: str, env: Mapping[str, str] | None = None) -> bytes:
    """The key of ``kind``: from the variable, the file it names, or the default file."""
    _check_kind(kind)
    env = os.environ if env is None else env
    if text := env.get(key_env(kind)):
        return _usable(text, key_env(kind))
    named = env.get(key_file_env(kind))
    path = Path(named) if named else default_key_path(kind, env)
    source = key_file_env(kind) if named else "the default key file"
    if path.is_dir():  # not "file not found": the path is there, only not a file
        raise KeyUnavailable(f"{source}: {path} is a directory, not a key file")
    if path.is_file():
        try:
            key = _usable(path.read_text(), str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyUnavailable(f"{path}: cannot read the {kind} key: {exc}") from exc
        if (exposed := exposure(path, kind)) is not None:
            _warn_once(exposed)
        return key
    if named:
        raise KeyUnavailable(f"{key_file_env(kind)}: file not found: {path}")
    raise KeyUnavailable(
        f"no {kind} key ({KEY_KINDS[kind]}): set {key_env(kind)} or {key_file_env(kind)}=PATH, "
        f"or make one with `parcelrisk keys new {kind}` (writes {path})"
    )


# What another account holding each key can do: the reason a key file must be its owner's alone
_KEY_POWER = {
    "audit": "forge the decision store's chain",
    "pseudonym": "re-identify every consignee by hashing candidate ids",
}


def exposure(path: Path, kind: str) -> str | None:
    """What is wrong with a key file's mode, or None when only its owner can read or write it.

    Warned, not refused: a secret mounted by an orchestrator often comes as 0644 (a Kubernetes
    secret volume's default), and refusing it would stop the service at its next start; ssh
    refuses, but ssh keys are made by the person using them (probe 18)."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return None
    if not mode & 0o077:
        return None
    return (
        f"the {kind} key file {path} is open to other accounts (mode {mode:04o}): anyone who "
        f"reads it can {_KEY_POWER.get(kind, 'use it')}; make it the owner's alone: "
        f"chmod 600 {path}"
    )


@functools.cache
def _warn_once(message: str) -> None:
    import logging

    logging.getLogger(__name__).warning(message)


def key_source(kind: str, env: Mapping[str, str] | None = None) -> str:
    """Where ``load_key`` takes the key of ``kind`` from (a variable's name or a file's path),
    for people to see; never the key."""
    _check_kind(kind)
    env = os.environ if env is None else env
    if env.get(key_env(kind)):
        return f"${key_env(kind)}"
    named = env.get(key_file_env(kind))
    return str(Path(named) if named else default_key_path(kind, env))


def key_id(key: bytes) -> str:
    """A short one-way fingerprint that names a key in records without revealing it."""
    return hashlib.sha256(b"parcelrisk-key-id\x1f" + key).hexdigest()[:16]


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104) of ``message``: the consignee pseudonyms and the audit chain.

    The same value as ``hmac.digest(key, message, "sha256")`` (tested), from the inner and outer
    hash states after the key block, computed once per key: with OpenSSL 3 ``hmac.digest``
    looks the algorithm up on every call, ~4x the cost of copying two states, paid per value
    per request and per decision recorded."""
    inner, outer = _hmac_states(key)
    digest = inner.copy()
    digest.update(message)
    out = outer.copy()
    out.update(digest.digest())
    return out.digest()


@functools.lru_cache(maxsize=8)
def _hmac_states(key: bytes) -> tuple[Any, Any]:
    block = 64  # SHA-256's block size
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    return (
        hashlib.sha256(bytes(b ^ 0x36 for b in key)),
        hashlib.sha256(bytes(b ^ 0x5C for b in key)),
    )


def new_key_path(kind: str, env: Mapping[str, str] | None = None) -> Path:
    """Where ``keys new`` writes a key of ``kind`` when not told: the file
    ``PARCELRISK_<KIND>_KEY_FILE`` names when it is set (that is where ``load_key`` will look),
    else the default file. Written anywhere else, the new key would be one nothing reads."""
    _check_kind(kind)
    env = os.environ if env is None else env
    named = env.get(key_file_env(kind))
    return Path(named) if named else default_key_path(kind, env)


def write_new_key(kind: str, path: Path | None = None, *, overwrite: bool = False) -> Path:
    """A new random key of ``kind`` in ``path`` (default: ``new_key_path``), mode 0600.

    Refuses to replace an existing key unless ``overwrite``: a lost audit key makes the chain
    unverifiable, a lost pseudonym key cuts every consignee from its history."""
    _check_kind(kind)
    path = Path(path) if path is not None else new_key_path(kind)
    if path.is_dir():
        raise KeyUnavailable(f"{path} is a directory: name a key file to write")
    if path.exists() and not overwrite:
        raise KeyUnavailable(f"{path} exists: keep it, or remove it first to make a new {kind} key")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32) + "\n")
    return path
