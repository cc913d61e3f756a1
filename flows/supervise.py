"""Run a simulator subprocess and mirror what it writes into Prefect.

Why this exists: only Python logging inside the flow process reaches Prefect's
log API (container stdout goes to the worker's stdout only), and OPEVA clients
read the job log file and progress.json. So one loop in the flow process reads
the simulator's stdout and its own log file, and for each line writes it both to
the run logger and to the OPEVA job log (the flow is that file's only writer);
it also turns each new progress.json into an update of a Prefect progress
artifact.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from core.layout import JobPaths, read_json

POLL_SECONDS = 0.2
TAIL_LINES = 20

_LEVELS = (("[ERROR]", logging.ERROR), ("[CRITICAL]", logging.CRITICAL), ("[WARNING]", logging.WARNING), ("[WARN]", logging.WARNING), ("[DEBUG]", logging.DEBUG))


def level_of(line: str) -> int:
    """OPEVA simulators prefix lines with ``[LEVEL]``; keep that level in Prefect."""
    head = line.lstrip()[:12].upper()
    for prefix, level in _LEVELS:
        if head.startswith(prefix):
            return level
    return logging.INFO


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


def _pump_stdout(stream: IO[bytes], out: "queue.Queue[str | None]") -> None:
    for raw in iter(stream.readline, b""):
        out.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
    out.put(None)


def supervise(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    job: JobPaths,
    logger: logging.Logger | logging.LoggerAdapter,
    on_progress: Callable[[dict], None] | None = None,
    cwd: str | None = None,
) -> SupervisedRun:
    """Run ``command`` to completion, mirroring its output and progress as it goes."""
    lines: "queue.Queue[str | None]" = queue.Queue()
    sim_log = FileFollower(job.simulator_log_file)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    progress_seen: float | None = None
    updates = 0

    proc = subprocess.Popen(
        list(command),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    reader = threading.Thread(target=_pump_stdout, args=(proc.stdout, lines), daemon=True)
    reader.start()

    with open(job.log_file, "a", buffering=1, encoding="utf-8") as job_log:

        def emit(line: str) -> None:
            job_log.write(line + "\n")
            logger.log(level_of(line), line)
            tail.append(line)

        def check_progress() -> None:
            nonlocal progress_seen, updates
            try:
                mtime = job.progress_file.stat().st_mtime_ns
            except FileNotFoundError:
                return
            if mtime == progress_seen:
                return
            progress_seen = mtime
            data = read_json(job.progress_file)
            if isinstance(data, dict) and on_progress is not None:
                on_progress(data)
                updates += 1

        stdout_open = True
        while True:
            exited = proc.poll() is not None
            while True:
                try:
                    item = lines.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stdout_open = False
                else:
                    emit(item)
            for line in sim_log.read_lines(final=exited and not stdout_open):
                emit(line)
            check_progress()
            if exited and not stdout_open:
                break
            if exited:
                reader.join(timeout=POLL_SECONDS)
            else:
                time.sleep(POLL_SECONDS)

    return SupervisedRun(returncode=proc.returncode, tail=list(tail), progress_updates=updates)


def simulator_env(job: JobPaths, *, data_dir: Path, config_path: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the simulator contract (README "Simulator contract")."""
    env = dict(os.environ)
    env.update(
        {
            "OPEVA_JOB_ID": job.job_id,
            "OPEVA_DATA_DIR": str(data_dir),
            "OPEVA_CONFIG_PATH": str(config_path),
            "OPEVA_JOB_DIR": str(job.dir),
            "OPEVA_LOG_FILE": str(job.simulator_log_file),
            "OPEVA_PROGRESS_FILE": str(job.progress_file),
            "OPEVA_RESULT_FILE": str(job.result_file),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env
