"""Mirror a running simulator into Prefect and the job's merged log.

Why this exists: only Python logging inside the flow process reaches Prefect's
log API (container stdout goes to the worker's stdout only), and OPEVA clients
read the job's log file and progress.json. So one loop in the flow process reads
the simulator's output (its container's stdout/stderr, or a subprocess's on
process pools) and its own log file (``logs/<job_id>.log``, which only the
simulator writes), and for each line writes it both to the run logger, at the
line's own level, and to the platform's merged log (``logs/platform.log``, which
only this loop writes); it also turns each new progress.json into an update of a
Prefect progress artifact.

Everything here treats the job as hostile (docs/security.md): its files are read through
core.job_io (no link followed, regular files only, bounded chunks and lines), platform.log
is never written through what the job put at its name, the output mirrored is capped,
and a watchdog stops a job over its disk or process limit.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from dataclasses import dataclass, field
from typing import IO, Protocol

from core.job_io import CHUNK, FileFollower, LineSplitter, folder_usage, open_platform_file, read_json
from core.job_limits import Effective, show_bytes
from core.layout import JobPaths

POLL_SECONDS = 0.2
WATCH_SECONDS = 2.0  # disk and process checks
PROGRESS_SECONDS = 1.0  # at most one progress hand-over (a Prefect artifact update) a second
PIDS_STRIKES = 3  # checks in a row at the process limit before the job is stopped
MAX_BACKLOG = 500  # log records queued for Prefect before the mirror waits (bounded memory)
GROUP_MIN = 64  # a round with this many lines or more ships them grouped
GROUP_LINES = 256  # lines per grouped record,
GROUP_BYTES = 128 << 10  # and characters (Prefect truncates a record over 1 MB of JSON; \uXXXX is 6 bytes)
LINE_QUEUE = 2000
TAIL_LINES = 20
DEDUPE_WINDOW = 500

_LEVEL_NAMES = {
    "TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "SUCCESS": logging.INFO,
    "WARN": logging.WARNING, "WARNING": logging.WARNING, "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL,
    "FATAL": logging.CRITICAL,
}
# "[ERROR] ..." (OPEVA's print style) at the start, or "... | ERROR | ..." (loguru's default format)
_BRACKET = re.compile(r"^\s*\[(TRACE|DEBUG|INFO|SUCCESS|WARN|WARNING|ERROR|CRITICAL|FATAL)\]", re.IGNORECASE)
_PIPE = re.compile(r"\|\s*(TRACE|DEBUG|INFO|SUCCESS|WARNING|ERROR|CRITICAL)\s*\|")


def level_of(line: str) -> int:
    """The level a simulator gave a line, in either OPEVA style; INFO otherwise."""
    match = _BRACKET.match(line) or _PIPE.search(line[:120])
    return _LEVEL_NAMES[match.group(1).upper()] if match else logging.INFO


@dataclass
class SupervisedRun:
    returncode: int
    tail: list[str] = field(default_factory=list)
    progress_updates: int = 0
    note: str | None = None  # why the exit code is not the simulator's own, when it is not
    error_code: str | None = None  # a limit the job hit (core.job_limits.ERROR_CODES)
    error_detail: str | None = None
    lines: int = 0  # lines mirrored into Prefect and platform.log
    bytes: int = 0
    lines_cut: int = 0  # lines over MAX_LINE, cut with a marker
    log_capped: bool = False  # output past the log cap was not mirrored (a marker says so)

    def log_summary(self) -> dict:
        return {"lines": self.lines, "bytes": self.bytes, "lines_cut": self.lines_cut, "capped": self.log_capped}


@dataclass
class MirrorLimits:
    """What the mirror enforces (core.job_limits.Effective gives the numbers)."""

    log_bytes: int = 256 << 20
    disk_bytes: int | None = None
    disk_entries: int | None = None
    wall_seconds: int | None = None  # from the watchdog's start: over it, error_code timed_out

    @classmethod
    def of(cls, bounds: Effective) -> "MirrorLimits":
        """From a job's effective limits (core.job_limits.Effective)."""
        return cls(bounds.log_bytes, bounds.disk_bytes, bounds.disk_entries, bounds.wall_seconds)


class OutputSource(Protocol):
    """A running simulator as the mirror loop sees it (a container or a subprocess)."""

    lines: "queue.Queue[str | None]"  # stdout+stderr lines, None once the stream ends

    @property
    def ended(self) -> bool: ...

    exit_code: int | None


class SubprocessSource:
    """The simulator as a child process (process pools, where there is no Docker)."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str], cwd: str | None = None) -> None:
        self.lines: "queue.Queue[str | None]" = queue.Queue(maxsize=LINE_QUEUE)
        self.proc = subprocess.Popen(
            list(command), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()

    def _pump(self, stream: IO[bytes]) -> None:
        splitter = LineSplitter()
        while chunk := os.read(stream.fileno(), CHUNK):
            for line in splitter.feed(chunk):
                self.lines.put(line)
        for line in splitter.flush():
            self.lines.put(line)
        self.lines.put(None)

    @property
    def ended(self) -> bool:
        return self.proc.poll() is not None

    @property
    def exit_code(self) -> int | None:
        return self.proc.returncode

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class _Dedupe:
    """A simulator that logs to stderr and to its file shows each line twice; keep one."""

    def __init__(self) -> None:
        self.pending: dict[str, deque[str]] = {"out": deque(maxlen=DEDUPE_WINDOW), "file": deque(maxlen=DEDUPE_WINDOW)}

    def fresh(self, line: str, source: str) -> bool:
        other = self.pending["file" if source == "out" else "out"]
        try:
            other.remove(line)
            return False
        except ValueError:
            self.pending[source].append(line)
            return True


class Watchdog(threading.Thread):
    """Checks the job's folder size and its process count every WATCH_SECONDS, in its own
    thread (an engine stats call may take a second; the mirror must not wait for it).
    ``tripped`` is set with ``error_code`` when the job must be stopped."""

    def __init__(self, job_dir: Path, limits: MirrorLimits, pids: Callable[[], tuple[int, int] | None] | None) -> None:
        super().__init__(daemon=True, name="job-watchdog")
        self.job_dir, self.limits, self.pids = job_dir, limits, pids
        self.tripped = threading.Event()
        self.done = threading.Event()
        self.error_code: str | None = None
        self.detail: str | None = None
        self._strikes = 0
        self.started = time.monotonic()

    def run(self) -> None:
        while not self.done.wait(WATCH_SECONDS):
            try:
                self.check()
            except Exception as exc:  # a failed check must not end the job
                logging.getLogger("opeva.supervise").warning("job check failed: %s", exc)
            if self.tripped.is_set():
                return

    def check(self) -> None:
        lim = self.limits
        if lim.wall_seconds and time.monotonic() - self.started > lim.wall_seconds:
            return self._trip("timed_out", f"the simulator ran over its time limit of {lim.wall_seconds} s")
        if lim.disk_bytes or lim.disk_entries:
            used, entries = folder_usage(self.job_dir, max_entries=(lim.disk_entries or 10**9) + 1)
            if lim.disk_bytes and used > lim.disk_bytes:
                return self._trip("disk_limit", f"the job's folder uses {show_bytes(used)}, over its disk limit of {show_bytes(lim.disk_bytes)}")
            if lim.disk_entries and entries > lim.disk_entries:
                return self._trip("disk_limit", f"the job's folder holds over {lim.disk_entries} files and folders, its limit")
        counted = self.pids() if self.pids else None
        if counted and counted[1] and counted[0] >= counted[1] - 1:
            self._strikes += 1
            if self._strikes >= PIDS_STRIKES:
                return self._trip("pids_limit", f"the job stayed at its process limit ({counted[1]}) for {PIDS_STRIKES} checks")
        else:
            self._strikes = 0

    def _trip(self, code: str, detail: str) -> None:
        self.error_code, self.detail = code, detail
        self.tripped.set()


def prefect_log_backlog() -> int:
    """Log records the run's logger queued for Prefect's API and not yet sent."""
    from prefect.logging.handlers import APILogWorker

    with APILogWorker._instance_cache_lock:
        workers = [w for w in APILogWorker._instances.values() if isinstance(w, APILogWorker)]
    return sum(w._queue.qsize() for w in workers)


class _MergedLog:
    """Each mirrored line: to Prefect's logger, to platform.log, counted against the cap."""

    def __init__(self, job: JobPaths, logger: logging.Logger | logging.LoggerAdapter, run: SupervisedRun, cap: int) -> None:
        self.fd = open_platform_file(job.dir, job.log_file.relative_to(job.dir))
        self.logger, self.run, self.cap = logger, run, cap
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.dedupe = _Dedupe()
        self.buffer: list[bytes] = []
        self.records: list[tuple[int, str]] = []

    def emit(self, line: str, origin: str) -> None:
        if self.run.log_capped or not line.strip() or not self.dedupe.fresh(line, origin):
            return
        data = (line + "\n").encode("utf-8", "replace")
        if self.run.bytes + len(data) > self.cap:
            self.run.log_capped = True
            line = (f"[WARNING] log cap reached: the first {show_bytes(self.cap)} of this job's output were kept; "
                    "the rest is not mirrored (the job goes on; hosts.yaml limits.log_bytes)")
            data = (line + "\n").encode()
        self.buffer.append(data)
        self.records.append((level_of(line), line))
        self.tail.append(line)
        self.run.lines += 1
        self.run.bytes += len(data)
        if "[... line cut by the platform" in line:
            self.run.lines_cut += 1

    def flush(self) -> None:
        """Write this round's lines to platform.log and hand them to Prefect's logger: one
        record per line, or, for a flood (GROUP_MIN lines or more in one round), one record
        per run of up to GROUP_LINES lines of the same level (Prefect's log shipper moves
        records one at a time between threads: 200k single-line records took minutes)."""
        if self.buffer:
            os.write(self.fd, b"".join(self.buffer))
            self.buffer.clear()
        records, self.records = self.records, []
        if len(records) < GROUP_MIN:
            for level, line in records:
                self.logger.log(level, line)
            return
        group: list[str] = []
        size = 0
        for i, (level, line) in enumerate(records):
            group.append(line)
            size += len(line) + 1
            nxt = records[i + 1] if i + 1 < len(records) else None
            last = nxt is None or nxt[0] != level or len(nxt[1]) > 1024 or len(line) > 1024  # long lines go alone
            if last or len(group) >= GROUP_LINES or size >= GROUP_BYTES:
                self.logger.log(level, "\n".join(group))
                group, size = [], 0

    def close(self) -> None:
        self.flush()
        os.close(self.fd)


class _ProgressWatch:
    """Hands progress.json to ``on_progress`` when the job rewrote it (read safely), at most once per
    ``every`` seconds and once at the end (``final``). Each hand-over is a Prefect artifact update (an
    API write): OPEVA's image rewrites the file every step, and 5 writes a second took CPU from the
    simulation on 2 cores (bench/real_image.py). ``/progress`` reads the file: it stays fresh."""

    def __init__(self, job: JobPaths, run: SupervisedRun, on_progress: Callable[[dict], None] | None,
                 every: float = PROGRESS_SECONDS) -> None:
        self.job, self.run, self.on_progress, self.every = job, run, on_progress, every
        self.seen: int | None = None
        self.handed_at = float("-inf")

    def __call__(self, final: bool = False) -> None:
        if not final and time.monotonic() - self.handed_at < self.every:
            return  # a change made meanwhile is handed at the next call after the interval
        try:
            mtime = os.stat(self.job.progress_file, follow_symlinks=False).st_mtime_ns
        except OSError:
            return
        if mtime == self.seen:
            return
        self.seen = mtime
        data = read_json(self.job.dir, self.job.progress_file.relative_to(self.job.dir))
        if isinstance(data, dict) and self.on_progress is not None:
            self.handed_at = time.monotonic()
            self.on_progress(data)
            self.run.progress_updates += 1


def mirror(
    source: OutputSource,
    *,
    job: JobPaths,
    logger: logging.Logger | logging.LoggerAdapter,
    on_progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    limits: MirrorLimits | None = None,
    pids: Callable[[], tuple[int, int] | None] | None = None,
    backlog: Callable[[], int] = lambda: 0,
    log_offset: int = 0,
    checkpoint: Callable[[int | None], None] | None = None,
) -> SupervisedRun:
    """Follow ``source`` to its end (or until ``should_stop()`` or a limit), mirroring its
    output, its log file and its progress, in bounded memory: files are read through
    core.job_io (no link followed, bounded chunks and lines), and reading waits while
    ``backlog()`` (records not yet shipped to Prefect) is over MAX_BACKLOG. A resumed watch
    (flows/slurm_run.py) starts the log file at ``log_offset`` and is told after each written
    round how far the log file's lines were mirrored (``checkpoint``)."""
    limits = limits or MirrorLimits()
    run = SupervisedRun(returncode=-1)
    sim_log = FileFollower(job.dir, job.simulator_log_file.relative_to(job.dir))
    sim_log.offset = log_offset
    watchdog = Watchdog(job.dir, limits, pids)
    watchdog.start()
    merged = _MergedLog(job, logger, run, limits.log_bytes)
    check_progress = _ProgressWatch(job, run, on_progress)

    try:
        stream_open, file_capped = True, False
        while True:
            ended = source.ended
            stop = should_stop() or watchdog.tripped.is_set()
            if not stop and backlog() > MAX_BACKLOG:
                time.sleep(POLL_SECONDS / 4)  # Prefect is behind: let it catch up before reading on
                continue
            for i in range(LINE_QUEUE):
                try:  # wait for the first line only: the file and the limits are checked each round
                    item = source.lines.get(timeout=POLL_SECONDS if i == 0 and stream_open and not ended else 0)
                except queue.Empty:
                    break
                if item is None:
                    stream_open = False
                    break
                merged.emit(item, "out")
            final = ended and not stream_open
            lines, more = sim_log.read_lines(final=final) if not file_capped else ([], False)
            if sim_log.offset >= limits.log_bytes and not file_capped:  # a sparse terabyte costs no more than the cap
                file_capped, more = True, False
                lines.append(f"[WARNING] the job's log file is over the log cap ({show_bytes(limits.log_bytes)}); "
                             "it is not read further (hosts.yaml limits.log_bytes)")
            for line in lines:
                merged.emit(line, "file")
            merged.flush()
            if checkpoint is not None:
                checkpoint(sim_log.resume_offset())
            done = stop or (final and not more)
            check_progress(final=done)
            if done:
                break
            if not stream_open and not more:
                time.sleep(POLL_SECONDS)
    finally:
        watchdog.done.set()
        merged.close()
    if watchdog.tripped.is_set():
        run.error_code, run.error_detail = watchdog.error_code, watchdog.detail
        logger.error("[ERROR] %s; stopping the job", watchdog.detail)
    code = source.exit_code
    run.returncode = -1 if code is None else code
    run.tail = list(merged.tail)
    return run


def contract_env(job: JobPaths, *, data_dir: str, job_dir: str, config_path: str, job_name: str) -> dict[str, str]:
    """The simulator contract's variables (README "Simulator contract"), as paths the simulator sees."""
    logs = f"{job_dir}/logs"
    return {
        "OPEVA_JOB_ID": job.job_id,
        "OPEVA_JOB_NAME": job_name,
        "OPEVA_BASE_DIR": data_dir,
        "OPEVA_DATA_DIR": data_dir,
        "OPEVA_CONFIG_PATH": config_path,
        "OPEVA_JOB_DIR": job_dir,
        "OPEVA_LOG_FILE": f"{logs}/{job.simulator_log_file.name}",
        "OPEVA_PROGRESS_FILE": f"{job_dir}/progress/{job.progress_file.name}",
        "OPEVA_RESULT_FILE": f"{job_dir}/results/{job.result_file.name}",
        "PYTHONUNBUFFERED": "1",
    }


def subprocess_env(contract: Mapping[str, str]) -> dict[str, str]:
    """A subprocess simulator (process pools only) keeps the flow's PATH and Python, nothing secret."""
    keep = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "HOME", "TMPDIR")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, **contract}

