"""The Slurm watcher's checkpoint: which Slurm job a run submitted, and how far its output was mirrored.

Why: on a Slurm host the watcher (the run-simulation flow on the host's process pool) is a process
of the submit node, and it can die while its Slurm job runs on: the platform there restarted, the
process killed. A new attempt of the same flow run (deployments/reconcile_slurm.py reschedules it)
then follows the job it already submitted, never a second ``sbatch``, from where the last attempt
stopped mirroring, so no line shows twice in ``/logs``.

The file sits in the job's folder, which the job itself may write: every value is checked, a bad
file means "nothing to resume", and the job id is believed only when Slurm names that job after
this run (``--job-name=opeva-<job id>``, set on sbatch's command line, never by the job).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from core.job_io import read_json
from core.layout import write_json_atomic

WATCH_FILE = "slurm_watch.json"


class Watch(BaseModel):
    """What a resuming attempt needs; ``ended`` once a watcher saw Slurm end the job."""

    slurm_job_id: str = Field(pattern=r"^[0-9]{1,12}$")
    output_offset: int = Field(0, ge=0)
    log_offset: int = Field(0, ge=0)
    ended: bool = False


def read_watch(job_dir: Path) -> Watch | None:
    """The checkpoint a previous attempt left, or None (none, unreadable, or not ours to trust)."""
    data = read_json(job_dir, WATCH_FILE, max_bytes=4096)
    if not isinstance(data, dict):
        return None
    try:
        return Watch.model_validate(data)
    except ValidationError:
        return None


def write_watch(job_dir: Path, watch: Watch) -> None:
    write_json_atomic(job_dir / WATCH_FILE, watch.model_dump())


def resumable(watch: Watch | None, record: dict[str, str] | None, job_id: str) -> bool:
    """Follow ``watch``'s Slurm job instead of submitting: no watcher saw it end, and Slurm still
    knows it under this run's name (a forged id names someone else's job, or nothing)."""
    if watch is None or watch.ended or record is None:
        return False
    return record.get("JobName") == f"opeva-{job_id}"
