"""CityLearn datasets: built by the build-dataset flow, uploaded as zips, served from shared storage.

``POST /dataset`` checks the request against the site at once (schema, buildings,
range, size: :func:`core.dataset_build.plan`), so most mistakes are a 4xx with a
message instead of a failed run, then submits the build as a flow run. With
``wait`` (seconds) it answers when the build ends, with the build's warnings and
validation, as the upstream backend did.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict

from api.deps import Gateway, Hosts, Mongo, Storage, known_host
from api.errors import ApiError
from api.dataset_models import DatasetCreated, DatasetEntry, DatasetLineage, DatasetRequest, Generated, GenerateNotFound, GenerateRequest, Uploaded
from api.models import FILE_NAME_PATTERN
from api.owners import Owned
from api.routers.sites import SiteName, check_site_name, errors
from api.usecases import dataset_lineage as lineage_usecase
from api.usecases import datasets as datasets_usecase
from core.datasets import DatasetError, extract_upload, iter_zip, list_datasets, require_dataset
from core.sites import dataset_sites, dates_available

router = APIRouter(tags=["datasets"])
# Path parameters say in the OpenAPI document what a name may be (a safe folder name).
DatasetName = Annotated[str, Path(pattern=FILE_NAME_PATTERN, max_length=128, description="A dataset folder under datasets/")]


def _mapped(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except DatasetError as exc:
        raise ApiError(exc.status, str(exc)) from None


class Message(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"message": "Dataset living-lab-june deleted"}]})
    message: str


class SiteBuildings(BaseModel):
    site_id: str
    buildings: list[str]


class DatasetSites(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"sites": [{"site_id": "living_lab_sample", "buildings": ["R-H-01", "R-H-02", "O-03"]}]}]})
    sites: list[SiteBuildings]


class DatesEntry(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"installation": "building_R-H-01", "oldest_record": "2025-01-01T00:00:00+00:00", "newest_record": "2025-12-31T23:45:00+00:00"}]})
    installation: str
    oldest_record: str
    newest_record: str


@router.post("/dataset", summary="Build a CityLearn dataset from a site (a build-dataset flow run)", response_model=DatasetCreated,
             response_model_by_alias=True, responses=errors(404, 409, 413, 422))
async def create_dataset(
    body: DatasetRequest,
    own: Owned,
    gateway: Gateway,
    storage: Storage,
    client: Mongo,
    hosts: Hosts,
) -> dict[str, Any]:
    """``seconds_per_time_step`` overrides ``period``; ``citylearn_configs.validation.smoke_check``
    asks for the CityLearn load check (an option, never written into schema.json). ``overwrite``
    rebuilds an existing dataset: only its owner may, and not while a job uses it."""
    if body.overwrite and await asyncio.to_thread(storage.dataset_dir(body.name).exists):
        own.check_change("dataset", body.name)
        await lineage_usecase.refuse_change_while_used(gateway, storage, body.name)
    answer = await datasets_usecase.create(body, gateway, storage, client, known_host(body.target_host, hosts))
    await asyncio.to_thread(own.made, "dataset", body.name)
    return answer


@router.post("/datasets/generate", summary="Build one dataset per site: <prefix>_<site>_all_buildings (dry run, continue on error)",
             response_model=Generated, response_model_by_alias=True,
             responses={**errors(413), 404: {"model": GenerateNotFound, "description": "Sites that cannot be built ({message, site_ids}), or an unknown host"}})
async def generate_datasets(
    body: GenerateRequest,
    own: Owned,
    gateway: Gateway,
    storage: Storage,
    client: Mongo,
    hosts: Hosts,
) -> dict[str, Any]:
    """Without ``continue_on_error`` a site that cannot be built answers 404 with an object
    ``detail`` ``{message, site_ids, failed}`` (upstream's shape) and nothing is submitted."""
    answer = await datasets_usecase.generate(body, gateway, storage, client, known_host(body.target_host, hosts))
    for made in answer["created"]:
        await asyncio.to_thread(own.made, "dataset", made["name"])
    return answer


@router.get("/datasets", summary="Datasets (a bare array, as the OPEVA UI reads it)", response_model=list[DatasetEntry], response_model_by_alias=True, responses=errors())
def datasets(own: Owned, storage: Storage) -> list[dict[str, Any]]:
    entries = list_datasets(storage)
    visible = set(own.visible("dataset", [e["name"] for e in entries]))
    return [e for e in entries if e["name"] in visible]


@router.get("/dataset/download/{name}", summary="The dataset as a zip, streamed as it is made", response_class=StreamingResponse,
            responses={**errors(400, 404), 200: {"content": {"application/zip": {}}, "description": "the zip"}})
def download(name: DatasetName, own: Owned, storage: Storage) -> StreamingResponse:
    path = _mapped(require_dataset, storage, name)
    own.check_read("dataset", name)
    storage.inside(path, what="dataset")  # a dataset linked outside the root: refused
    return StreamingResponse(iter_zip(storage, path), media_type="application/zip", headers={"Content-Disposition": f'attachment; filename="{name}.zip"'})


@router.delete("/dataset/{name}", summary="Delete a dataset (its owner or an admin; not while an unfinished job uses it)", response_model=Message,
               responses=errors(400, 403, 404, 409))
async def delete(name: DatasetName, own: Owned, storage: Storage, gateway: Gateway) -> dict[str, Any]:
    path = _mapped(require_dataset, storage, name)
    own.check_change("dataset", name)
    await lineage_usecase.refuse_change_while_used(gateway, storage, name)
    if path.is_symlink():  # not made by the API: neither the link nor what it points at is ours to delete
        raise ApiError(403, f"dataset {name!r} is a link, not a folder the platform made; it is not deleted through the API")
    await asyncio.to_thread(storage.remove_inside, path)  # links inside are removed, never followed
    own.gone("dataset", name)
    return {"message": f"Dataset {name} deleted"}


@router.post("/dataset/upload", summary="Upload a dataset as a zip (extracted safely into datasets/<name>)", response_model=Uploaded,
             responses=errors(400, 409, 413, 422))
def upload(own: Owned, storage: Storage, file: UploadFile = File(description="A .zip of the dataset folder"),
           name: str = Form(description="Dataset name")) -> dict[str, Any]:
    """Members must be regular files with relative paths inside the folder (no ``..``, no
    absolute paths, no links); size and member count are bounded. One top folder is dropped."""
    answer = _mapped(extract_upload, storage, name, file.file)
    own.made("dataset", answer["name"])
    return answer


@router.get("/dataset/sites", summary="Sites whose schema has buildings with data", response_model=DatasetSites, responses=errors())
def sites_for_datasets(client: Mongo) -> dict[str, Any]:
    return {"sites": dataset_sites(client)}


@router.get("/dataset/dates-available/{site}", summary="First and last timestamp per collection (installation)", response_model=list[DatesEntry],
            responses=errors(404, 422))
def dates(site: SiteName, client: Mongo) -> list[dict[str, Any]]:
    return dates_available(client, check_site_name(site))


@router.get("/dataset/{name}/lineage", summary="The dataset's versions and the jobs that ran on each (state, KPIs)",
            response_model=DatasetLineage, responses=errors(400, 404))
async def lineage(name: DatasetName, storage: Storage, gateway: Gateway) -> DatasetLineage:
    return await lineage_usecase.lineage(gateway, storage, name)
