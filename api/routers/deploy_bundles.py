"""Policy bundles (``/deploy/bundles*``, upstream's shapes plus ``from-job``). Parse, call the use case, return."""

from __future__ import annotations

from fastapi import APIRouter, File, Form, Path, Query, Response, UploadFile

from api.deps import Gateway, Hosts, Settings, Storage
from api.errors import ApiError
from api.models_bundles import (
    BundleCreatedOut,
    BundleDeletedOut,
    BundleFileContentOut,
    BundleFilesOut,
    BundleOut,
)
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


@router.post("/deploy/bundles/upload-folder", response_model=BundleCreatedOut, status_code=201,
             responses={200: {"model": BundleCreatedOut, "description": "The same content was already stored (created: false)"},
                        **errors(400, 413)},
             summary="Store an uploaded bundle folder (multipart: `files` and `relative_paths`, repeated in the same order)")
async def upload_folder(storage: Storage, response: Response,
                        files: list[UploadFile] = File(..., description="Each file of the folder"),
                        relative_paths: list[str] | None = Form(None, description="Each file's path in the folder, in the same order (default: the file names)"),
                        name: str | None = Form(None, max_length=200, description="The bundle's name (default: the folder's)")) -> BundleCreatedOut:
    paths = relative_paths if relative_paths is not None else [f.filename or "" for f in files]
    if len(paths) != len(files):
        raise ApiError(400, f"{len(files)} files but {len(paths)} relative_paths: send one path per file, in the same order")
    folder = next((p.replace("\\", "/").split("/", 1)[0] for p in paths if "/" in p.replace("\\", "/")), "")
    out, created = await usecase.upload(storage, [(p, f.file) for p, f in zip(paths, files)], name or folder)
    response.status_code = 201 if created else 200
    return out


@router.get("/deploy/bundles", response_model=list[BundleOut], summary="The stored policy bundles, oldest first")
async def list_bundles(storage: Storage) -> list[BundleOut]:
    return await usecase.list_all(storage)


@router.get("/deploy/bundles/{bundle_id}/files", response_model=BundleFilesOut, responses=errors(404), summary="A bundle's files")
async def bundle_files(storage: Storage, bundle_id: str = BundleId) -> BundleFilesOut:
    return await usecase.files(storage, bundle_id)


@router.get("/deploy/bundles/{bundle_id}/files/content", response_model=BundleFileContentOut, responses=errors(400, 404),
            summary="The first 200 kB of one file of a bundle (text, or is_text false)")
async def bundle_file_content(storage: Storage, bundle_id: str = BundleId,
                              path: str = Query(..., min_length=1, max_length=1000, description="A path from GET .../files")) -> BundleFileContentOut:
    return await usecase.file_content(storage, bundle_id, path)


@router.delete("/deploy/bundles/{bundle_id}", response_model=BundleDeletedOut, responses=errors(404, 409),
               summary="Delete a stored bundle (409 while a reachable inference target serves it)")
async def delete_bundle(storage: Storage, hosts: Hosts, settings: Settings, bundle_id: str = BundleId) -> BundleDeletedOut:
    return await usecase.delete(storage, hosts, settings.home, bundle_id)
