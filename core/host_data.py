"""A job's files on a Docker host without the shared data root (``data: local`` in hosts.yaml).

Why through the host's engine: the platform already reaches every Docker host's engine at its
``docker_url`` (core/engines.py), so copying through Docker's archive API needs no new credential,
port or daemon on the host. A helper container of the runtime image (already on every host) is
*created, never started*, with the host's data root bind-mounted at the same path; Docker copies
into and out of a stopped container's bind mounts (``put_archive`` / ``get_archive``), so the files
land in the host's own folder at the data root's path, where the job's containers see them exactly
as on a shared host.

- :meth:`HostCopy.push`: the job's inputs (core/job_inputs.py) at their data-root paths, before the run starts.
- :meth:`HostCopy.pull`: the files the API reads while the job runs (job_info.json, progress, logs)
  every few seconds, the whole folder once it ended (or was stopped), read through the bounded,
  link-free filter of core/bounded_tar.py (a link, FIFO, device or oversized file never comes back).
- :meth:`HostCopy.remove`: the host's copy of the job's folder, once it is back (staged configs and
  datasets stay: the next job reuses them).

Every step is idempotent, so a retried pass copies again. A failure raises :class:`SyncFailed`
naming the copy and the host. Prefect-free; the flow that drives it is flows/host_data.py.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from core.bounded_tar import SyncFailed, extract_bounded
from core.containers import FLOW_RUN_ID
from core.engines import engine_client
from core.hosts import Host
from core.layout import DataRoot

STAGE_FLOW = "stage-host-data"  # the control flow that drives the copies (flows/host_data.py; deployment <it>/control)
HELPER_LABEL = "opeva.host-data"  # the job id a helper container copies for (a retried pass removes its leftovers)
SYNC_SECONDS = 300  # one engine call at most
QUIET_SECONDS = 60.0  # how long the final copy waits for the job's containers to exit
# The job's files the API reads while it runs: copied back every few seconds (job-folder-relative).
FOLLOWED = ("job_info.json", "progress", "logs")
# The platform's own file on the server: never replaced by the host's. job_info.json does come
# back: on a Docker host the job's supervisor (platform code, root) writes it, the simulator runs as
# another uid; core.job_io reads it bounded and link-free like any job file.
SKIP = ("logs/platform.log",)


class _Chunks(io.RawIOBase):
    """docker-py's chunk iterator as a file object (tarfile reads a stream from it, nothing held whole)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it: Iterator[bytes] = iter(chunks)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        while not self._rest:
            try:
                self._rest = next(self._it)
            except StopIteration:
                return 0
        n = min(len(buf), len(self._rest))
        buf[:n], self._rest = self._rest[:n], self._rest[n:]
        return n


@dataclass
class HostCopy:
    """One job's folder on one ``data: local`` host, reached through its engine. Close it (``with``)."""

    host: Host
    storage: DataRoot
    job_id: str
    image: str
    client: Any = None
    helper: Any = None

    @property
    def job_dir(self) -> Path:
        return self.storage.job(self.job_id).dir

    @property
    def where(self) -> str:
        return f"host {self.host.name} ({self.host.docker_url})"

    def __enter__(self) -> "HostCopy":
        from docker.errors import DockerException

        what = f"opening {self.where}'s engine to copy job {self.job_id}'s files"
        try:
            self.client = engine_client(self.host, timeout=SYNC_SECONDS)
            for old in self.client.containers.list(all=True, filters={"label": f"{HELPER_LABEL}={self.job_id}"}, ignore_removed=True):
                old.remove(force=True)  # an earlier pass that died: its helper goes, the copy starts again
            root = str(self.storage.root)
            self.helper = self.client.containers.create(
                self.image, command=["true"], entrypoint=[], network_mode="none", labels={HELPER_LABEL: self.job_id},
                volumes={root: {"bind": root, "mode": "rw"}}, name=f"opeva-data-{self.job_id}")
        except DockerException as exc:
            self.close()
            raise SyncFailed(f"{what}: {exc}") from None
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        from docker.errors import DockerException

        try:
            if self.helper is not None:
                self.helper.remove(force=True)
        except DockerException:
            pass  # removed with the next pass's leftovers (its label)
        finally:
            self.helper = None
            if self.client is not None:
                self.client.close()
                self.client = None

    def push(self, inputs: list[Path]) -> int:
        """The job's folder (when the server has one yet) and ``inputs`` to the same paths on the host; returns bytes sent."""
        from docker.errors import DockerException

        what = f"copying job {self.job_id}'s inputs to {self.where}"
        paths = [p for p in [self.job_dir, *inputs] if p.exists()]
        with tempfile.TemporaryFile() as spool:
            _pack(spool, self.storage.root, paths)
            size = spool.tell()
            spool.seek(0)
            try:
                if not self.helper.put_archive(str(self.storage.root), spool):
                    raise SyncFailed(f"{what}: the engine refused the archive")
            except DockerException as exc:
                raise SyncFailed(f"{what}: {exc}") from None
        return size

    def pull(self, *, final: bool) -> list[str]:
        """Back into the server's job folder: the followed files (``final`` False: a failure is only
        skipped, the final copy decides) or the whole folder. Returns what the filter left out."""
        from docker.errors import DockerException, NotFound

        what = f"copying job {self.job_id}'s {'outputs' if final else 'logs'} back from {self.where}"
        self.job_dir.mkdir(parents=True, exist_ok=True)
        dropped: list[str] = []
        for rel in ("",) if final else FOLLOWED:
            try:
                chunks, _stat = self.helper.get_archive(str(self.job_dir / rel) if rel else str(self.job_dir))
                stream = io.BufferedReader(_Chunks(chunks), 1 << 16)
                dropped += extract_bounded(stream, self.job_dir, what, skip=SKIP, strip="" if rel else self.job_id, tolerant=not final)
            except NotFound:
                continue  # not written yet (or the job never started: nothing to bring back)
            except DockerException as exc:
                if final:
                    raise SyncFailed(f"{what}: {exc}") from None
        return dropped

    def wait_quiet(self, timeout: float = QUIET_SECONDS) -> bool:
        """Until no container of the job runs on the host (a stopped job's simulator may write for a few
        seconds after its run is final), at most ``timeout`` s; False when one still runs."""
        from docker.errors import DockerException

        deadline = time.monotonic() + timeout
        while True:
            try:
                running = self.client.containers.list(filters={"label": f"{FLOW_RUN_ID}={self.job_id}", "status": "running"}, ignore_removed=True)
            except DockerException:
                return False  # the final copy says whether the engine answers
            if not running:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(1.0)

    def remove(self) -> None:
        """The host's copy of the job's folder, once it is back on the server."""
        from docker.errors import DockerException

        root = str(self.storage.root)
        try:
            self.client.containers.run(self.image, ["rm", "-rf", "--", str(self.job_dir)], entrypoint=[], network_mode="none", user="0:0",
                                       remove=True, volumes={root: {"bind": root, "mode": "rw"}}, labels={HELPER_LABEL: self.job_id})
        except DockerException as exc:
            raise SyncFailed(f"removing job {self.job_id}'s folder from {self.where}: {exc}") from None


def _pack(out: IO[bytes], root: Path, paths: list[Path]) -> None:
    """A tar of ``paths`` named relative to ``root``, with their parent folders; no link is followed or
    sent, files owned by root (the job's supervisor gives them to the simulator's uid)."""

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if not (info.isfile() or info.isdir()):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(fileobj=out, mode="w") as tar:
        parents: set[str] = set()
        for path in paths:
            rel = path.relative_to(root)
            for parent in reversed(rel.parents[:-1]):
                if parent.as_posix() not in parents:
                    parents.add(parent.as_posix())
                    tar.add(root / parent, arcname=parent.as_posix(), recursive=False, filter=owned)
            tar.add(path, arcname=rel.as_posix(), filter=owned)
