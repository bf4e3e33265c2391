"""What the auditor's outputs may show of text they did not write: URIs without their
credentials, terminal text without control sequences, CSV cells a spreadsheet will not run.

Pure functions of a value; the CLI commands and the pages call them at the point they print.
"""

from __future__ import annotations

import re
from typing import Any

from features.intake.hidden_text import INVISIBLE, PAGE_INVISIBLE

# C0, DEL and C1 controls and every mark Unicode renders as nothing: the bidi controls that
# reorder what a reader sees, the zero-width characters that hide inside a word
# ("in\u200bvoice"), soft hyphens, fillers, variation selectors (``features.intake.hidden_text``,
# the set identifiers are refused on: a look-alike id the gate let through before, "S\u00adSPLIT",
# read as "SSPLIT" on the page, probe 20)
_CONTROLS = re.compile(INVISIBLE)
# ... the same on a page, but for the line breaks and tabs the page lays out itself
_PAGE_CONTROLS = re.compile(PAGE_INVISIBLE)
# a spreadsheet evaluates a cell starting with these (OWASP, "CSV Injection")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# a user, then ":" and a password that may hold "/" and "@" (drivers parse them so), up to
# the last "@" before any query
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^:/?#]*(?::[^?#]*)?@")
# a URI inside running text: up to the first space or quote
_URI_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def display_uri(uri: str) -> str:
    """``uri`` as it may be shown to a person: scheme, host, port, path (and fragment, an MLflow
    UI page's route), without the user and password, nor the query, where drivers take
    passwords too.
    A plain path (no ``scheme://``) is returned as is. When in doubt it drops more: an "@"
    later in a URI that has a ":" after its host cuts the host off too."""
    if "://" not in uri:
        return uri
    shown = _USERINFO.sub(r"\1", uri)
    head, hash_, fragment = shown.partition("#")
    return head.split("?", 1)[0] + hash_ + fragment


def scrub_uris(text: str) -> str:
    """``text`` (an error message, say) with every URI in it as ``display_uri`` shows it: an
    MLflow or database error quotes the URI it failed on, credentials and all."""
    return _URI_IN_TEXT.sub(lambda m: display_uri(m.group()), text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def terminal_safe(text: str) -> str:
    """``text`` with every control character (newline included) and bidi control written as
    a visible escape (``\\x1b``, ``\\u202e``): a value printed to a terminal cannot clear
    the screen, start a line of its own or reorder the line it is on."""
    return _CONTROLS.sub(_escaped, text)


def page_safe(value: Any) -> Any:
    """A value for an HTML page: text with its invisible and reordering characters written as
    visible escapes (``\u202e``), as ``terminal_safe`` writes them; line breaks kept. The
    page showed a description's right-to-left override as is, so "invoice\u202efdp.exe" read
    "invoiceexe.pdf" to the auditor while `audit show` escaped it (probe, 2026-12)."""
    return _PAGE_CONTROLS.sub(_escaped, value) if isinstance(value, str) else value


def csv_cell(value: Any) -> Any:
    """A text cell a spreadsheet shows as text: a string that starts like a formula gets a
    leading ``'``; anything else (numbers included) unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
