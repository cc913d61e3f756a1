"""A job's KPIs as its simulator exported them, read safely, and several jobs side by side.

Why here: ``exported_kpis.csv`` (``results/simulation_data/<session>/``, CityLearn's pivot: one
row per KPI, one column per building and ``District``) is written by the job, so it is read the
way every job file is (core/job_io.py: no link followed, regular files only, bounded), and a
value that is not a number is absent rather than trusted.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from core import job_io

KPI_FILE = "exported_kpis.csv"
SESSIONS = Path("results") / "simulation_data"
MAX_KPI_BYTES = 1 << 20  # a KPI table is a few KiB; a bigger file is refused
MAX_SESSIONS = 10_000
DISTRICT = "District"


@dataclass(frozen=True)
class JobKpis:
    """One job's district KPIs from its newest session (``session`` None: it exported none)."""

    session: str | None
    district: dict[str, float | None] = field(default_factory=dict)
    note: str | None = None  # why the table was not read


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_district(text: str) -> dict[str, float | None]:
    """``KPI`` -> its ``District`` value (None when blank or not a number)."""
    rows = csv.DictReader(io.StringIO(text))
    if not rows.fieldnames or "KPI" not in rows.fieldnames:
        return {}
    return {row["KPI"]: _number(row.get(DISTRICT) or "") for row in rows if row.get("KPI")}


def read_job_kpis(job_dir: Path) -> JobKpis:
    """The newest session's district KPIs of the job in ``job_dir`` (blocking: call in a thread)."""
    sessions = job_io.subfolders(job_dir, SESSIONS, limit=MAX_SESSIONS)
    if not sessions:
        return JobKpis(session=None)
    session = sessions[-1][1]
    relative = SESSIONS / session / KPI_FILE
    try:
        size = job_io.file_size(job_dir, relative)
    except job_io.NotRegularFile:
        return JobKpis(session=session, note=f"{KPI_FILE} of session {session} is a link or not a regular file; not read")
    if size is None:
        return JobKpis(session=session, note=f"session {session} has no {KPI_FILE}")
    if size > MAX_KPI_BYTES:
        return JobKpis(session=session, note=f"{KPI_FILE} of session {session} is {size} bytes; tables over {MAX_KPI_BYTES} bytes are not read")
    text = job_io.read_bounded(job_dir, relative, limit=MAX_KPI_BYTES).decode("utf-8", "replace")
    return JobKpis(session=session, district=parse_district(text))


def side_by_side(kpis: dict[str, JobKpis]) -> list[tuple[str, dict[str, float | None]]]:
    """Every KPI any job has, in the first job's order then the others', with each job's value."""
    names: dict[str, None] = {}
    for job in kpis.values():
        names.update(dict.fromkeys(job.district))
    return [(name, {job_id: job.district.get(name) for job_id, job in kpis.items()}) for name in names]
