"""What one job may use: processes, memory, CPUs, open files, log size, disk in its folder.

Why here and not in the hosts file model alone: three places apply the same numbers
(the API refuses a request over its host's limits with 422; the flow turns them into
the simulator container's settings; the supervisor watches the log and the folder), so
the defaults, the parsing and the "a job may only lower" rule live in one place.

The host's ``limits:`` (hosts.yaml) are the defaults *and* the ceilings; a job's
``resources`` may only lower them. The error codes a job can end with are listed in
:data:`ERROR_CODES`; the flow writes them into the failed state's message as
``error_code=<code>: ...`` and into ``job_info.json`` as ``error_code``.
No Prefect import.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.limits import LimitExceeded

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
MAX_BYTES = 1 << 50  # 1 PiB: beyond any real machine; bigger is a typo or an attack
_SIZE = re.compile(r"^\s*([0-9]{1,16})(\.[0-9]{1,6})?\s*([bkmgtBKMGT]?)[iI]?[bB]?\s*$")
_UNITS = {"": 1, "b": 1, "k": KIB, "m": MIB, "g": GIB, "t": 1 << 40}

# error_code -> what it means (docs/security.md lists them too)
ERROR_CODES = {
    "out_of_memory": "the job used more memory than its limit and was killed by the kernel",
    "pids_limit": "the job stayed at its process limit (a fork bomb or a runaway pool) and was stopped",
    "disk_limit": "the job's folder grew over its disk limit and the job was stopped",
    "timed_out": "the simulator ran longer than its time limit (wall_seconds) and was stopped; the run ends TimedOut",
}
MAX_WALL_SECONDS = 366 * 86400


def parse_bytes(value: Any, *, what: str = "size") -> int:
    """``512m``, ``8g``, ``1.5G``, ``2GiB``, or an integer number of bytes; LimitExceeded past 1 PiB."""
    if isinstance(value, bool):
        raise LimitExceeded(f"{what} must be a size such as '512m' or a number of bytes")
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE.match(str(value))
        if not m:
            raise LimitExceeded(f"{what} {str(value)[:40]!r} is not a size such as '512m' or '8g'")
        n = int(float(m.group(1) + (m.group(2) or "")) * _UNITS[m.group(3).lower()])
    if n <= 0 or n > MAX_BYTES:
        raise LimitExceeded(f"{what} {str(value)[:40]!r} must be between 1 byte and 1 PiB")
    return n


def show_bytes(n: int) -> str:
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} B"


class JobLimits(BaseModel):
    """A host's ``limits:`` (hosts.yaml); every field has a safe default, so every job has limits."""

    model_config = ConfigDict(extra="forbid")

    pids: int = Field(512, ge=16, le=1_000_000, description="Processes and threads of the job's container.")
    memory: str | int = Field("4g", description="Memory (no swap beyond it); a job over it is killed: error_code out_of_memory.")
    cpus: float | None = Field(None, gt=0, le=1024, description="CPU cores; null: all of the host's, shared fairly.")
    nofile: int = Field(4096, ge=64, le=1_048_576, description="Open files per process (soft and hard).")
    log_bytes: int | str = Field("256m", description="Log bytes mirrored into Prefect and platform.log; past it a marker, the job goes on.")
    disk_bytes: int | str = Field("10g", description="Bytes on disk in the job's folder; over it the job is stopped: disk_limit.")
    disk_entries: int = Field(200_000, ge=100, le=100_000_000, description="Files and folders in the job's folder.")
    wall_seconds: int | None = Field(None, ge=1, le=MAX_WALL_SECONDS, description=(
        "Run time of the simulator; over it the job is stopped (error_code timed_out, Prefect state TimedOut). null: no limit."))

    def model_post_init(self, _: Any) -> None:
        for name in ("memory", "log_bytes", "disk_bytes"):
            parse_bytes(getattr(self, name), what=f"limits.{name}")

    @property
    def memory_bytes(self) -> int:
        return parse_bytes(self.memory, what="memory")

    @property
    def log_bytes_n(self) -> int:
        return parse_bytes(self.log_bytes, what="log_bytes")

    @property
    def disk_bytes_n(self) -> int:
        return parse_bytes(self.disk_bytes, what="disk_bytes")


class Effective(BaseModel):
    """The limits one job runs with (numbers only), after the job's own lowering."""

    pids: int
    memory: int
    cpus: float | None
    nofile: int
    log_bytes: int
    disk_bytes: int
    disk_entries: int
    wall_seconds: int | None = None

    def create_kwargs(self) -> dict[str, Any]:
        """Docker ``containers.create`` settings of the simulator's container."""
        from docker.types import LogConfig, Ulimit

        kwargs: dict[str, Any] = {
            "pids_limit": self.pids,
            "mem_limit": self.memory,
            "memswap_limit": self.memory,  # no swap beyond the limit: over it is an OOM kill
            "ulimits": [Ulimit(name="nofile", soft=self.nofile, hard=self.nofile)],
            # the engine's copy of stdout: rotated, so a flood cannot fill the engine's disk
            "log_config": LogConfig(type="json-file", config={"max-size": str(max(self.log_bytes // 2, MIB)), "max-file": "2"}),
        }
        if self.cpus:
            kwargs["nano_cpus"] = int(self.cpus * 1e9)
        # uid 65534 can write only /tmp and /var/tmp of most images: in memory (counted in the
        # memory limit), so a disk filler there cannot fill the engine's disk either
        size = f"size={min(self.memory, self.disk_bytes)},mode=1777"
        kwargs["tmpfs"] = {"/tmp": size, "/var/tmp": size}
        return kwargs


# What a job may ask for (``resources`` in the REST body, job variable ``limits``): only lower.
JOB_FIELDS = ("pids", "memory", "cpus", "nofile", "log_bytes", "disk_bytes", "wall_seconds")


def effective(host_limits: JobLimits, asked: dict[str, Any] | None, *, host_name: str = "", strict: bool = True) -> Effective:
    """The host's limits lowered by what the job asked; over a ceiling: LimitExceeded
    (``strict``, the API: 422) or the ceiling (the flow, for runs made by hand)."""
    out: dict[str, Any] = {
        "pids": host_limits.pids, "memory": host_limits.memory_bytes, "cpus": host_limits.cpus,
        "nofile": host_limits.nofile, "log_bytes": host_limits.log_bytes_n, "disk_bytes": host_limits.disk_bytes_n,
        "disk_entries": host_limits.disk_entries, "wall_seconds": host_limits.wall_seconds,
    }
    for key, raw in (asked or {}).items():
        if key not in JOB_FIELDS or raw is None:
            continue
        value: Any = parse_bytes(raw, what=key) if key in ("memory", "log_bytes", "disk_bytes") else raw
        if key == "cpus":
            value = float(value)
        elif key not in ("memory", "log_bytes", "disk_bytes"):
            value = int(value)
        if value <= 0:
            raise LimitExceeded(f"resources.{key} must be positive")
        ceiling = out[key]
        if ceiling is not None and value > ceiling:
            if strict:
                shown = show_bytes(ceiling) if key in ("memory", "log_bytes", "disk_bytes") else ceiling
                raise LimitExceeded(f"resources.{key} {raw!r} is over host {host_name!r}'s limit ({shown}); a job may only lower it")
            value = ceiling
        out[key] = value
    return Effective(**out)


def error_message(code: str, detail: str) -> str:
    """A failed state's message, in the form clients classify: ``error_code=<code>: <detail>``."""
    return f"error_code={code}: {detail}"
