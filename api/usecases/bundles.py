"""Policy bundles (``/deploy/bundles*``): the store is core/bundle_store.py; this adds the job's
run from Prefect (exists? finished? its name) and maps the store's refusals to HTTP answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from api.errors import ApiError
from api.gateway import PrefectGateway, opeva_status
from api.models_bundles import (
    BundleCreatedOut,
    BundleDeletedOut,
    BundleFile,
    BundleFileContentOut,
    BundleFilesOut,
    BundleOut,
)
from api.usecases import inferences
from core import bundle_store
from core.hosts import HostsFile
from core.layout import DataRoot

T = TypeVar("T")


async def _store(fn: Callable[..., T], *args: Any) -> T:
    try:
        return await asyncio.to_thread(fn, *args)
    except bundle_store.BundleError as exc:
        raise ApiError(exc.status, exc.detail) from None


async def from_job(gateway: PrefectGateway, storage: DataRoot, job_id: str) -> tuple[BundleCreatedOut, bool]:
    run = await gateway.read_run(job_id)  # unknown: 404 naming it
    status = opeva_status(run)
    if status != "finished":
        raise ApiError(409, f"job {run.id} is {status}; only a finished job's bundle can be stored")
    entry, created = await _store(bundle_store.import_job_bundle, storage.root, storage.job(str(run.id)).dir, str(run.id), run.name)
    return BundleCreatedOut(created=created, bundle=BundleOut(**entry)), created


async def list_all(storage: DataRoot) -> list[BundleOut]:
    return [BundleOut(**e) for e in await _store(bundle_store.list_bundles, storage.root)]


async def files(storage: DataRoot, bundle_id: str) -> BundleFilesOut:
    entry, listed = await _store(bundle_store.bundle_files, storage.root, bundle_id)
    return BundleFilesOut(bundle_id=entry["bundle_id"], bundle_name=entry["name"], file_count=len(listed),
                          files=[BundleFile(**f) for f in listed])


async def upload(storage: DataRoot, files: list[tuple[str, Any]], name: str) -> tuple[BundleCreatedOut, bool]:
    entry, created = await _store(bundle_store.import_upload, storage.root, files, name)
    return BundleCreatedOut(created=created, bundle=BundleOut(**entry)), created


async def file_content(storage: DataRoot, bundle_id: str, path: str) -> BundleFileContentOut:
    return BundleFileContentOut(**await _store(bundle_store.file_content, storage.root, bundle_id, path))


async def delete(storage: DataRoot, hosts: HostsFile, home: Path, bundle_id: str) -> BundleDeletedOut:
    """Refused (409) while a reachable inference target serves the bundle, as upstream; a target that
    does not answer cannot be serving anything, so it does not block the delete."""
    await _store(bundle_store.get_bundle, storage.root, bundle_id)  # unknown: 404 before probing targets
    serving = await inferences.serving(hosts, home, bundle_id)
    if serving:
        raise ApiError(409, f"bundle {bundle_id} is active on inference target(s) {', '.join(serving)}; switch them to another bundle first",
                       targets=serving)
    entry = await _store(bundle_store.delete_bundle, storage.root, bundle_id)
    return BundleDeletedOut(bundle_id=entry["bundle_id"])
