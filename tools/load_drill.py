"""A paced stream of OPEVA API requests, with faults injected at set times.

Why: the scaled layout (deployments/scaled.py) is worth having only if a dead Prefect
server or API replica costs no request; the e2e test (tests/e2e/test_scaled.py) and the
bench (bench/scaled.py) drive the same stream and count every answer. The mix is what
the UIs do while a user submits: a submission every ``submit_every`` requests (each with
its own Idempotency-Key, so a retried submission cannot make two jobs), the rest reads
of job status, the job list and the hosts.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx


@dataclass
class Outcome:
    at: float  # seconds from the start of the stream
    what: str
    seconds: float
    status: int | None  # None: no answer (connection error, timeout)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Drill:
    outcomes: list[Outcome] = field(default_factory=list)
    faults: list[tuple[float, str]] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def latencies(self) -> list[float]:
        return [o.seconds for o in self.outcomes if o.ok]


def run_drill(api_url: str, submit_body: dict, *, rate: float = 20.0, seconds: float = 15.0, submit_every: int = 10,
              faults: dict[float, tuple[str, Callable[[], None]]] | None = None, headers: dict[str, str] | None = None,
              timeout: float = 30.0) -> Drill:
    """``rate`` requests per second for ``seconds``, issued on schedule (not after the previous
    answer, so a slow answer does not slow the stream); ``faults``: time -> (name, action)."""
    drill = Drill()
    lock = threading.Lock()
    job_ids: list[str] = []
    client = httpx.Client(base_url=api_url, timeout=timeout, headers=headers or {}, limits=httpx.Limits(max_connections=64))

    def one(n: int, start: float) -> None:
        t0 = time.monotonic()
        if n % submit_every == 0 or not job_ids:
            what, method, path, kw = "submit", "POST", "/run-simulation", {"json": submit_body, "headers": {"Idempotency-Key": str(uuid.uuid4())}}
        else:
            what, method, path, kw = [("status", "GET", f"/status/{job_ids[n % len(job_ids)]}", {}), ("jobs", "GET", "/jobs", {}),
                                      ("hosts", "GET", "/hosts", {})][n % 3]
        try:
            r = client.request(method, path, **kw)
            status, error = r.status_code, "" if r.is_success else r.text[:200]
            if what == "submit" and r.is_success:
                with lock:
                    job_ids.append(r.json()["job_id"])
        except httpx.HTTPError as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"
        with lock:
            drill.outcomes.append(Outcome(t0 - start, what, time.monotonic() - t0, status, error))

    pending = sorted((faults or {}).items())
    start = time.monotonic()
    total = int(rate * seconds)
    with ThreadPoolExecutor(max_workers=32) as pool:
        for n in range(total):
            due = start + n / rate
            while pending and pending[0][0] <= due - start:
                _, (name, action) = pending.pop(0)
                action()
                drill.faults.append((time.monotonic() - start, name))
            time.sleep(max(0.0, due - time.monotonic()))
            pool.submit(one, n, start)
    client.close()
    drill.outcomes.sort(key=lambda o: o.at)
    return drill


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)
