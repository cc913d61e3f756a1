"""Reading and writing files inside a job's folder, which the job controls.

Why a module of its own: the job (hostile code, uid 65534) can replace any name in
its folder between two reads: by a link to ``/proc/1/environ`` (the supervisor's
secrets), a link out of the folder, a FIFO (a reader hangs), a 1 GiB sparse file or
one line of 256 MiB (a reader that reads whole runs out of memory). Everything the
platform reads or writes there (the supervisor's mirror of the job's log, progress,
result, job_info; the API's ``/file-logs``, ``/logs-chunk``, ``/progress``, ``/result``)
goes through here, so these rules hold in one place:

- no link is ever followed below the folder: each path segment is opened with
  ``O_NOFOLLOW`` relative to its parent's descriptor (``openat``);
- only regular files are opened (``O_NONBLOCK`` so a FIFO cannot block the open,
  ``fstat`` after it: FIFOs, sockets and devices are refused);
- reads are bounded: chunks of :data:`CHUNK` bytes, lines of at most :data:`MAX_LINE`
  bytes (a longer line is cut, with a marker), JSON files of at most :data:`MAX_JSON`;
- the platform's own files are created fresh when what is there is not the platform's
  (a link, a FIFO, a file the job made), never written through.

No Prefect import: the API, the flows and the tools use it.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.layout import JobPaths

CHUNK = 64 << 10  # one read
MAX_LINE = 16 << 10  # a longer line is cut (Prefect refuses log records over 1 MB anyway)
MAX_JSON = 1 << 20  # progress.json, result.json, job_info.json
LINE_CUT = " [... line cut by the platform at {limit} bytes]"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class NotRegularFile(OSError):
    """A name in a job's folder is a link, a FIFO, a device or a socket: refused, never followed."""


def _parts(relative: str | Path) -> list[str]:
    parts = [p for p in Path(relative).parts if p not in ("", ".")]
    if not parts or Path(relative).is_absolute() or ".." in parts:
        raise NotRegularFile(errno.EINVAL, f"{str(relative)!r} is not a path inside the folder")
    return parts


@contextmanager
def _parent_fd(top: str | Path, parts: list[str], *, create: bool = False) -> Iterator[int]:
    """A descriptor of the folder holding ``parts[-1]``, reached without following any link.

    ``top`` itself is the platform's (a job's folder, whose parent the job cannot write),
    so it is opened normally; every segment below it with ``O_NOFOLLOW``.
    """
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in parts[:-1]:
            if create:
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                if not create:
                    raise NotRegularFile(exc.errno, f"{name!r} is a link or not a folder; not followed") from None
                _unlink_or_rmtree(name, fd)  # the platform's folder, replaced by the job: made anew
                os.mkdir(name, 0o755, dir_fd=fd)
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def open_regular(top: str | Path, relative: str | Path) -> int:
    """A read-only descriptor of the regular file ``top/relative``; the caller closes it.

    FileNotFoundError when absent; NotRegularFile when any segment is a link, or the
    file is not a regular file.
    """
    parts = _parts(relative)
    with _parent_fd(top, parts) as dir_fd:
        try:
            fd = os.open(parts[-1], os.O_RDONLY | _FILE_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                raise NotRegularFile(exc.errno, f"{parts[-1]!r} is a link or not a regular file; not followed") from None
            raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegularFile(errno.EINVAL, f"{parts[-1]!r} is not a regular file (FIFO, device or socket); not read")
    return fd


def read_bounded(top: str | Path, relative: str | Path, offset: int = 0, limit: int = CHUNK) -> bytes:
    """At most ``limit`` bytes from ``offset`` (b"" when absent), read in chunks."""
    try:
        fd = open_regular(top, relative)
    except FileNotFoundError:
        return b""
    try:
        out = bytearray()
        while len(out) < limit:
            piece = os.pread(fd, min(CHUNK, limit - len(out)), offset + len(out))
            if not piece:
                break
            out += piece
        return bytes(out)
    finally:
        os.close(fd)


def subfolders(top: str | Path, relative: str | Path, *, limit: int = 10_000) -> list[tuple[float, str]]:
    """(modification time, name) of the real folders in ``top/relative``, oldest first; no link
    is followed on the way or counted as a folder ([] when absent or linked)."""
    try:
        with _parent_fd(top, [*_parts(relative), "."]) as fd:
            found: list[tuple[float, str]] = []
            with os.scandir(fd) as entries:
                for entry in entries:
                    if len(found) >= limit:
                        break
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        found.append((st.st_mtime, entry.name))
    except (FileNotFoundError, NotADirectoryError, NotRegularFile):
        return []
    return sorted(found)


def file_size(top: str | Path, relative: str | Path) -> int | None:
    """The size of a regular file (None when absent)."""
    try:
        fd = open_regular(top, relative)
    except FileNotFoundError:
        return None
    try:
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def read_json(top: str | Path, relative: str | Path, max_bytes: int = MAX_JSON, *, strict: bool = False) -> Any | None:
    """The parsed JSON file, or None when absent, mid-write, too big, not JSON or (unless
    ``strict``: NotRegularFile) a link or not a regular file."""
    try:
        data = read_bounded(top, relative, 0, max_bytes + 1)
    except NotRegularFile:
        if strict:
            raise
        return None
    except OSError:
        return None
    if not data or len(data) > max_bytes:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def clean_line(raw: bytes) -> str:
    """Text of one line as the platform stores it: UTF-8 (errors replaced), no control
    characters but tabs (PostgreSQL refuses NUL in text; terminals obey escapes)."""
    text = raw.decode("utf-8", "replace").rstrip("\r")
    return text.translate(_CONTROLS) if _needs_clean(text) else text


_CONTROLS = {c: 0xFFFD for c in (*range(0, 9), *range(10, 32), 127)}


def _needs_clean(text: str) -> bool:
    return any(ord(ch) < 32 and ch != "\t" or ord(ch) == 127 for ch in text)


class LineSplitter:
    """Turns chunks of bytes into lines of at most ``max_line`` bytes, in bounded memory.

    A longer line is cut at ``max_line`` with :data:`LINE_CUT` and the rest of it up to
    its newline is skipped, however long (one 256 MiB line costs one chunk of memory).
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._partial = bytearray()
        self._skipping = False
        self.lines_cut = 0

    def held(self) -> int | None:
        """Bytes of an unfinished line held back, or None while skipping the rest of a cut line."""
        return None if self._skipping else len(self._partial)

    def feed(self, chunk: bytes) -> list[str]:
        out: list[str] = []
        start = 0
        while start < len(chunk):
            nl = chunk.find(b"\n", start)
            end = len(chunk) if nl < 0 else nl
            if self._skipping:
                if nl >= 0:
                    self._skipping = False
            else:
                room = self.max_line - len(self._partial)
                self._partial += chunk[start:start + max(0, min(room, end - start))]
                if end - start > room:
                    out.append(clean_line(bytes(self._partial)) + LINE_CUT.format(limit=self.max_line))
                    self._partial.clear()
                    self.lines_cut += 1
                    self._skipping = nl < 0
                elif nl >= 0:
                    out.append(clean_line(bytes(self._partial)))
                    self._partial.clear()
            if nl < 0:
                break
            start = nl + 1
        return out

    def flush(self) -> list[str]:
        """The last line when it has no newline (the writer ended)."""
        rest = [clean_line(bytes(self._partial))] if self._partial and not self._skipping else []
        self._partial.clear()
        self._skipping = False
        return rest


class FileFollower:
    """The complete lines appended to a job's file since the last call, in bounded memory.

    The file is opened again at each call (the job may create it late or replace it),
    through :func:`open_regular`; a link or a FIFO there is reported once as a line and
    otherwise ignored.
    """

    def __init__(self, top: str | Path, relative: str | Path, *, max_line: int = MAX_LINE) -> None:
        self.top, self.relative = Path(top), Path(relative)
        self.offset = 0
        self.refused: str | None = None
        self._lines = LineSplitter(max_line)

    def resume_offset(self) -> int | None:
        """Where a later reader starts to see exactly the lines not yet returned (None mid-cut-line)."""
        held = self._lines.held()
        return None if held is None else self.offset - held

    def read_lines(self, *, final: bool = False, budget: int = 16 * CHUNK) -> tuple[list[str], bool]:
        """(lines, more): ``more`` when the file holds more than ``budget`` unread bytes."""
        try:
            fd = open_regular(self.top, self.relative)
        except FileNotFoundError:
            return [], False
        except NotRegularFile as exc:
            if self.refused is None:
                self.refused = str(exc)
                return [f"[WARNING] the platform did not read {self.relative.name}: {exc.strerror}"], False
            return [], False
        lines: list[str] = []
        try:
            size = os.fstat(fd).st_size
            if size < self.offset:  # truncated or replaced: start again from its beginning
                self.offset = 0
            read = 0
            while read < budget:
                piece = os.pread(fd, CHUNK, self.offset)
                if not piece:
                    break
                self.offset += len(piece)
                read += len(piece)
                lines += self._lines.feed(piece)
            more = self.offset < os.fstat(fd).st_size
        finally:
            os.close(fd)
        if final and not more:
            lines += self._lines.flush()
        return lines, more


def folder_usage(top: str | Path, *, max_entries: int = 1_000_000) -> tuple[int, int]:
    """(bytes on disk, entries) under ``top``, links not followed (a link counts as an entry).

    Bytes are allocated blocks, so a sparse file counts what it really uses. Stops
    counting at ``max_entries`` (the caller's limit is then already passed).
    """
    used, entries = 0, 0
    stack = [str(top)]
    while stack and entries < max_entries:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    entries += 1
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    used += st.st_blocks * 512
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
        except OSError:
            continue
    return used, entries


def open_platform_file(top: str | Path, relative: str | Path, *, uid: int | None = None) -> int:
    """An append descriptor of one of the platform's files in a job's folder (``logs/platform.log``).

    The folder is the job's, so what sits at that name may be a link, a FIFO or a file
    the job made: anything but a regular file with one link owned by the platform's uid is
    unlinked (the link itself, never its target) and the file created anew, with
    ``O_EXCL`` so no link can be slipped in between.
    """
    uid = os.geteuid() if uid is None else uid
    parts = _parts(relative)
    with _parent_fd(top, parts, create=True) as dir_fd:
        name = parts[-1]
        for _ in range(3):
            try:
                fd = os.open(name, os.O_WRONLY | os.O_APPEND | _FILE_FLAGS, dir_fd=dir_fd)
            except FileNotFoundError:
                fd = None
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
                    raise
                fd = None
                _unlink_or_rmtree(name, dir_fd)
            if fd is not None:
                st = os.fstat(fd)
                if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_uid == uid:
                    return fd
                os.close(fd)
                _unlink_or_rmtree(name, dir_fd)
            try:
                fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, 0o644, dir_fd=dir_fd)
                os.fchmod(fd, 0o644)
                return fd
            except FileExistsError:
                continue  # the job made something there again: look again
        raise NotRegularFile(errno.EEXIST, f"{name!r} keeps being replaced; not written")


def _unlink_or_rmtree(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except IsADirectoryError:
        import shutil

        shutil.rmtree(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except PermissionError as exc:  # EISDIR is reported as EPERM by some kernels
        if exc.errno != errno.EPERM:
            raise
        import shutil

        shutil.rmtree(name, dir_fd=dir_fd)


def chown_tree(top: str | Path, uid: int, gid: int) -> None:
    """Give the job its folder: every entry below ``top`` changes owner, links themselves
    only (``lchown``): a link the job left there on a retry points nowhere we change."""
    os.chown(top, uid, gid, follow_symlinks=False)
    for root, dirs, files in os.walk(top, followlinks=False):
        for name in (*dirs, *files):
            try:
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
            except FileNotFoundError:
                pass


def chown_job_dir(job: "JobPaths", run_as: str, only: Path | None = None) -> None:
    """The simulator's uid must write its own job folder (and nothing else: the rest is mounted read-only).
    ``only``: one file of it the platform just rewrote (atomically, so owned by the platform again)."""
    uid, _, gid = run_as.partition(":")
    uid_n, gid_n = int(uid), int(gid or uid)
    if os.geteuid() != 0:
        return  # not root: the folder's mode must already let run_as write (documented)
    if only is not None:
        os.chown(only, uid_n, gid_n, follow_symlinks=False)
        return
    # platform.log (and logs/) made anew if a job's earlier attempt replaced them; the job is not running now
    os.close(open_platform_file(job.dir, job.log_file.relative_to(job.dir)))
    chown_tree(job.dir, uid_n, gid_n)  # links themselves only: never what a job's link points at
    os.chown(job.log_file, 0, 0, follow_symlinks=False)  # the merged log stays the platform's: read-only to the job
