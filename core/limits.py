"""Input limits, in one place: how big, deep and many anything a caller sends may be.

Why limits and not just validation: each of these inputs is valid-looking and
costs the server far more than the caller (alias bombs, 600-deep JSON, a
5000-digit integer, a 0001-9999 dataset at one-minute steps, a thousand log
followers). The numbers are generous for real OPEVA configs and datasets.
Prefect-free: the API and the tools use it.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
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

class _Refused(Exception):
    pass



def json_body_problem(body: bytes, limits: Limits = LIMITS) -> str | None:
    """What is wrong with a JSON body's shape (too deep, an unrepresentable number), or None.

    Parsed once with hooks on every number (about 100 ms for 1.5 MB, twice json.loads), before
    FastAPI's own parse, so Python's recursion and int-digit limits are never reached
    there. A body that is not JSON at all is left to FastAPI's 422.
    """

    def parse_int(text: str) -> int:
        if len(text) > limits.max_int_digits + 1 and len(text.lstrip("-")) > limits.max_int_digits:
            raise _Refused(f"a number with more than {limits.max_int_digits} digits cannot be represented")
        return 0  # the value itself is not needed: FastAPI parses the body again

    def parse_float(text: str) -> float:
        if len(text) > limits.max_int_digits + 20 or math.isinf(float(text)):
            raise _Refused("a number too large to be represented")
        return 0.0

    def parse_constant(text: str) -> float:
        raise _Refused(f"{text} is not a JSON number")

    try:
        value = json.loads(body, parse_int=parse_int, parse_float=parse_float, parse_constant=parse_constant)
    except _Refused as exc:
        return str(exc)
    except RecursionError:
        return f"JSON nested more than {limits.max_depth} levels deep"
    except ValueError:  # not JSON (or not UTF-8): FastAPI says so
        return None
    try:
        check_depth(value, limits, what="JSON")
    except LimitExceeded as exc:
        return str(exc)
    return None


def check_depth(value: object, limits: Limits = LIMITS, what: str = "value") -> None:
    """Raise LimitExceeded if decoded data (a JSON body, a stored config) nests too deep.

    Level by level, containers only, so the cost is one type check per value.
    """
    containers = (dict, list)
    level = [value] if type(value) in containers else []
    depth = 0
    while level:
        depth += 1
        if depth > limits.max_depth:
            raise LimitExceeded(f"{what} is nested more than {limits.max_depth} levels deep")
        below: list = []
        for item in level:
            below += [c for c in (item.values() if type(item) is dict else item) if type(c) in containers]
        level = below


# -- dataset ranges --------------------------------------------------------------

def check_dataset_rows(start: datetime, until: datetime, step_seconds: int, limits: Limits = LIMITS) -> int:
    """Rows a dataset of that range and time step would have; LimitExceeded when over the cap."""
    if until <= start:
        raise LimitExceeded("until_ts must be after from_ts")
    rows = int((until - start).total_seconds() // step_seconds)
    if rows > limits.max_dataset_rows:
        raise LimitExceeded(
            f"the range gives {rows} rows at {step_seconds}-second steps; the limit is {limits.max_dataset_rows} "
            "(shorten the range or use a longer time step)"
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
        self._lock = threading.RLock()  # RLock: a lease may be released from __del__

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

    def __del__(self) -> None:
        # A stream cancelled before its generator ever ran never reaches its ``finally``:
        # the slot then goes back when the last reference to the lease does.
        self.release()

    @contextmanager
    def held(self) -> Iterator[None]:
        try:
            yield
        finally:
            self.release()


@dataclass(frozen=True)
class Resources:
    """Per-job container limits, passed as Docker job variables of the flow run."""

    cpus: float | None = None
    memory: str | None = None  # Docker notation: "2g", "512m"
    gpus: int | None = None  # -1 = all

    def job_variables(self) -> dict[str, Any]:
        variables: dict[str, Any] = {}
        create: dict[str, Any] = {}
        if self.cpus:
            create["nano_cpus"] = int(self.cpus * 1e9)
        if self.gpus:
            create["device_requests"] = [{"Driver": "nvidia", "Count": self.gpus, "Capabilities": [["gpu"]]}]
        if create:
            variables["container_create_kwargs"] = create
        if self.memory:
            variables["mem_limit"] = self.memory
        return variables
