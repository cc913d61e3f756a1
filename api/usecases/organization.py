"""Job folders and the archive, per owner (core/job_folders.py holds the rules and the file).

Who the owner is: with API tokens on, always the token's user (a body or query ``owner``
naming someone else is ignored, so nobody reads or changes another's folders); with auth off,
the ``owner`` the client sends (energaize_ui sends the user it logged in with).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from api.errors import ApiError
from api.gateway import PrefectGateway, opeva_status
from api.responses_insight import FolderDeleted, FolderOut, Organization, OrganizationOut
from api.security import User, require_manage
from core.job_folders import FolderNotFound, FolderRefused, OrganizationStore
from core.layout import DataRoot

_STORES: dict[Path, OrganizationStore] = {}
TERMINAL = ("finished", "failed", "stopped", "canceled")


def store_of(storage: DataRoot) -> OrganizationStore:
    """One store per data root in this process (it caches the file between changes)."""
    if storage.platform_dir not in _STORES:
        _STORES[storage.platform_dir] = OrganizationStore(storage.platform_dir)
    return _STORES[storage.platform_dir]


def owner_of(user: User, claimed: str | None) -> str:
    if user.authenticated:
        return user.name  # type: ignore[return-value]
    if not claimed:
        raise ApiError(422, "owner: required (the user whose folders these are)")
    return claimed


async def _call(fn: Any, *args: Any) -> Any:
    try:
        return await asyncio.to_thread(fn, *args)
    except FolderNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except FolderRefused as exc:
        raise ApiError(exc.status, str(exc)) from None


async def folders(storage: DataRoot, user: User, owner: str | None) -> list[FolderOut]:
    return [FolderOut(**f) for f in await _call(store_of(storage).folders, owner_of(user, owner))]


async def create_folder(storage: DataRoot, user: User, owner: str | None, name: str) -> FolderOut:
    return FolderOut(**await _call(store_of(storage).create_folder, owner_of(user, owner), name))


async def rename_folder(storage: DataRoot, user: User, folder_id: str, owner: str | None, name: str) -> FolderOut:
    return FolderOut(**await _call(store_of(storage).rename_folder, owner_of(user, owner), folder_id, name))


async def delete_folder(storage: DataRoot, user: User, folder_id: str, owner: str | None) -> FolderDeleted:
    moved = await _call(store_of(storage).delete_folder, owner_of(user, owner), folder_id)
    return FolderDeleted(message=f"Folder {folder_id} deleted", folder_id=folder_id, moved_job_ids=moved)


async def _job(gateway: PrefectGateway, user: User, job_id: str) -> tuple[str, str]:
    """The job's canonical id and status; 404 unknown, 403 (tokens on) when it is not the caller's."""
    run = await gateway.read_run(job_id)
    if user.authenticated:
        require_manage(user, (run.parameters or {}).get("submitted_by"), str(run.id))
    return str(run.id), opeva_status(run)


async def move(gateway: PrefectGateway, storage: DataRoot, user: User, job_id: str, owner: str | None, folder_id: str | None) -> OrganizationOut:
    jid, _ = await _job(gateway, user, job_id)
    org = await _call(store_of(storage).move, owner_of(user, owner), jid, folder_id)
    return OrganizationOut(message="Job moved" if folder_id else "Job removed from its folder", job_id=jid, organization=Organization(**org))


async def archive(gateway: PrefectGateway, storage: DataRoot, user: User, job_id: str, owner: str | None, archived: bool) -> OrganizationOut:
    """Archive (or restore) a finished job: a flag; every file of the job stays."""
    jid, status = await _job(gateway, user, job_id)
    if archived and status not in TERMINAL:
        raise ApiError(409, f"job {jid} is {status}; only finished, failed, stopped or canceled jobs can be archived", status=status, job_id=jid)
    store = store_of(storage)
    org = await _call(store.archive if archived else store.restore, owner_of(user, owner), jid)
    return OrganizationOut(message="Job archived" if archived else "Job restored", job_id=jid, organization=Organization(**org))


async def organizations(storage: DataRoot) -> dict[str, dict[str, Any]]:
    return await asyncio.to_thread(store_of(storage).organizations)


async def forget(storage: DataRoot, job_id: str) -> None:
    await asyncio.to_thread(store_of(storage).forget, job_id)
