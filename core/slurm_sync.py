"""A Slurm job's folder on a login node without a shared file system (``submit: ssh://...``).

Why: the job runs where the cluster's file system is, not where the platform's data root is. So
its inputs (its folder: config, job files; the config file and the datasets it names, at their
data-root paths) go up to ``<remote_root>/...`` before ``sbatch``; the files the platform follows
while it runs (Slurm's output file, the simulator's log, progress.json) come back every few
seconds, so ``/logs`` and progress work as on a shared file system; and the whole folder comes
back when the job ends or is stopped. A copy that fails raises :class:`SyncFailed`, whose message
names what failed (the run ends ``failed``, ``error_code=artifact_sync_failed``).

Nothing read back is trusted (the job wrote it): the remote folder is copied recursively from its
top (a link is never followed, and never created here: rsync without ``-l``, tar members other
than files and folders dropped), no device, FIFO or socket, each file at most
:data:`MAX_FILE_BYTES`, the folder at most :data:`MAX_FILES` entries and :data:`MAX_TOTAL_BYTES`,
and the platform's own files (job_info.json, the watch checkpoint, platform.log) never taken
back. rsync over the host's ssh (core/slurm_transport.py) where both sides have it, else tar.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from core.bounded_tar import MAX_FILE_BYTES, MAX_FILES, MAX_TOTAL_BYTES, SyncFailed, extract_bounded
from core.slurm_transport import Transport

__all__ = ["MAX_FILES", "MAX_FILE_BYTES", "MAX_TOTAL_BYTES", "PLATFORM_OWNED", "RemoteJob", "SyncFailed"]

SYNC_SECONDS = 300
PLATFORM_OWNED = ("job_info.json", "slurm_watch.json", "slurm_job.sh.json", "logs/platform.log")
_LISTED = re.compile(r"^(?P<mode>\S{10})\s+(?P<size>\d+)\s+\S+\s+\S+\s+(?P<name>.+)$")


@dataclass
class RemoteJob:
    """One job's folder on the login node: ``<remote_root>/jobs/<job_id>``, the data root's layout."""

    via: Transport
    data_root: Path
    job_id: str
    job_dir: Path
    copier: str = field(default="")  # rsync | tar, decided at the first copy

    @property
    def root(self) -> str:
        assert self.via.ssh is not None
        return self.via.ssh.remote_root

    @property
    def remote_dir(self) -> str:
        return f"{self.root}/jobs/{self.job_id}"

    def remote_path(self, local: Path) -> str:
        """Where a file of the data root is on the login node."""
        return f"{self.root}/{local.relative_to(self.data_root).as_posix()}"

    def _exec(self, argv: list[str], what: str, *, stdin: bytes | None = None, ok: tuple[int, ...] = (0,), cwd: Path | None = None) -> bytes:
        try:
            out = subprocess.run(argv, input=stdin, capture_output=True, timeout=SYNC_SECONDS, cwd=cwd,
                                 stdin=None if stdin is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise SyncFailed(f"{what}: no answer within {SYNC_SECONDS} s") from None
        except FileNotFoundError:
            raise SyncFailed(f"{what}: {argv[0]} is not installed on this machine") from None
        if out.returncode not in ok:
            raise SyncFailed(f"{what}: {out.stderr.decode(errors='replace').strip()[-500:] or f'exit code {out.returncode}'}")
        return out.stdout

    def _remote(self, args: list[str], what: str, **kw) -> bytes:
        return self._exec(self.via.argv(args), what, **kw)

    def _copier(self) -> str:
        if not self.copier and self.via.ssh is not None and self.via.ssh.copier != "auto":
            self.copier = self.via.ssh.copier
        if not self.copier:
            here = shutil.which("rsync") is not None
            try:
                there = here and subprocess.run(self.via.argv(["sh", "-c", "command -v rsync"]), capture_output=True,
                                                stdin=subprocess.DEVNULL, timeout=SYNC_SECONDS).returncode == 0
            except (subprocess.TimeoutExpired, OSError) as exc:
                raise SyncFailed(f"looking for rsync on {self.via.where}: {exc}") from None
            self.copier = "rsync" if there else "tar"
        return self.copier

    def push(self, inputs: list[Path], owner: str | None = None) -> None:
        """Up before sbatch: the job's folder and ``inputs`` (files or folders of the data root), to
        the same data-root-relative paths under remote_root; then owned by ``owner`` (uid:gid) when
        the login user is root and the job runs as another uid."""
        what = f"uploading the job's inputs to {self.via.where}:{self.remote_dir}"
        self._remote(["sh", "-c", 'cd -- "$1" && mkdir -p -- "$2"', "sh", self.root, f"jobs/{self.job_id}"], what)
        rel = [self.job_dir.relative_to(self.data_root).as_posix()]
        for p in inputs:
            r = p.relative_to(self.data_root).as_posix()
            if r not in rel and not r.startswith(rel[0] + "/"):
                rel.append(r)
        if self._copier() == "rsync":
            self._exec(["rsync", "-rt", "--protect-args", "--relative", "--chmod=D755,F644", "-e", self.via.rsync_shell(), "--", *rel,
                        f"{self.via.destination()}:{self.root}/"], what, cwd=self.data_root)
        else:
            pack = subprocess.run(["tar", "-C", str(self.data_root), "-cf", "-", "--", *rel], capture_output=True, timeout=SYNC_SECONDS)
            if pack.returncode != 0:
                raise SyncFailed(f"{what}: tar: {pack.stderr.decode(errors='replace').strip()[-500:]}")
            self._remote(["tar", "-C", self.root, "--no-same-owner", "-xf", "-"], what, stdin=pack.stdout)
        if owner:
            self._remote(["chown", "-R", owner, "--", self.remote_dir], what)

    def pull(self, *, logs_only: tuple[str, ...] = ()) -> None:
        """Back into the job's folder: everything (the job ended or was stopped), or, while it
        runs, only the files ``logs_only`` names (job-folder-relative: logs and progress)."""
        what = f"copying the job's {'logs' if logs_only else 'outputs'} back from {self.via.where}:{self.remote_dir}"
        if self._copier() == "tar":
            return self._pull_tar(what, logs_only)
        filters = [f"--exclude=/{p}" for p in PLATFORM_OWNED]
        if logs_only:
            dirs = sorted({p.split("/")[0] for p in logs_only if "/" in p})
            filters += [f"--include=/{d}/" for d in dirs] + [f"--include=/{p}" for p in logs_only] + ["--exclude=*"]
        else:
            self._check_listing(filters, what)
        src = f"{self.via.destination()}:{self.remote_dir}/"
        self._exec(["rsync", "-rt", "--protect-args", f"--max-size={MAX_FILE_BYTES}", "--chmod=D755,F644", *filters, "-e",
                    self.via.rsync_shell(), "--", src, f"{self.job_dir}/"], what, ok=(0, 24))

    def _check_listing(self, filters: list[str], what: str) -> None:
        """The remote folder's size before it is copied: bounded in entries and bytes."""
        out = self._exec(["rsync", "-r", "--list-only", "--no-human-readable", "--protect-args", *filters, "-e", self.via.rsync_shell(),
                          "--", f"{self.via.destination()}:{self.remote_dir}/"], what)
        entries, total = 0, 0
        for line in out.decode(errors="replace").splitlines():
            m = _LISTED.match(line)
            if not m:
                continue
            entries += 1
            if m["mode"].startswith("-"):
                total += int(m["size"])
        if entries > MAX_FILES or total > MAX_TOTAL_BYTES:
            raise SyncFailed(f"{what}: the folder holds {entries} entries and {total} bytes (at most {MAX_FILES} and {MAX_TOTAL_BYTES})")

    def _pull_tar(self, what: str, logs_only: tuple[str, ...]) -> None:
        """tar on the login node, read here member by member: files and folders only, bounded."""
        tops = sorted({p.split("/")[0] for p in logs_only}) if logs_only else ["."]
        argv = self.via.argv(["tar", "-C", self.remote_dir, "-cf", "-", "--", *tops])
        with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            try:
                self._extract(proc.stdout, what, logs_only)
            finally:
                proc.stdout.close()
                proc.kill()
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            if proc.wait() not in (0, -9) and not logs_only:
                raise SyncFailed(f"{what}: tar: {err.strip()[-500:]}")

    def _extract(self, stream, what: str, logs_only: tuple[str, ...]) -> None:
        extract_bounded(stream, self.job_dir, what, only=logs_only, skip=PLATFORM_OWNED, tolerant=bool(logs_only))
