"""When will a queued job start? Its host's slots, the jobs ahead of it, the running jobs' ETAs.

Why here: ``GET /jobs`` and ``GET /queue`` both answer ``queued_start_estimate``; the gateway
fetches the facts (pools, workers, runs) in a few batched reads and this module, Prefect-free,
does the arithmetic.

A host runs at most ``limit`` jobs at once (its work pool's concurrency limit, else hosts.yaml's).
Each slot is free now, or when the job holding it ends: its progress ETA, else the host's usual
run time (median of recent finished runs) minus what it already ran. Queued jobs take the
earliest free slot in queue order and hold it for the usual run time.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

from core.eta import iso

INF = math.inf


@dataclass(frozen=True)
class RunningJob:
    job_id: str
    elapsed_seconds: float
    eta_seconds: float | None = None  # from its progress (core.eta); None when it has none


@dataclass
class HostQueue:
    """What one host looks like now: what runs, what waits (in queue order), how long jobs take."""

    host: str
    limit: int | None
    online: bool
    running: list[RunningJob] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    usual_seconds: float | None = None
    profiles: dict[str, str | None] = field(default_factory=dict)


@dataclass
class StartEstimate:
    available: bool
    reason: str
    source: str | None
    target_host: str
    profile: str | None
    estimated_start_at: float | None = None
    estimated_start_seconds: float | None = None
    blocking_job_id: str | None = None
    queue_position: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "available": self.available, "kind": "estimated_start", "reason": self.reason, "source": self.source,
            "target_host": self.target_host, "profile": self.profile, "estimated_start_at": iso(self.estimated_start_at),
            "estimated_start_seconds": self.estimated_start_seconds,
        }
        if self.blocking_job_id is not None:
            out["blocking_job_id"] = self.blocking_job_id
        if self.queue_position is not None:
            out["queue_position"] = self.queue_position
        return out


def usual_duration(durations: list[float]) -> float | None:
    """Median of recent run times (None without any)."""
    good = sorted(d for d in durations if d is not None and d >= 0)
    if not good:
        return None
    mid = len(good) // 2
    return good[mid] if len(good) % 2 else (good[mid - 1] + good[mid]) / 2


def _slot_free_in(job: RunningJob, usual: float | None) -> tuple[float, str]:
    """Seconds until ``job`` frees its slot, and how that is known."""
    if job.eta_seconds is not None:
        return max(0.0, job.eta_seconds), "running_eta"
    if usual is not None:
        return max(0.0, usual - job.elapsed_seconds), "host_history"
    return INF, "unknown"


def estimate_starts(q: HostQueue, now: float) -> dict[str, StartEstimate]:
    """A start estimate for every queued job of ``q`` (keyed by job id)."""
    out: dict[str, StartEstimate] = {}

    def unknown(job_id: str, position: int, reason: str, blocking: str | None = None) -> StartEstimate:
        return StartEstimate(False, reason, None, q.host, q.profiles.get(job_id), blocking_job_id=blocking, queue_position=position)

    if not q.online:
        for i, job_id in enumerate(q.queued, 1):
            out[job_id] = unknown(job_id, i, f"no worker online for host {q.host!r}: queued jobs wait until one starts")
        return out
    if q.limit is None:  # no limit: the worker takes every job at its next poll
        for i, job_id in enumerate(q.queued, 1):
            out[job_id] = StartEstimate(True, "the host has no concurrency limit: it starts at the worker's next poll", "free_slot",
                                        q.host, q.profiles.get(job_id), now, 0.0, queue_position=i)
        return out
    # (free in, tie-break, holder, how known): one entry per slot.
    slots: list[tuple[float, int, str | None, str]] = []
    for n, job in enumerate(q.running):
        seconds, how = _slot_free_in(job, q.usual_seconds)
        slots.append((seconds, n, job.job_id, how))
    slots.sort()
    slots = slots[: max(q.limit, 0)] if len(slots) > q.limit else slots
    tie = len(slots)
    while len(slots) < q.limit:
        slots.append((0.0, tie, None, "free_slot"))
        tie += 1
    heapq.heapify(slots)
    for i, job_id in enumerate(q.queued, 1):
        free_in, _, holder, how = heapq.heappop(slots)
        if free_in == INF:
            out[job_id] = unknown(job_id, i, "the jobs ahead of it have no progress ETA and the host has no finished run "
                                  "to learn a run time from", holder)
            heapq.heappush(slots, (INF, tie, job_id, "unknown"))
        else:
            reason = {"free_slot": "a slot is free", "running_eta": f"after job {holder} (its progress ETA)",
                      "host_history": f"after job {holder} (the host's usual run time)"}[how]
            out[job_id] = StartEstimate(True, reason, how, q.host, q.profiles.get(job_id), now + free_in, round(free_in, 1),
                                        blocking_job_id=holder, queue_position=i)
            ends_in = free_in + q.usual_seconds if q.usual_seconds is not None else INF
            heapq.heappush(slots, (ends_in, tie, job_id, "host_history" if ends_in != INF else "unknown"))
        tie += 1
    return out
