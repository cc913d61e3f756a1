"""Inference targets created through the API (``POST /deploy/inferences``): one JSON file.

Why a file under the platform's home (``<OPEVA_HOME>/inference-targets.json``) and not the data
root: the home is what the API, the control worker (the switch) and ``make up`` (which starts the
containers) all know, and jobs never see it. hosts.yaml stays the operator's file: the API never
writes it. Each entry is a hosts.yaml target (:class:`core.hosts.InferenceTargetSpec`, the same
bounds) plus the host it runs on.

Writes are atomic (temp file + ``os.replace``) under an exclusive ``flock``, so two API processes
(the scaled layout) never lose each other's targets. A reader never follows a link and reads at most
:data:`MAX_BYTES`; a file that is not a valid registry is a :class:`RegistryError` naming it, which
readers turn into "no API targets" (logged) and writers into a refusal, so nothing overwrites it.
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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.hosts import InferenceTargetSpec
from core.layout import write_json_atomic

FILE_NAME = "inference-targets.json"
LOCK_NAME = "inference-targets.lock"
MAX_BYTES = 1 << 20
MAX_TARGETS = 32  # each platform target is a container with its own memory: a bound, not a quota system
_lock = threading.Lock()


class RegistryError(Exception):
    """The registry file cannot be read as one (``status`` 503: the operator must fix or remove it),
    or a change is refused (409: the id is taken, too many targets)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class RegisteredTarget(InferenceTargetSpec):
    """A hosts.yaml target and the host it is declared under."""

    host: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="A host of the hosts file (GET /hosts).")


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = 1
    targets: list[RegisteredTarget] = Field(default_factory=list, max_length=MAX_TARGETS)

    @field_validator("targets")
    @classmethod
    def _unique(cls, v: list[RegisteredTarget]) -> list[RegisteredTarget]:
        ids = [t.id for t in v]
        if len(ids) != len(set(ids)):
            raise ValueError("target ids must be unique")
        return v


def registry_path(home: Path) -> Path:
    return Path(home) / FILE_NAME


def read(home: Path) -> list[RegisteredTarget]:
    """The API-created targets; [] when none was ever made. RegistryError(503) on a file that is not one."""
    path = registry_path(home)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    except OSError as exc:  # a link (ELOOP) or no permission
        raise RegistryError(503, f"inference target registry {path} cannot be read ({exc.strerror}); fix or remove it") from None
    with os.fdopen(fd, "rb") as f:
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise RegistryError(503, f"inference target registry {path} is over {MAX_BYTES} bytes; fix or remove it")
    try:
        return Registry.model_validate(json.loads(raw)).targets
    except (ValueError, ValidationError) as exc:
        first = str(exc).splitlines()[:3]
        raise RegistryError(503, f"inference target registry {path} is not valid ({' '.join(first)[:300]}); fix or remove it") from None


@contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Threads of this process, then processes sharing the home (flock on a lock file beside the registry)."""
    with _lock:
        Path(home).mkdir(parents=True, exist_ok=True)
        fd = os.open(Path(home) / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _write(home: Path, entries: list[RegisteredTarget]) -> None:
    data = Registry(targets=entries).model_dump(mode="json", exclude_unset=False)
    write_json_atomic(registry_path(home), data, mode=0o600, durable=True)


def add(home: Path, entry: RegisteredTarget, taken: set[str]) -> None:
    """Record ``entry``; RegistryError(409) when its id is one of ``taken`` (hosts.yaml's) or already recorded."""
    with _locked(home):
        entries = read(home)
        if entry.id in taken:
            raise RegistryError(409, f"inference target {entry.id!r} already exists (declared in hosts.yaml)")
        if any(e.id == entry.id for e in entries):
            raise RegistryError(409, f"inference target {entry.id!r} already exists (created through the API)")
        if len(entries) >= MAX_TARGETS:
            raise RegistryError(409, f"at most {MAX_TARGETS} inference targets can be created through the API; delete one first")
        _write(home, [*entries, entry])


def remove(home: Path, target_id: str) -> RegisteredTarget | None:
    """Forget ``target_id``; the removed entry, or None when the registry has no such target."""
    with _locked(home):
        entries = read(home)
        found = next((e for e in entries if e.id == target_id), None)
        if found is not None:
            _write(home, [e for e in entries if e.id != target_id])
        return found
