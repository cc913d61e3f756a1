"""Open a file under a folder one component at a time, never following a link.

Why: a job writes its own folder and can swap any entry in it for a link between a
path check and an open. Walking with ``openat`` from the folder's descriptor with
``O_NOFOLLOW`` on every component means the file opened is the file checked; the
bytes served come from that descriptor, never from a path opened again.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
CHUNK = 1 << 16


class NotARegularFile(OSError):
    """A component is a link, or the last one is not a regular file (FIFO, device, folder)."""


def open_beneath(base: Path, parts: Sequence[str]) -> int:
    """A read-only descriptor of the regular file ``base/parts...``; ``base`` itself is
    opened as it is (the caller checked it), every part below it without following links.
    FileNotFoundError when a part is missing, NotARegularFile for a link, FIFO or device."""
    if not parts or any(p in ("", ".", "..") or "/" in p for p in parts):
        raise NotARegularFile(errno.EINVAL, "a path of plain names is required")
    fd = os.open(base, DIR_FLAGS)
    try:
        for part in parts[:-1]:
            try:
                nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise NotARegularFile(exc.errno, f"{part!r} is not a folder") from None
                raise
            os.close(fd)
            fd = nxt
        try:
            leaf = os.open(parts[-1], FILE_FLAGS, dir_fd=fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                raise NotARegularFile(exc.errno, f"{parts[-1]!r} is not a regular file") from None
            raise
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(leaf).st_mode):
        os.close(leaf)
        raise NotARegularFile(errno.EINVAL, f"{parts[-1]!r} is not a regular file")
    return leaf


def read_chunks(fd: int, size: int) -> Iterator[bytes]:
    """At most ``size`` bytes (the size when opened: a file growing meanwhile is not chased),
    in chunks; the descriptor is closed at the end, or when the reader stops early."""
    try:
        left = size
        while left > 0:
            data = os.read(fd, min(CHUNK, left))
            if not data:
                return
            left -= len(data)
            yield data
    finally:
        os.close(fd)
