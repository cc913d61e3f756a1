"""Job folders and the archive, per owner (energaize_ui's Jobs page). Parse, call a use case, return."""

from __future__ import annotations

from fastapi import APIRouter, Query

from api.deps import Gateway, Storage
from api.models_organization import FolderRequest, MoveRequest, OwnerRequest
from api.responses import errors
from api.responses_insight import FolderDeleted, FolderOut, OrganizationOut
from api.security import CurrentUser
from api.usecases import organization

router = APIRouter(tags=["job folders"])
Owner = Query(None, min_length=1, max_length=128, description="Whose folders: required while API tokens are off (422 without it); "
              "with tokens on, ignored (the token's user).")


@router.get("/job-folders", response_model=list[FolderOut], responses=errors(400), summary="The owner's job folders")
async def list_folders(storage: Storage, user: CurrentUser, owner: str | None = Owner) -> list[FolderOut]:
    return await organization.folders(storage, user, owner)


# A folder is found by its id *and* its owner (another owner's is a 404): the links say so, so a
# client following them (schemathesis's stateful phase) carries the owner on.
_AS_OWNER = {"owner": "$response.body#/owner"}
FOLDER_LINKS = {"links": {
    "RenameFolder": {"operationId": "rename_folder_job_folders__folder_id__put",
                     "parameters": {"path.folder_id": "$response.body#/folder_id"},
                     "requestBody": {**_AS_OWNER, "name": "$response.body#/name"}, "x-schemathesis": {"merge_body": False}},
    "DeleteFolder": {"operationId": "delete_folder_job_folders__folder_id__delete",
                     "parameters": {"path.folder_id": "$response.body#/folder_id", "query.owner": "$response.body#/owner"}},
    "ListFolders": {"operationId": "list_folders_job_folders_get", "parameters": {"query.owner": "$response.body#/owner"}},
}}


@router.post("/job-folders", response_model=FolderOut, responses=errors(400, 409, 413), summary="Create a folder (409: the owner has one of that name)",
             openapi_extra={"responses": {"200": FOLDER_LINKS}})
async def create_folder(body: FolderRequest, storage: Storage, user: CurrentUser) -> FolderOut:
    return await organization.create_folder(storage, user, body.owner, body.name)


@router.put("/job-folders/{folder_id}", response_model=FolderOut, responses=errors(400, 404, 409, 413), summary="Rename a folder (another owner's: 404)",
            openapi_extra={"responses": {"200": FOLDER_LINKS}})
async def rename_folder(folder_id: str, body: FolderRequest, storage: Storage, user: CurrentUser) -> FolderOut:
    return await organization.rename_folder(storage, user, folder_id, body.owner, body.name)


@router.delete("/job-folders/{folder_id}", response_model=FolderDeleted, responses=errors(400, 404), summary="Delete a folder; its jobs go to no folder")
async def delete_folder(folder_id: str, storage: Storage, user: CurrentUser, owner: str | None = Owner) -> FolderDeleted:
    return await organization.delete_folder(storage, user, folder_id, owner)


@router.put("/job/{job_id}/folder", response_model=OrganizationOut, responses=errors(400, 404, 413), summary="Put a job in one of the owner's folders (null: none)")
async def move_job(job_id: str, body: MoveRequest, gateway: Gateway, storage: Storage, user: CurrentUser) -> OrganizationOut:
    return await organization.move(gateway, storage, user, job_id, body.owner, body.folder_id)


@router.post("/job/{job_id}/archive", response_model=OrganizationOut, responses=errors(400, 404, 409, 413), summary="Archive a finished job (its files stay)")
async def archive_job(job_id: str, body: OwnerRequest, gateway: Gateway, storage: Storage, user: CurrentUser) -> OrganizationOut:
    return await organization.archive(gateway, storage, user, job_id, body.owner, archived=True)


@router.post("/job/{job_id}/restore", response_model=OrganizationOut, responses=errors(400, 404, 413), summary="Restore an archived job")
async def restore_job(job_id: str, body: OwnerRequest, gateway: Gateway, storage: Storage, user: CurrentUser) -> OrganizationOut:
    return await organization.archive(gateway, storage, user, job_id, body.owner, archived=False)
