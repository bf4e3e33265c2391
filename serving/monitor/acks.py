"""A person's acknowledgement of an alert: silenced at the level it was seen, until a date.

Some alerts are true and stay true until someone acts: a red lane under its target until the
lanes are refit, a model that expects four times the revenue its inspections find until it is
retrained, a 7-day count on a dominant seller's decile edge. A monitor that pages for them every
day is one nobody reads (probes 17, 19); one that decides on its own that a shift is old news
hides a feed that broke while its cron was down. So the monitor never silences anything itself:
a person does, for a stated time, with a reason, at the level they saw. The alert pages again
once it moves beyond that level (a slow drift is judged against where it was acknowledged, not
against last week), and when the acknowledgement expires.

The file (``monitor.acknowledged_file``) is a YAML list, appended to by ``parcelrisk monitor
--acknowledge-until DATE --reason TEXT`` and readable by a person; an entry:
``{kind, subject, value, low, high, period, acknowledged_at, by, until, reason}``.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.errors import ParcelriskError

if TYPE_CHECKING:
    import pandas as pd

    from features.params import MonitorParams
    from serving.monitor.compute import Alert

_FIELDS = ("kind", "subject", "value", "until", "reason")


@dataclass(frozen=True)
class Ack:
    kind: str
    subject: str
    value: float
    until: str  # a date (YYYY-MM-DD), exclusive: the acknowledgement holds before it
    reason: str
    low: float | None = None
    high: float | None = None
    period: str = ""
    acknowledged_at: str = ""
    by: str = ""
    flag: str = ""  # a disparity's direction, as the alert said it

    def note(self) -> str:
        return (
            f"acknowledged by {self.by or 'someone'} on {self.acknowledged_at[:10] or '?'} at "
            f"{self.value:.4g} until {self.until}: {self.reason}"
        )


def read_acks(path: Path) -> list[Ack]:
    """The acknowledgements in ``path`` (none when it does not exist); a malformed entry is
    refused by its position and field, never skipped (a silenced alert must be one a person
    wrote)."""
    import yaml

    if not path.exists():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ParcelriskError(f"{path}: cannot read the acknowledgements: {exc}") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise ParcelriskError(f"{path}: acknowledgements are a YAML list of entries")
    acks = []
    for i, entry in enumerate(data, 1):
        where = f"{path}: acknowledgement {i}"
        if not isinstance(entry, dict):
            raise ParcelriskError(f"{where} is not a mapping of fields")
        if missing := [k for k in _FIELDS if entry.get(k) in (None, "")]:
            raise ParcelriskError(f"{where}: missing {', '.join(missing)}")
        try:
            ack = Ack(
                kind=str(entry["kind"]),
                subject=str(entry["subject"]),
                value=float(entry["value"]),
                until=_day(entry["until"]),
                reason=str(entry["reason"]),
                low=_number(entry.get("low")),
                high=_number(entry.get("high")),
                period=str(entry.get("period") or ""),
                acknowledged_at=str(entry.get("acknowledged_at") or ""),
                by=str(entry.get("by") or ""),
                flag=str(entry.get("flag") or ""),
            )
        except (TypeError, ValueError) as exc:
            raise ParcelriskError(f"{where}: {exc}") from None
        acks.append(ack)
    return acks


def _day(value: Any) -> str:
    import pandas as pd

    try:
        return pd.Timestamp(str(value)).strftime("%Y-%m-%d")
    except ValueError:
        raise ValueError(f"until {value!r} is not a date (YYYY-MM-DD)") from None


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def still_at_level(alert: Alert, ack: Ack, params: MonitorParams) -> bool:
    """Whether ``alert`` is no worse than where ``ack`` saw it, per kind: a shift's PSI up to
    ``ack_margin`` times more (and at least its own alert level more: a low PSI's noise is
    not news); a lane share on the same side of its target, no further than its allowed
    deviation beyond the acknowledged one (nearer the target is no news); an exploration
    figure whose interval still holds the acknowledged value; a disparity in the same
    direction."""
    if alert.kind in ("feature_drift", "score_drift"):
        return alert.value <= max(ack.value * (1 + params.ack_margin), ack.value + alert.threshold)
    if alert.kind == "lane_share":
        same_side = (alert.value < 0) == (ack.value < 0)
        return same_side and abs(alert.value) <= abs(ack.value) + params.max_lane_share_deviation
    if alert.kind == "disparity":
        return alert.flag == ack.flag
    if alert.low is not None and alert.high is not None and math.isfinite(alert.low):
        return alert.low <= ack.value <= alert.high
    return abs(alert.value - ack.value) <= abs(ack.value) * params.ack_margin


def apply_acks(
    alerts: Sequence[Alert], acks: Iterable[Ack], today: str, params: MonitorParams
) -> tuple[list[Alert], list[dict[str, Any]], list[str]]:
    """The alerts that page, the ones acknowledged at their level (each with its
    acknowledgement), and the acknowledgements that expired (``until`` <= ``today``) on
    subjects alerting again. The newest acknowledgement of a kind and subject is the one read."""
    newest: dict[tuple[str, str], Ack] = {}
    for ack in acks:
        key = (ack.kind, ack.subject)
        if key not in newest or ack.acknowledged_at >= newest[key].acknowledged_at:
            newest[key] = ack
    paged, acknowledged, expired = [], [], []
    for alert in alerts:
        ack = newest.get((alert.kind, alert.subject))
        if ack is None:
            paged.append(alert)
        elif ack.until <= today:
            expired.append(f"{alert.kind} {alert.subject} ({ack.note()})")
            paged.append(replace(alert, message=f"{alert.message}; its {ack.note()} expired"))
        elif still_at_level(alert, ack, params):
            acknowledged.append({"alert": asdict(alert), "acknowledgement": asdict(ack)})
        else:
            paged.append(replace(alert, message=f"{alert.message}; moved beyond its {ack.note()}"))
    return paged, acknowledged, expired


def acknowledge(
    path: Path,
    alerts: Sequence[dict[str, Any]],
    *,
    period: str,
    until: pd.Timestamp,
    reason: str,
    now: pd.Timestamp,
    by: str,
) -> list[Ack]:
    """Append an acknowledgement of each of ``alerts`` (the summary's) to ``path``, written
    whole to a temporary file first, so a crash leaves the old file or the new one."""
    import yaml

    if not reason.strip():
        raise ParcelriskError("--reason: say why these alerts need no action until then")
    if until <= now:
        raise ParcelriskError(f"--acknowledge-until {until:%Y-%m-%d} is not in the future")
    existing = read_acks(path)
    added = [
        Ack(
            kind=a["kind"],
            subject=a["subject"],
            value=float(a["value"]),
            until=until.strftime("%Y-%m-%d"),
            reason=reason.strip(),
            low=a.get("low"),
            high=a.get("high"),
            flag=a.get("flag") or "",
            period=period,
            acknowledged_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            by=by,
        )
        for a in alerts
    ]
    text = (
        "# parcelrisk monitor acknowledgements: each silences one alert at the level it was seen,\n"
        "# until a date (serving/monitor/acks.py). Appended by `parcelrisk monitor\n"
        "# --acknowledge-until DATE --reason TEXT`; delete an entry to page on it again.\n"
        + yaml.safe_dump([asdict(a) for a in existing + added], sort_keys=False)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return added
