"""Policy bundles (``/deploy/bundles*``, upstream's shapes plus ``from-job``). Parse, call the use case, return."""

from __future__ import annotations

from fastapi import APIRouter, Path, Response

from api.deps import Gateway, Hosts, Settings, Storage
from api.models_bundles import BundleCreatedOut, BundleDeletedOut, BundleFilesOut, BundleOut
from api.responses import errors
from api.usecases import bundles as usecase

router = APIRouter(tags=["deploy"])
BundleId = Path(..., max_length=64, description="A bundle_id from GET /deploy/bundles")


@router.post("/deploy/bundles/from-job/{job_id}", response_model=BundleCreatedOut, status_code=201,
             responses={200: {"model": BundleCreatedOut, "description": "The same content was already stored (created: false)"},
                        **errors(400, 404, 409, 422)},
             summary="Store a finished job's policy bundle (its bundle/ folder), lineage kept")
async def from_job(gateway: Gateway, storage: Storage, response: Response,
                   job_id: str = Path(..., max_length=64)) -> BundleCreatedOut:
    out, created = await usecase.from_job(gateway, storage, job_id)
    response.status_code = 201 if created else 200
    return out


@router.get("/deploy/bundles", response_model=list[BundleOut], summary="The stored policy bundles, oldest first")
async def list_bundles(storage: Storage) -> list[BundleOut]:
    return await usecase.list_all(storage)


@router.get("/deploy/bundles/{bundle_id}/files", response_model=BundleFilesOut, responses=errors(404), summary="A bundle's files")
async def bundle_files(storage: Storage, bundle_id: str = BundleId) -> BundleFilesOut:
    return await usecase.files(storage, bundle_id)


@router.delete("/deploy/bundles/{bundle_id}", response_model=BundleDeletedOut, responses=errors(404, 409),
               summary="Delete a stored bundle (409 while a reachable inference target serves it)")
async def delete_bundle(storage: Storage, hosts: Hosts, settings: Settings, bundle_id: str = BundleId) -> BundleDeletedOut:
    return await usecase.delete(storage, hosts, settings.home, bundle_id)
