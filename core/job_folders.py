"""Job folders and the archive, per owner: how a user sorts their jobs (energaize_ui's Jobs page).

Why a small JSON file and not Prefect: a folder is no flow run, and a job's organization must
read in one go for a listing of a thousand jobs. One file, ``<data root>/platform/
job_organization.json``, holds both the folders and each job's ``{folder_id, archived,
archived_at, archived_by}``; every change takes an exclusive lock and replaces the file
atomically, so concurrent requests (and several API processes on one data root) never lose
one another's writes. Prefect-free: the API's use cases call it.

Folders are their owner's alone: another owner's folder is "not found", never "forbidden",
so its existence is not confirmed. Archiving only flags a job: every file stays.
"""

from __future__ import annotations

import fcntl
import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.layout import write_json_atomic

FILE_NAME = "job_organization.json"
MAX_FOLDERS_PER_OWNER = 500
OWNER = re.compile(r"^[\w.@+-][\w .@+-]{0,127}$")
FOLDER_NAME = re.compile(r"^[\w][\w .,()'&+#:-]{0,99}$")


class FolderNotFound(LookupError):
    pass


class FolderRefused(ValueError):
    """A name that breaks the rules, a duplicate name, or too many folders (``status``: 400 or 409)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def check_owner(owner: str) -> str:
    if not isinstance(owner, str) or not OWNER.fullmatch(owner):
        raise FolderRefused("owner must be 1-128 letters, digits, spaces or . @ + - _ (not starting with a space)")
    return owner


def check_folder_name(name: str) -> str:
    name = name.strip() if isinstance(name, str) else name
    if not isinstance(name, str) or not FOLDER_NAME.fullmatch(name):
        raise FolderRefused("name must be 1-100 letters, digits, spaces or . , ( ) ' & + # : - _ and start with a letter or digit")
    return name


def empty_organization() -> dict[str, Any]:
    return {"folder_id": None, "archived": False, "archived_at": None, "archived_by": None, "owner": None, "updated_at": None}


class OrganizationStore:
    """The folders and job organization of one data root."""

    def __init__(self, platform_dir: Path) -> None:
        self.path = platform_dir / FILE_NAME
        self._lock_path = platform_dir / f".{FILE_NAME}.lock"
        self._cache: tuple[int, dict[str, Any]] | None = None

    # -- the file ----------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {"version": 1, "folders": {}, "jobs": {}}
        if self._cache is not None and self._cache[0] == st.st_mtime_ns:
            return self._cache[1]
        data = json.loads(self.path.read_text())
        data.setdefault("folders", {})
        data.setdefault("jobs", {})
        self._cache = (st.st_mtime_ns, data)
        return data

    @contextmanager
    def _changing(self) -> Iterator[dict[str, Any]]:
        """The data under an exclusive lock; written back atomically when the block ends cleanly."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._cache = None
                data = json.loads(json.dumps(self._read()))  # a private copy
                yield data
                write_json_atomic(self.path, data)
                self._cache = None
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- folders -----------------------------------------------------------

    def folders(self, owner: str) -> list[dict[str, Any]]:
        owner = check_owner(owner)
        mine = [f for f in self._read()["folders"].values() if f["owner"] == owner]
        return sorted(mine, key=lambda f: (f["created_at"], f["folder_id"]))

    @staticmethod
    def _own(data: dict[str, Any], owner: str, folder_id: str) -> dict[str, Any]:
        folder = data["folders"].get(folder_id) if isinstance(folder_id, str) else None
        if folder is None or folder["owner"] != owner:
            raise FolderNotFound(f"no folder {folder_id!r}")
        return folder

    @staticmethod
    def _unique(data: dict[str, Any], owner: str, name: str, but: str | None = None) -> None:
        if any(f["owner"] == owner and f["name"] == name and f["folder_id"] != but for f in data["folders"].values()):
            raise FolderRefused(f"you already have a folder named {name!r}", 409)

    def create_folder(self, owner: str, name: str) -> dict[str, Any]:
        owner, name = check_owner(owner), check_folder_name(name)
        with self._changing() as data:
            if sum(f["owner"] == owner for f in data["folders"].values()) >= MAX_FOLDERS_PER_OWNER:
                raise FolderRefused(f"at most {MAX_FOLDERS_PER_OWNER} folders per owner", 409)
            self._unique(data, owner, name)
            stamp = now_iso()
            folder = {"folder_id": uuid.uuid4().hex, "name": name, "owner": owner, "created_at": stamp, "updated_at": stamp}
            data["folders"][folder["folder_id"]] = folder
        return folder

    def rename_folder(self, owner: str, folder_id: str, name: str) -> dict[str, Any]:
        owner, name = check_owner(owner), check_folder_name(name)
        with self._changing() as data:
            folder = self._own(data, owner, folder_id)
            self._unique(data, owner, name, but=folder_id)
            folder.update(name=name, updated_at=now_iso())
        return folder

    def delete_folder(self, owner: str, folder_id: str) -> list[str]:
        """Remove the folder; its jobs go back to no folder (answered: their ids)."""
        owner = check_owner(owner)
        with self._changing() as data:
            self._own(data, owner, folder_id)
            del data["folders"][folder_id]
            moved = [job for job, org in data["jobs"].items() if org.get("folder_id") == folder_id]
            for job in moved:
                data["jobs"][job]["folder_id"] = None
        return moved

    # -- jobs --------------------------------------------------------------

    def organization(self, job_id: str) -> dict[str, Any]:
        return {**empty_organization(), **self._read()["jobs"].get(job_id, {})}

    def organizations(self) -> dict[str, dict[str, Any]]:
        """Every job's organization (for a listing: one read)."""
        return {job: {**empty_organization(), **org} for job, org in self._read()["jobs"].items()}

    def _set(self, job_id: str, owner: str, **changes: Any) -> dict[str, Any]:
        with self._changing() as data:
            org = {**empty_organization(), **data["jobs"].get(job_id, {}), **changes, "owner": owner, "updated_at": now_iso()}
            data["jobs"][job_id] = org
        return org

    def move(self, owner: str, job_id: str, folder_id: str | None) -> dict[str, Any]:
        owner = check_owner(owner)
        if folder_id is not None:
            with self._changing() as data:  # the folder must be the owner's, checked under the lock
                self._own(data, owner, folder_id)
                org = {**empty_organization(), **data["jobs"].get(job_id, {}), "folder_id": folder_id, "owner": owner, "updated_at": now_iso()}
                data["jobs"][job_id] = org
            return org
        return self._set(job_id, owner, folder_id=None)

    def archive(self, owner: str, job_id: str) -> dict[str, Any]:
        owner = check_owner(owner)
        return self._set(job_id, owner, archived=True, archived_at=now_iso(), archived_by=owner)

    def restore(self, owner: str, job_id: str) -> dict[str, Any]:
        return self._set(job_id, check_owner(owner), archived=False, archived_at=None, archived_by=None)

    def forget(self, job_id: str) -> None:
        """A deleted job leaves no organization behind."""
        if job_id in self._read()["jobs"]:
            with self._changing() as data:
                data["jobs"].pop(job_id, None)
