"""Reading back a folder a job wrote, as a tar stream, without trusting it.

Why one module: a Slurm host over ssh (core/slurm_sync.py) and a Docker host without the shared
data root (core/host_data.py) both bring a job's folder back from a place the job could write, so
both read it through the same filter: files and folders only (a link is never created here, no
device, FIFO or socket), no absolute or ``..`` name, each file at most :data:`MAX_FILE_BYTES`,
the folder at most :data:`MAX_FILES` entries and :data:`MAX_TOTAL_BYTES`, and the platform's own
files (``skip``) never taken back. Prefect-free.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import IO

MAX_FILES = 10_000
MAX_FILE_BYTES = 1 << 30
MAX_TOTAL_BYTES = 4 << 30


class SyncFailed(RuntimeError):
    """A copy to or from a host failed; the message says which and why (the run ends ``artifact_sync_failed``)."""


def extract_bounded(stream: IO[bytes], dest: Path, what: str, *, only: tuple[str, ...] = (), skip: tuple[str, ...] = (),
                    strip: str = "", tolerant: bool = False) -> list[str]:
    """Extract the tar ``stream`` into ``dest``: bounded, files and folders only. ``only`` (folder-relative
    paths): take just those files (and their folders); ``skip``: never take those; ``strip``: a leading
    folder name the archive puts before every member (docker's get_archive names the copied folder).
    Returns what was left out (links, devices, oversized files). ``tolerant``: a broken stream is not an
    error (a copy of the logs while the job runs; the final copy decides)."""
    entries, total, dropped = 0, 0, []
    tops = {p.split("/")[0] for p in only}
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                name = member.name.removeprefix("./").rstrip("/")
                if strip:
                    name = "" if name == strip else name.removeprefix(strip + "/") if name.startswith(strip + "/") else "/" + name
                entries += 1
                total += member.size if member.isfile() else 0
                if entries > MAX_FILES or total > MAX_TOTAL_BYTES:
                    raise SyncFailed(f"{what}: the folder is over its bounds ({MAX_FILES} entries, {MAX_TOTAL_BYTES} bytes in all)")
                unsafe = name.startswith("/") or ".." in name.split("/")
                if not name or unsafe or name in skip:
                    continue
                if not (member.isfile() or member.isdir()) or member.size > MAX_FILE_BYTES:
                    dropped.append(name)
                    continue
                if only and name not in only and not (member.isdir() and name in tops):
                    continue
                member.name = name
                member.mode = 0o755 if member.isdir() else 0o644
                tar.extract(member, dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        if not tolerant:
            raise SyncFailed(f"{what}: {exc}") from None
    return dropped
