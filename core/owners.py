"""Who made each experiment config, dataset and site schema: one small JSON store.

Why one file and not a sidecar per item: sidecars would sit in ``configs/`` and
``datasets/<name>/``, where a dataset build (a job) writes and from where zips are
served; the store lives in the data root's platform area (``<root>/.platform``,
0700, file 0600), which jobs see read-only at most (and, at 0700, not at all).

Writes are atomic (temp file + ``os.replace``) under an exclusive ``flock``, so two
API processes sharing the data root never lose each other's claims. Items made
before owners were recorded have none: readable by all, changed by admins only.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal
from core.layout import write_json_atomic

Kind = Literal["config", "dataset", "site"]
KINDS: tuple[str, ...] = ("config", "dataset", "site")
PLATFORM_DIR = ".platform"
MAX_STORE_BYTES = 16 << 20


class OwnerStore:
    """``{"config": {"x.yaml": "alice"}, "dataset": {...}, "site": {...}}`` in ``<root>/.platform/owners.json``."""

    def __init__(self, data_root: Path) -> None:
        self.dir = Path(data_root) / PLATFORM_DIR
        self.path = self.dir / "owners.json"
        self._lock = threading.Lock()

    def _ensure_dir(self) -> None:
        self.dir.mkdir(mode=0o700, exist_ok=True)
        if self.dir.is_symlink() or not self.dir.is_dir():
            raise RuntimeError(f"{self.dir} must be a real folder (not a link)")
        os.chmod(self.dir, 0o700)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Threads of this process, then processes sharing the data root (flock on a lock file)."""
        with self._lock:
            self._ensure_dir()
            fd = os.open(self.dir / "owners.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return {}
        with os.fdopen(fd, "rb") as f:
            data = json.loads(f.read(MAX_STORE_BYTES) or b"{}")
        return {k: {str(n): str(u) for n, u in v.items()} for k, v in data.items() if k in KINDS and isinstance(v, dict)} if isinstance(data, dict) else {}

    def _write(self, data: dict[str, dict[str, str]]) -> None:
        write_json_atomic(self.path, data, mode=0o600, durable=True)

    def owner(self, kind: Kind, name: str) -> str | None:
        with self._locked():
            return self._read().get(kind, {}).get(name)

    def owners(self, kind: Kind) -> dict[str, str]:
        with self._locked():
            return dict(self._read().get(kind, {}))

    def claim(self, kind: Kind, name: str, user: str | None) -> None:
        """``user`` made ``name`` (a new item, or one re-made after its deletion). None: forget."""
        with self._locked():
            data = self._read()
            entries = data.setdefault(kind, {})
            if user is None:
                if entries.pop(name, None) is None:
                    return
            elif entries.get(name) == user:
                return
            else:
                entries[name] = user
            self._write(data)

    def forget(self, kind: Kind, name: str) -> None:
        self.claim(kind, name, None)
