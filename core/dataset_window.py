"""Scheduled dataset builds: the window a run reads, the name it writes, the digest that says
whether anything changed.

Why the window is anchored on the run's *scheduled* start and not on "now": a run that starts
late (the worker was busy, the host was down) or a backfill of last month must read exactly the
window its slot stands for, so the same slot always yields the same dataset. The flow passes the
anchor in (Prefect's scheduled start time, or the backfill's occurrence); nothing here reads a
clock.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from core.datasets import DatasetError, parse_ts
from core.names import safe_name

_RELATIVE = re.compile(r"last_(\d{1,4})([hd])")
MAX_WINDOW = timedelta(days=366)


def window_bounds(window: str | dict[str, Any], anchor: datetime) -> tuple[datetime, datetime]:
    """``last_<N>h`` / ``last_<N>d``: the N hours/days that end at ``anchor``;
    ``{start, end}``: that fixed window. Both ends UTC; the end is exclusive, like ``until``."""
    if isinstance(window, str):
        match = _RELATIVE.fullmatch(window.strip())
        if not match:
            raise DatasetError(f"window {window!r} must be last_<N>h, last_<N>d or {{start, end}}", 422)
        amount = int(match.group(1))
        span = timedelta(hours=amount) if match.group(2) == "h" else timedelta(days=amount)
        end = _utc(anchor)
        start = end - span
    elif isinstance(window, dict) and set(window) == {"start", "end"}:
        start, end = parse_ts(window["start"], "window.start"), parse_ts(window["end"], "window.end")
        start, end = _utc(start), _utc(end)
    else:
        raise DatasetError("window must be last_<N>h, last_<N>d or an object with exactly start and end", 422)
    if end <= start:
        raise DatasetError(f"window end {end.isoformat()} must be after its start {start.isoformat()}", 422)
    if end - start > MAX_WINDOW:
        raise DatasetError(f"window spans {end - start}, over the {MAX_WINDOW.days}-day limit", 422)
    return start, end


def scheduled_name(prefix: str, end: datetime) -> str:
    """``<prefix>-<window end, UTC, YYYYMMDDTHHMMZ>``: one name per slot, sortable by time."""
    return safe_name(f"{prefix}-{_utc(end):%Y%m%dT%H%MZ}", what="dataset name")


def _utc(value: datetime) -> datetime:
    """A plain UTC datetime: naive means UTC; subclasses (Prefect's scheduled start is a pendulum
    DateTime, whose arithmetic can drop the zone) are rebuilt from their timestamp."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(value.timestamp(), timezone.utc)
