"""A Slurm job on a host reached over ssh, without a shared file system (``submit: ssh://...``).

Why apart from flows/slurm_run.py: only these hosts copy files. Inputs go up before ``sbatch``
(the job's folder, its config file, the dataset it names and upstream's ``datasets`` /
``required_paths``), the followed files come back every :data:`SYNC_EVERY` seconds while it
runs, and the whole folder when it ends or is stopped (core/slurm_sync.py does the copying and
bounds what comes back). A failed copy ends the run ``failed``, ``error_code=artifact_sync_failed``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from core.hosts import Host
from core.job_inputs import inputs_of
from core.layout import DataRoot, JobPaths
from core.slurm_sync import RemoteJob, SyncFailed

__all__ = ["ERROR_CODE", "LogSync", "inputs_of", "remote_job", "uploader"]

SYNC_EVERY = 2.0  # seconds between two copies of the followed files while the job runs
ERROR_CODE = "artifact_sync_failed"


def remote_job(host: Host, job: JobPaths, storage: DataRoot) -> RemoteJob | None:
    """The job's folder on the login node, or None on a host that submits locally."""
    assert host.slurm is not None
    via = host.slurm.transport()
    return RemoteJob(via, storage.root, job.job_id, job.dir) if via.remote else None


class SyncFailedError(RuntimeError):
    """The job's inputs could not go up to the login node: nothing was submitted (the run's failure)."""


def uploader(remote: RemoteJob | None, inputs: Callable[[], list[Path]], owner: str | None, logger) -> Callable[[], None]:
    """What runs before each new sbatch (never for a re-attached job): the inputs up, then the
    job's remote folder given to ``owner`` (uid:gid) when the job runs as another uid."""

    def upload() -> None:
        if remote is None:
            return
        started = time.monotonic()
        try:
            remote.push(inputs(), owner)
        except SyncFailed as exc:
            raise SyncFailedError(f"error_code={ERROR_CODE}: {exc}") from None
        logger.info("[INFO] Uploaded the job's inputs to %s:%s (%s, %.1f s)", remote.via.where, remote.remote_dir, remote.copier,
                    time.monotonic() - started)

    return upload


class LogSync:
    """The followed files back every SYNC_EVERY seconds; the whole folder once at the end. The
    first failure of the final copy is kept in :attr:`failed` (the run's error)."""

    def __init__(self, remote: RemoteJob, job: JobPaths) -> None:
        self.remote = remote
        self.files = tuple(p.relative_to(job.dir).as_posix() for p in (job.logs_dir / "slurm.out", job.simulator_log_file, job.progress_file))
        self.failed: str | None = None
        self._at = 0.0
        self._warned = False

    def __call__(self, final: bool) -> None:
        now = time.monotonic()
        if not final and now - self._at < SYNC_EVERY:
            return
        self._at = now
        try:
            self.remote.pull(logs_only=() if final else self.files)
        except SyncFailed as exc:
            if final:
                self.failed = str(exc)
            elif not self._warned:  # a passing outage: the final copy decides
                self._warned = True
                logging.getLogger("opeva.slurm").warning("%s", exc)
