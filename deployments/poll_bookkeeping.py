"""A Prefect server fix: a worker's poll records itself at most once every few seconds per pool.

Why: every ``get_scheduled_flow_runs`` poll (each worker, every ``PREFECT_WORKER_QUERY_SECONDS``)
queues two background tasks on the server's docket after reading the runs: ``mark_work_queues_ready``
(the pool's queues' ``last_polled``) and ``mark_deployments_ready`` (its deployments' ``last_polled``
and status), each a write transaction. Measured on this machine's SQLite server, 6 pools polled 12
times a second: 28.8 ms of server CPU per poll, 14.6 ms without the two tasks; an idle platform
with 6 workers at 0.5 s kept the server at 0.37 of a core, a fifth of a 2-core host
(bench/lab.py --idle-seconds). The two writes only keep "last polled" fresh, and Prefect marks a
queue or deployment not ready after 60 s without one (the foreman's
``work_queue_last_polled_timeout``), so a few seconds' delay changes nothing a user sees.

The fix: per pool, each task runs for the first poll and then at most once per ``window`` seconds.
A poll that finds a queue NOT_READY (a worker coming back) always records at once, so a queue
turns ready as before. What the worker gets back, its runs, is untouched: only the bookkeeping
after the answer is skipped. Pool status (online / offline in ``/hosts``) comes from worker
heartbeats and the foreman, not from these tasks.

Applied with the other server patches (deployments/prefect_server.py), so only on the Prefect
version they were checked on; ``OPEVA_POLL_RECORD_SECONDS=0`` turns it off.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

TASKS = frozenset({"mark_work_queues_ready", "mark_deployments_ready"})
DEFAULT_WINDOW_SECONDS = 5.0
MAX_KEYS = 4096  # one key per pool and task: a bound that is never reached in practice


def window_seconds() -> float:
    """``OPEVA_POLL_RECORD_SECONDS`` (default 5; 0 records every poll, as stock Prefect)."""
    raw = os.environ.get("OPEVA_POLL_RECORD_SECONDS", "")
    if not raw:
        return DEFAULT_WINDOW_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0 or value > 50:  # past the 60 s readiness timeout a live queue could read not ready
        raise ValueError(f"OPEVA_POLL_RECORD_SECONDS must be between 0 and 50 seconds, not {raw!r}")
    return value


class PollRecords:
    """Decides, per docket key (one per pool and task), whether a poll's bookkeeping runs now."""

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self.last: dict[str, float] = {}

    def due(self, task: str, key: str | None, kwargs: Mapping[str, Any]) -> bool:
        if task not in TASKS or key is None or self.window <= 0:
            return True
        if kwargs.get("ready_work_queue_ids"):  # a NOT_READY queue polled again: ready at once
            self.last[key] = self.clock()
            return True
        now = self.clock()
        if now - self.last.get(key, float("-inf")) < self.window:
            return False
        if len(self.last) >= MAX_KEYS:
            self.last.clear()
        self.last[key] = now
        return True


def install(window: float | None = None) -> PollRecords:
    """Wrap ``Docket.add`` in this process: the two bookkeeping tasks are queued only when due.

    ``Docket.add`` returns the coroutine function that queues the task; the route awaits it and
    ignores what it returns, so a skipped one returns None without touching the docket."""
    import docket

    records = PollRecords(window_seconds() if window is None else window)
    original = docket.Docket.add

    def add(self: Any, function: Any, when: Any = None, key: str | None = None) -> Any:
        schedule = original(self, function, when, key)
        task = function if isinstance(function, str) else getattr(function, "__name__", "")
        if task not in TASKS:
            return schedule

        async def when_due(*args: Any, **kwargs: Any) -> Any:
            if records.due(task, key, kwargs):
                return await schedule(*args, **kwargs)
            return None

        return when_due

    docket.Docket.add = add  # type: ignore[method-assign]
    return records
