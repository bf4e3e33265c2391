"""The auditor pages' query and path parameters: parsed, or refused with a message that names
the parameter and the form it expects, never silently ignored.

A filter that does not parse, or a parameter a page does not read (``since`` for ``from``,
``page`` for ``after_seq``), would otherwise show the whole list as if it were filtered.
Each parser turns the text into the value the store compares and raises ``ValueError`` with
the expected form; ``parse_query`` puts the parameter's name in front.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from serving.lanes import LANES

MAX_CHARS = 200  # a filter longer than any id or time the store holds

Parser = Callable[[str], Any]

_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?Z?")
_TIME_FORM = "a UTC date or date-time like 2026-05-01 or 2026-05-01T10:00"
# ASCII digits only: str.isdigit() also takes '²' and '３', which int() then refuses or reads;
# 18 digits stay inside SQLite's and Postgres' 64-bit integers
_WHOLE = re.compile(r"[0-9]{1,18}")


class QueryProblem(ValueError):
    """A parameter that is unknown, repeated or does not parse; the message names it."""


def utc_time(text: str) -> str:
    """A UTC date or date-time in the form the store writes ``answered_at``
    (``serving.decision.iso_utc``), so comparing the stored text compares the times."""
    if not _TIME.fullmatch(text):
        raise ValueError(_TIME_FORM)
    try:
        moment = datetime.fromisoformat(text.removesuffix("Z"))
    except ValueError:  # the right shape but no such day or hour: 2026-02-30, T25:00
        raise ValueError(f"{_TIME_FORM} (a real day and time)") from None
    # isoformat pads the year to four digits (strftime's %Y does not below 1000)
    return moment.isoformat(timespec="microseconds") + "Z"


def utc_time_to(text: str) -> str:
    """``utc_time`` of an upper bound: a bare date means that whole day (its next midnight,
    the bound exclusive), as `audit list --to` reads it; the page read it as the day's first
    instant and listed nothing for a day the command listed (probe, 2026-12)."""
    value = utc_time(text)
    if len(text.removesuffix("Z")) == 10:  # YYYY-MM-DD
        from datetime import timedelta

        moment = datetime.fromisoformat(value.removesuffix("Z")) + timedelta(days=1)
        return moment.isoformat(timespec="microseconds") + "Z"
    return value


def whole_number(text: str) -> int:
    if not _WHOLE.fullmatch(text):
        raise ValueError("a whole number like 0 or 1234")
    return int(text)


def model_version(text: str) -> str:
    """A registry version in its canonical text (``03`` is version ``3``, as MLflow reads it)."""
    if not _WHOLE.fullmatch(text):
        raise ValueError("a whole number like 3")
    return str(int(text))


def lane(text: str) -> str:
    if text not in LANES:
        raise ValueError(f"one of {', '.join(LANES)}")
    return text


def plain_text(text: str) -> str:
    return text


def shown(text: str, limit: int = 40) -> str:
    """``text`` quoted for a message, cut to ``limit`` characters (the page escapes it)."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def parse_query(items: Iterable[tuple[str, str]], parsers: Mapping[str, Parser]) -> dict[str, Any]:
    """name -> parsed value of each parameter given a non-empty value (an empty form field is
    no filter). Raises ``QueryProblem`` for a parameter not in ``parsers``, one given twice,
    one longer than ``MAX_CHARS`` or one its parser refuses."""
    values: dict[str, Any] = {}
    seen: set[str] = set()
    for name, raw in items:
        if name not in parsers:
            reads = f"it reads {', '.join(parsers)}" if parsers else "it reads none"
            raise QueryProblem(f"{shown(name)}: not a parameter of this page ({reads})")
        if name in seen:
            raise QueryProblem(f"{name}: give it once")
        seen.add(name)
        text = raw.strip()
        if not text:
            continue
        if len(text) > MAX_CHARS:
            raise QueryProblem(f"{name}: at most {MAX_CHARS} characters")
        try:
            values[name] = parsers[name](text)
        except ValueError as exc:
            raise QueryProblem(f"{name}: {exc}, not {shown(text)}") from None
    return values
