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

import errno
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


# The name rules live in core.names; re-exported here, where every caller looks for them.
from core.names import InvalidJobId, OutsideDataRoot, UnsafeNameError, canonical_job_id, safe_name  # noqa: F401


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

    @property
    def platform_dir(self) -> Path:
        """The platform's own small stores (job folders); no job, config or dataset lives here."""
        return self.root / "platform"

    def ensure_layout(self) -> None:
        for d in (self.configs_dir, self.datasets_dir, self.jobs_dir):
            d.mkdir(parents=True, exist_ok=True)

    def job(self, job_id: str) -> JobPaths:
        """The job's files, under its canonical id whatever case the caller used."""
        canonical = canonical_job_id(job_id)
        return JobPaths(job_id=canonical, dir=self.jobs_dir / canonical)

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
        if not parts:
            raise UnsafeNameError(f"{what} must name a file under the shared data root")
        for part in parts:
            safe_name(part, what=f"{what} segment")
        path = self.root.joinpath(*parts)
        self.inside(path, what=what)
        return path

    def relative(self, path: Path) -> str:
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return str(Path(path).relative_to(self.real_root))


    # -- confinement: every file the API reads, serves, zips or deletes goes through here --

    @property
    def real_root(self) -> Path:
        return Path(os.path.realpath(self.root))

    def inside(self, path: str | Path, *, what: str = "path") -> Path:
        """``path`` with every link followed; refused unless it stays under the data root.

        A relative ``path`` is taken from the root. The answer never names the
        link's target, so a refusal leaks nothing about the outside.
        """
        p = Path(path)
        if not p.is_absolute():
            p = self.root / p
        real, root = os.path.realpath(p), str(self.real_root)
        if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
            raise OutsideDataRoot(f"{what} {self._shown(p)!r} points outside the shared data root; refused")
        return Path(real)

    def _shown(self, p: Path) -> str:
        try:
            return self.relative(p)
        except ValueError:
            return p.name

    def open_inside(self, path: str | Path, *, what: str = "file") -> IO[bytes]:
        """Open a regular file for reading, refusing links out, FIFOs and devices.

        The check is made again on the open descriptor (``/proc/self/fd``), so a
        job swapping a link between the check and the open gains nothing.
        """
        real = self.inside(path, what=what)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(real, flags)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EISDIR):
                raise OutsideDataRoot(f"{what} {self._shown(Path(path))!r} is not a regular file") from None
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OutsideDataRoot(f"{what} {self._shown(Path(path))!r} is not a regular file")
            proc = f"/proc/self/fd/{fd}"
            if os.path.exists(proc):
                self.inside(os.readlink(proc), what=what)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def read_bytes_inside(self, path: str | Path, *, max_bytes: int | None = None, what: str = "file") -> bytes:
        with self.open_inside(path, what=what) as f:
            data = f.read(-1 if max_bytes is None else max_bytes + 1)
        if max_bytes is not None and len(data) > max_bytes:
            raise FileTooLarge(f"{what} {self._shown(Path(path))!r} is over {max_bytes} bytes")
        return data

    def read_text_inside(self, path: str | Path, *, max_bytes: int | None = None, what: str = "file") -> str:
        return self.read_bytes_inside(path, max_bytes=max_bytes, what=what).decode("utf-8", errors="replace")

    def read_json(self, path: str | Path, *, max_bytes: int = 16 << 20) -> Any | None:
        """Like ``read_json`` but confined: None when absent, mid-write or not JSON; refused when linked out."""
        try:
            return json.loads(self.read_bytes_inside(path, max_bytes=max_bytes))
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            if isinstance(exc, UnsafeNameError):
                raise
            return None

    def read_json_object(self, path: str | Path) -> dict[str, Any]:
        """A JSON object file a job may have written (or replaced by anything): {} unless an object."""
        data = self.read_json(path)
        return data if isinstance(data, dict) else {}

    def iter_files(self, folder: str | Path) -> Iterator[tuple[str, IO[bytes]]]:
        """(relative name, open file) for every regular file under ``folder``.

        Links are neither stored nor followed (a dataset may hold a link a job
        made); only regular files that are really inside the root are opened.
        """
        top = self.inside(folder, what="folder")
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
            for name in sorted(filenames):
                full = os.path.join(dirpath, name)
                if os.path.islink(full) or not os.path.isfile(full):
                    continue
                try:
                    handle = self.open_inside(full)
                except (OutsideDataRoot, FileNotFoundError):
                    continue
                with handle:
                    yield os.path.relpath(full, top), handle

    def remove_inside(self, path: str | Path, *, what: str = "path") -> None:
        """Delete a file or folder under the root; a link is removed, never its target."""
        p = Path(path) if Path(path).is_absolute() else self.root / path
        self.inside(p.parent, what=what)
        if p.is_symlink():
            p.unlink()
            return
        real = self.inside(p, what=what)
        if real.is_dir():
            shutil.rmtree(real)  # fd-based on Linux: links inside are removed, not followed
        else:
            real.unlink()

    def write_atomic(self, path: str | Path, data: bytes | str) -> Path:
        """Replace ``path`` in one step (temp file + ``os.replace``); a link there is replaced, not followed."""
        p = Path(path) if Path(path).is_absolute() else self.root / path
        p.parent.mkdir(parents=True, exist_ok=True)
        self.inside(p.parent, what="folder")
        tmp = self._temp_with(p, data)
        try:
            os.replace(tmp, p)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return p

    def create_exclusive(self, path: str | Path, data: bytes | str) -> Path:
        """Create ``path`` with its whole content, or raise FileExistsError if anything is there.

        Hard-linking a complete temp file is atomic and exclusive at once: of
        concurrent creators exactly one wins, and no reader sees half a file.
        """
        p = Path(path) if Path(path).is_absolute() else self.root / path
        p.parent.mkdir(parents=True, exist_ok=True)
        self.inside(p.parent, what="folder")
        tmp = self._temp_with(p, data)
        try:
            os.link(tmp, p)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise FileExistsError(errno.EEXIST, "exists", p.name) from None
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)  # no hard links here
            with os.fdopen(fd, "wb") as f, open(tmp, "rb") as src:
                shutil.copyfileobj(src, f)
        finally:
            _unlink_quietly(tmp)
        return p

    @staticmethod
    def _temp_with(p: Path, data: bytes | str) -> str:
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
            os.chmod(tmp, 0o644)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return tmp


class FileTooLarge(ValueError):
    """A file over the size the reader accepts (a config, a job file)."""


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def data_root_from_env() -> DataRoot:
    """The tree named by ``OPEVA_DATA_DIR`` (processes that must not need a Prefect API)."""
    base = os.environ.get("OPEVA_DATA_DIR")
    if not base:
        raise RuntimeError("OPEVA_DATA_DIR is not set")
    return DataRoot(base)


def write_json_atomic(path: Path, data: Any, *, mode: int = 0o644, durable: bool = False) -> None:
    """Write JSON so a reader never sees half a file (progress is read while written).
    ``mode``: 0o644 by default, since job files and datasets are read by unprivileged simulators;
    0o600 for the platform's own records. ``durable``: fsync before the rename (records whose
    loss after a power cut would hand a name to another user)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, default=str)
            if durable:
                f.flush()
                os.fsync(f.fileno())
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
