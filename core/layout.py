"""The shared data tree: the one place that knows where a job's files live.

The API, the flows (inside their containers) and the simulator all read and write
the same tree, so the layout is written down here once:

    <base_path>/
      configs/<name>.yaml                  experiment configs
      datasets/<name>/                     CityLearn-format datasets
      jobs/<job_id>/job_info.json
      jobs/<job_id>/logs/platform.log      the merged job log, written by the flow only: the
                                           simulator's stdout/stderr and its own log lines
      jobs/<job_id>/logs/<job_id>.log      the simulator's own log (OPEVA's name), its writer only
      jobs/<job_id>/config.resolved.yaml   the config as the simulator resolved it (if it writes one)
      jobs/<job_id>/progress/progress.json
      jobs/<job_id>/results/result.json

Every compute host mounts the tree at the same absolute path, so a path is
true on the API host and inside every container. No Prefect import here: the
simulator and the tools use this module too.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class UnsafeNameError(ValueError):
    """A user-supplied name that could escape its directory or is not a plain file name."""


def safe_name(name: str, *, what: str = "name") -> str:
    """Return ``name`` if it is a plain file or folder name, else raise UnsafeNameError.

    Refused: empty names, ``..`` anywhere, path separators, absolute paths, names
    starting with a dot or dash, control characters and anything over 128 chars.
    """
    if not isinstance(name, str) or not name:
        raise UnsafeNameError(f"{what} must be a non-empty string")
    if "/" in name or "\\" in name or os.path.isabs(name):
        raise UnsafeNameError(f"{what} {name!r} must be a plain name, without '/' or an absolute path")
    if ".." in name:
        raise UnsafeNameError(f"{what} {name!r} must not contain '..'")
    if not _SAFE_NAME.match(name):
        raise UnsafeNameError(
            f"{what} {name!r} may only use letters, digits, '.', '_' and '-', "
            "start with a letter or digit, and be at most 128 characters"
        )
    return name


@dataclass(frozen=True)
class JobPaths:
    """The files of one job on shared storage."""

    job_id: str
    dir: Path

    @property
    def logs_dir(self) -> Path:
        return self.dir / "logs"

    @property
    def log_file(self) -> Path:
        """The merged job log (``/file-logs``): written by the platform's flow only."""
        return self.logs_dir / "platform.log"

    @property
    def simulator_log_file(self) -> Path:
        """The simulator's own log, OPEVA's ``logs/<job_id>.log``: the platform never writes it."""
        return self.logs_dir / f"{self.job_id}.log"

    @property
    def resolved_config_file(self) -> Path:
        """``config.resolved.yaml``, when the simulator writes one."""
        return self.dir / "config.resolved.yaml"

    @property
    def simulation_data_dir(self) -> Path:
        return self.dir / "results" / "simulation_data"

    @property
    def progress_file(self) -> Path:
        return self.dir / "progress" / "progress.json"

    @property
    def result_file(self) -> Path:
        return self.dir / "results" / "result.json"

    @property
    def job_info_file(self) -> Path:
        return self.dir / "job_info.json"

    @property
    def config_file(self) -> Path:
        """Where an inline config without ``save_as`` is kept, so the job can be re-read."""
        return self.dir / "config.yaml"

    def create(self) -> "JobPaths":
        for d in (self.logs_dir, self.progress_file.parent, self.result_file.parent):
            d.mkdir(parents=True, exist_ok=True)
        return self


class DataRoot:
    """The shared data tree (configs, datasets, job files) mounted on every host.

    A plain object, not a Prefect block: the simulator, the seeder and the API's
    tests use it without a Prefect API. ``blocks.storage.SharedStorage`` only stores
    where the root is.
    """

    def __init__(self, base_path: str | Path) -> None:
        self.root = Path(base_path)

    def __repr__(self) -> str:
        return f"DataRoot({str(self.root)!r})"

    @property
    def configs_dir(self) -> Path:
        return self.root / "configs"

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    def ensure_layout(self) -> None:
        for d in (self.configs_dir, self.datasets_dir, self.jobs_dir):
            d.mkdir(parents=True, exist_ok=True)

    def job(self, job_id: str) -> JobPaths:
        return JobPaths(job_id=safe_name(str(job_id), what="job id"), dir=self.jobs_dir / str(job_id))

    def config_file(self, file_name: str) -> Path:
        return self.configs_dir / safe_name(file_name, what="config file name")

    def dataset_dir(self, name: str) -> Path:
        return self.datasets_dir / safe_name(name, what="dataset name")

    def resolve(self, relative: str, *, what: str = "path") -> Path:
        """Resolve a path given relative to the data root (e.g. ``configs/x.yaml``).

        Each segment must be a safe name, so the result cannot leave the root.
        """
        if not isinstance(relative, str) or not relative.strip():
            raise UnsafeNameError(f"{what} must be a non-empty relative path")
        if os.path.isabs(relative):
            raise UnsafeNameError(f"{what} {relative!r} must be relative to the shared data root, not absolute")
        parts = [p for p in relative.split("/") if p not in ("", ".")]
        for part in parts:
            safe_name(part, what=f"{what} segment")
        return self.root.joinpath(*parts)

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.root))


def data_root_from_env() -> DataRoot:
    """The tree named by ``OPEVA_DATA_DIR`` (processes that must not need a Prefect API)."""
    base = os.environ.get("OPEVA_DATA_DIR")
    if not base:
        raise RuntimeError("OPEVA_DATA_DIR is not set")
    return DataRoot(base)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so a reader never sees half a file (progress is read while written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, default=str)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it does not exist yet or is mid-write by a non-atomic writer."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
