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

from core.layout import JobPaths, read_json

POLL_SECONDS = 0.2
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


class FileFollower:
    """Reads the complete lines appended to a file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def read_lines(self, final: bool = False) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if final and self._partial:
            lines.append(self._partial)
            self._partial = b""
        return [ln.decode("utf-8", "replace").rstrip("\r") for ln in lines]


@dataclass
class SupervisedRun:
    returncode: int
    tail: list[str] = field(default_factory=list)
    progress_updates: int = 0
    note: str | None = None  # why the exit code is not the simulator's own, when it is not


class OutputSource(Protocol):
    """A running simulator as the mirror loop sees it (a container or a subprocess)."""

    lines: "queue.Queue[str | None]"  # stdout+stderr lines, None once the stream ends

    @property
    def ended(self) -> bool: ...

    exit_code: int | None


class SubprocessSource:
    """The simulator as a child process (process pools, where there is no Docker)."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str], cwd: str | None = None) -> None:
        self.lines: "queue.Queue[str | None]" = queue.Queue()
        self.proc = subprocess.Popen(
            list(command), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
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


def mirror(
    source: OutputSource,
    *,
    job: JobPaths,
    logger: logging.Logger | logging.LoggerAdapter,
    on_progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> SupervisedRun:
    """Follow ``source`` to its end (or until ``should_stop()``), mirroring its output,
    its log file and its progress."""
    sim_log = FileFollower(job.simulator_log_file)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    dedupe = _Dedupe()
    progress_seen: int | None = None
    updates = 0

    with open(job.log_file, "a", buffering=1, encoding="utf-8") as merged:

        def emit(line: str, origin: str) -> None:
            if not line.strip() or not dedupe.fresh(line, origin):
                return
            merged.write(line + "\n")
            logger.log(level_of(line), line)
            tail.append(line)

        def check_progress() -> None:
            nonlocal progress_seen, updates
            try:
                mtime = job.progress_file.stat().st_mtime_ns
            except OSError:
                return
            if mtime == progress_seen:
                return
            progress_seen = mtime
            data = read_json(job.progress_file)
            if isinstance(data, dict) and on_progress is not None:
                on_progress(data)
                updates += 1

        stream_open = True
        while True:
            ended = source.ended
            while True:
                try:
                    item = source.lines.get(timeout=POLL_SECONDS if stream_open and not ended else 0)
                except queue.Empty:
                    break
                if item is None:
                    stream_open = False
                    break
                emit(item, "out")
            for line in sim_log.read_lines(final=ended and not stream_open):
                emit(line, "file")
            check_progress()
            if (ended and not stream_open) or should_stop():
                break
            if not stream_open:
                time.sleep(POLL_SECONDS)

    code = source.exit_code
    return SupervisedRun(returncode=-1 if code is None else code, tail=list(tail), progress_updates=updates)


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

