"""When will a running job finish? An estimate from the rate its progress file advances.

Why here: ``GET /progress`` answers it for one job and ``GET /jobs``/``/queue`` need it for
every running job (a queued job starts when one of them ends), so the arithmetic is written
once, without Prefect, and tested on its own.

A simulator writes a percentage (``progress_pct``, ``percent``, ...) and/or counters
(``global_step``/``step``/``episode`` against a total). Each distinct reading the API sees is a
*sample* ``(time, percent)``; the run's start is the first (0 %). The rate is the least-squares
slope of the latest samples; the estimate is as confident as there are samples, as far as the
job got, and as steady as the rate is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

PERCENT_KEYS = ("progress_pct", "percent", "progress_percent", "progress", "completion")
# (counter, its possible totals, unit): the first pair present in the file wins.
COUNTERS = (
    ("global_step", ("total_global_steps", "global_steps_total", "total_steps", "max_steps"), "steps"),
    ("step", ("total_steps", "steps_total", "max_steps", "steps"), "steps"),
    ("episode", ("total_episodes", "episodes", "n_episodes"), "episodes"),
)
WINDOW = 8  # samples the rate is fitted on
MIN_SAMPLES = 3
MIN_PERCENT = 5.0
STALL_FACTOR = 4.0  # no new reading for this many times the usual gap: stalled
MIN_STALL_SECONDS = 120.0


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _timestamp(value: Any) -> float | None:
    """Epoch seconds from a number or an ISO 8601 string (naive means UTC)."""
    number = _number(value)
    if number is not None:
        return number / 1000 if number > 1e11 else number  # milliseconds
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
    return None


@dataclass(frozen=True)
class Reading:
    """One progress file, understood: how far (percent) and, when it says, of what."""

    percent: float
    current: float | None = None
    total: float | None = None
    unit: str = "percent"
    updated_at: float | None = None


def read_progress(data: Any, modified_at: float | None = None) -> Reading | None:
    """The reading in a progress file, or None when it says nothing numeric about progress.
    ``modified_at`` (the file's mtime) dates it when the file has no ``timestamp``."""
    if not isinstance(data, dict):
        return None
    current = total = None
    unit = "percent"
    for counter, totals, counter_unit in COUNTERS:
        value = _number(data.get(counter))
        limit = next((t for t in (_number(data.get(k)) for k in totals) if t and t > 0), None)
        if value is not None and limit is not None:
            current, total, unit = max(0.0, value), limit, counter_unit
            break
    percent = None
    for key in PERCENT_KEYS:
        value = _number(data.get(key))
        if value is not None:
            percent = value * 100 if key == "completion" and 0 <= value <= 1 else value
            break
    if percent is None and current is not None and total:
        percent = 100.0 * current / total
    if percent is None:
        return None
    stamp = _timestamp(data.get("timestamp", data.get("updated_at")))
    return Reading(max(0.0, min(100.0, percent)), current, total, unit, stamp if stamp is not None else modified_at)


@dataclass(frozen=True)
class Sample:
    at: float
    percent: float


@dataclass
class Eta:
    """What ``/progress`` answers under ``eta`` (``available: false`` carries only ``reason``)."""

    available: bool
    reason: str | None = None
    state: str | None = None
    eta_seconds: float | None = None
    estimated_finish_at: float | None = None
    elapsed_seconds: float | None = None
    source: str | None = None
    confidence: str | None = None
    progress_percent: float | None = None
    current: float | None = None
    total: float | None = None
    unit: str | None = None
    updated_at: float | None = None
    samples: int = field(default=0)

    def as_dict(self) -> dict[str, Any]:
        if not self.available:
            return {"available": False, "reason": self.reason}
        out: dict[str, Any] = {k: getattr(self, k) for k in (
            "available", "state", "eta_seconds", "estimated_finish_at", "elapsed_seconds", "source", "confidence",
            "progress_percent", "current", "total", "unit", "updated_at")}
        out["estimated_finish_at"] = iso(self.estimated_finish_at)
        out["updated_at"] = iso(self.updated_at)
        out["samples"] = self.samples
        return out


def iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat() if epoch is not None else None


def unavailable(reason: str) -> Eta:
    return Eta(available=False, reason=reason)


def _slope(samples: list[Sample]) -> float:
    """Percent per second, least squares over ``samples`` (at least two, distinct times)."""
    n = len(samples)
    mean_t = sum(s.at for s in samples) / n
    mean_p = sum(s.percent for s in samples) / n
    var = sum((s.at - mean_t) ** 2 for s in samples)
    if var <= 0:
        return 0.0
    return sum((s.at - mean_t) * (s.percent - mean_p) for s in samples) / var


def _steady(samples: list[Sample]) -> bool:
    """The rate over the older half and the newer half of the window agree within 1.5x."""
    if len(samples) < 4:
        return False
    half = len(samples) // 2
    older, newer = _slope(samples[: half + 1]), _slope(samples[half:])
    if older <= 0 or newer <= 0:
        return False
    return max(older, newer) / min(older, newer) <= 1.5


def confidence_of(samples: list[Sample], percent: float, stalled: bool) -> str:
    """low: under MIN_SAMPLES readings, under MIN_PERCENT done, or stalled; high: five or more
    readings, a fifth done and a steady rate; medium otherwise."""
    if stalled or len(samples) < MIN_SAMPLES or percent < MIN_PERCENT:
        return "low"
    if len(samples) >= 5 and percent >= 20 and _steady(samples[-WINDOW:]):
        return "high"
    return "medium"


def clean_samples(samples: list[Sample]) -> list[Sample]:
    """Sorted by time, one per instant (the latest reading wins), never going backwards
    (a restarted simulator starts a new series)."""
    by_time: dict[float, float] = {}
    for s in samples:
        by_time[s.at] = s.percent
    ordered = [Sample(t, p) for t, p in sorted(by_time.items())]
    start = 0
    for i in range(1, len(ordered)):
        if ordered[i].percent < ordered[i - 1].percent:
            start = i
    return ordered[start:]


def estimate(reading: Reading | None, samples: list[Sample], *, status: str, started_at: float | None, now: float) -> Eta:
    """The ETA of a job in ``status`` whose latest reading is ``reading``; ``samples`` are the
    readings seen so far (the run's start at 0 % may be among them)."""
    if status == "finished":
        return Eta(available=True, state="finished", eta_seconds=0.0, estimated_finish_at=reading.updated_at if reading else now,
                   elapsed_seconds=None if started_at is None else max(0.0, now - started_at), source="final_state",
                   confidence="high", progress_percent=100.0, unit=reading.unit if reading else "percent",
                   current=reading.total if reading else None, total=reading.total if reading else None,
                   updated_at=reading.updated_at if reading else None)
    if status not in ("running", "setup", "stop_requested"):
        return unavailable(f"no estimate while the job is {status}")
    if reading is None:
        return unavailable("the job has written no progress yet")
    points = clean_samples(samples)
    read_at = reading.updated_at if reading.updated_at is not None else now
    if not points or points[-1].at < read_at:
        points = clean_samples([*points, Sample(read_at, reading.percent)])
    window = points[-WINDOW:]
    if len(window) < 2:
        return unavailable("one progress reading so far: no rate yet")
    rate = _slope(window)
    if rate <= 0:
        return unavailable("progress has not advanced yet")
    last = window[-1]
    gaps = [b.at - a.at for a, b in zip(window, window[1:])]
    usual_gap = sorted(gaps)[len(gaps) // 2]
    stalled = now - last.at > max(MIN_STALL_SECONDS, STALL_FACTOR * usual_gap)
    finish = last.at + (100.0 - last.percent) / rate
    remaining = max(0.0, finish - now)
    state = "stalled" if stalled else ("finishing" if remaining == 0 else "running")
    return Eta(
        available=True, state=state, eta_seconds=round(remaining, 1), estimated_finish_at=max(finish, now),
        elapsed_seconds=None if started_at is None else round(max(0.0, now - started_at), 1), source="progress_rate",
        confidence=confidence_of(points, reading.percent, stalled), progress_percent=round(reading.percent, 2),
        current=reading.current, total=reading.total, unit=reading.unit, updated_at=reading.updated_at, samples=len(points),
    )


class SampleBook:
    """The readings this process has seen, per job (bounded: the oldest jobs are forgotten).

    Why in memory: the progress file holds only the latest reading, and nothing the job
    folder holds may be trusted as a history (the simulator writes there)."""

    def __init__(self, max_jobs: int = 2000, per_job: int = 32) -> None:
        self.max_jobs, self.per_job = max_jobs, per_job
        self._samples: dict[str, list[Sample]] = {}

    def record(self, job_id: str, started_at: float | None, reading: Reading | None, now: float) -> list[Sample]:
        """Add ``reading`` (dated by its file, else ``now``) and answer the job's samples."""
        book = self._samples.pop(job_id, None)
        if book is None:
            book = [Sample(started_at, 0.0)] if started_at is not None else []
        if reading is not None:
            at = reading.updated_at if reading.updated_at is not None else now
            if not book or book[-1].at != at or book[-1].percent != reading.percent:
                book.append(Sample(at, reading.percent))
        if len(book) > self.per_job + 1:
            del book[1:-self.per_job]  # keep the start and the latest
        self._samples[job_id] = book
        while len(self._samples) > self.max_jobs:
            self._samples.pop(next(iter(self._samples)))
        return list(book)
