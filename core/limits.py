"""Input limits, in one place: how big, deep and many anything a caller sends may be.

Why limits and not just validation: each of these inputs is valid-looking and
costs the server far more than the caller (alias bombs, 600-deep JSON, a
5000-digit integer, a 0001-9999 dataset at one-minute steps, a thousand log
followers). The numbers are generous for real OPEVA configs and datasets.
Prefect-free: the API and the tools use it.
"""

from __future__ import annotations

import os
import re
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from collections.abc import Iterator


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass(frozen=True)
class Limits:
    max_depth: int = 64              # nesting of a JSON body or a YAML document
    max_int_digits: int = 100        # integers beyond this are not numbers anyone means
    max_yaml_bytes: int = 1 << 20    # a config file
    max_yaml_aliases: int = 100
    max_nodes: int = 200_000         # values in a YAML document once aliases are expanded
    max_dataset_rows: int = _env_int("OPEVA_MAX_DATASET_ROWS", 1_100_000)  # ~2 years at 1-minute steps
    max_followers_per_job: int = _env_int("OPEVA_MAX_FOLLOWERS_PER_JOB", 4)
    max_followers: int = _env_int("OPEVA_MAX_FOLLOWERS", 64)


LIMITS = Limits()


class LimitExceeded(ValueError):
    """An input over a limit: answered 422 (or 429 for too many followers) with this message."""

    status_code = 422


class TooManyFollowers(LimitExceeded):
    status_code = 429


# -- JSON bodies ---------------------------------------------------------------

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def json_body_problem(body: bytes, limits: Limits = LIMITS) -> str | None:
    """What is wrong with a JSON body's shape (too deep, an unrepresentable number), or None.

    Scanned with regular expressions (C speed) before any parser sees the body, so
    Python's recursion limit and int-parsing limit are never reached.
    """
    bare = _JSON_STRING.sub(b'""', body)
    depth = deepest = 0
    for m in _BRACKETS.finditer(bare):
        if m.group() in (b"[", b"{"):
            depth += 1
            if depth > limits.max_depth:
                return f"JSON nested more than {limits.max_depth} levels deep"
        else:
            depth -= 1
        deepest = max(deepest, depth)
    if re.search(rb"[0-9]{%d,}" % (limits.max_int_digits + 1), bare):
        return f"a number with more than {limits.max_int_digits} digits cannot be represented"
    for m in _EXPONENT.finditer(bare):
        if int(m.group(1)) > 308:
            return "a number too large to be represented (exponent over 308)"
    return None


_EXPONENT = re.compile(rb"[0-9][eE]\+?0*([0-9]{3,})")


def check_depth(value: object, limits: Limits = LIMITS, what: str = "value") -> None:
    """Raise LimitExceeded if decoded data (e.g. a stored config) nests too deep."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limits.max_depth:
                raise LimitExceeded(f"{what} is nested more than {limits.max_depth} levels deep")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children)


# -- dataset ranges --------------------------------------------------------------

def check_dataset_rows(start: datetime, until: datetime, period_minutes: int, limits: Limits = LIMITS) -> int:
    """Rows a dataset of that range and period would have; LimitExceeded when over the cap."""
    if until <= start:
        raise LimitExceeded("until_ts must be after from_ts")
    rows = int((until - start).total_seconds() // (period_minutes * 60))
    if rows > limits.max_dataset_rows:
        raise LimitExceeded(
            f"the range gives {rows} rows at {period_minutes}-minute steps; the limit is {limits.max_dataset_rows} "
            "(shorten the range or use a longer period)"
        )
    return rows


# -- log followers -----------------------------------------------------------------

class FollowerLimiter:
    """Counts open ``?follow=true`` streams, per job and in all, and refuses past the caps.

    Each follower polls Prefect twice a second for as long as it stays connected,
    so followers are capped like connections. Thread-safe (sync and async routes).
    """

    def __init__(self, per_job: int = LIMITS.max_followers_per_job, total: int = LIMITS.max_followers) -> None:
        self.per_job, self.total = per_job, total
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def acquire(self, job_id: str) -> "FollowerLease":
        with self._lock:
            if sum(self._open.values()) >= self.total:
                raise TooManyFollowers(f"too many log followers ({self.total} in all); try again later or use follow=false")
            if self._open[job_id] >= self.per_job:
                raise TooManyFollowers(
                    f"too many log followers for job {job_id} ({self.per_job}); close one or use follow=false"
                )
            self._open[job_id] += 1
        return FollowerLease(self, job_id)

    def lease(self, job_id: str, *, follow: bool = True) -> "FollowerLease":
        """A slot for a following reader; a reader that does not follow needs none."""
        return self.acquire(job_id) if follow else FollowerLease(None, job_id)

    def _release(self, job_id: str) -> None:
        with self._lock:
            self._open[job_id] -= 1
            if self._open[job_id] <= 0:
                del self._open[job_id]

    def open_count(self, job_id: str | None = None) -> int:
        with self._lock:
            return self._open[job_id] if job_id else sum(self._open.values())


class FollowerLease:
    """One follower's slot; ``release`` is idempotent (called from the stream's ``finally``)."""

    def __init__(self, limiter: FollowerLimiter | None, job_id: str) -> None:
        self._limiter, self._job_id, self._released = limiter, job_id, limiter is None

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._limiter._release(self._job_id)  # type: ignore[union-attr]

    @contextmanager
    def held(self) -> Iterator[None]:
        try:
            yield
        finally:
            self.release()
