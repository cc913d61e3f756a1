"""The platform's own files are not world-readable: folders 0700, files 0600.

Why: ``prefect.db`` holds every block (the Mongo URI among them), the auth string
opens Prefect, the service logs name users and URLs. A job, or any other local
account, must read none of them. Made here, in one place, with modes set on
creation (``O_CREAT`` with 0600, never a chmod after a window at 0644) and repaired
on every start for homes made by older versions.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """``path`` as a real folder (not a link) with mode 0700; the files already in it lose
    their group and other bits (a home made before this rule)."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise RuntimeError(f"{path} must be a folder, not a link or a file")
    os.chmod(path, PRIVATE_DIR)
    for entry in os.scandir(path):
        if entry.is_file(follow_symlinks=False):
            mode = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
            if mode & 0o077:
                os.chmod(entry.path, mode & 0o700)
    return path


def open_private_log(path: Path) -> BinaryIO:
    """Append to a log created 0600 (an existing one is made 0600); a link there is refused."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    return os.fdopen(fd, "ab")


def private_secret(path: Path, make: Callable[[], str] = lambda: secrets.token_hex(24)) -> str:
    """The secret in ``path``: made once by ``make`` (0600, created exclusively, so never a file
    someone else placed there, and never through a link), then read back on every start. Hex by
    default: safe in a URL and in a config file without quoting."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE)
    except FileExistsError:
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW)) as f:
            return f.read().strip()
    value = make()
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value
