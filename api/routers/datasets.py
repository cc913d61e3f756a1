"""CityLearn datasets: built by the build-dataset flow, uploaded as zips, served from shared storage.

``POST /dataset`` checks the request against the site at once (schema, buildings,
range, size: :func:`core.dataset_build.plan`), so most mistakes are a 4xx with a
message instead of a failed run, then submits the build as a flow run. With
``wait`` (seconds) it answers when the build ends, with the build's warnings and
validation, as the upstream backend did.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import pymongo
from fastapi import APIRouter, Depends, File, Form, Path, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.deps import get_gateway, get_hosts, get_mongo, get_storage, known_host
from api.errors import ApiError
from api.gateway import DATASET_FLOW, PrefectGateway, opeva_status
from api.models import FILE_NAME_PATTERN
from api.owners import Owned
from api.routers.sites import SiteName, check_site_name, errors
from core.dataset_build import BuildRequest, plan
from core.dataset_schema import CityLearnConfigs
from core.limits import check_dataset_rows
from core.datasets import DatasetError, extract_upload, iter_zip, list_datasets, parse_ts, read_metadata, require_dataset
from core.hosts import HostsFile
from core.layout import DataRoot, safe_name
from core.sites import dataset_sites, dates_available

router = APIRouter(tags=["datasets"])
# Path parameters say in the OpenAPI document what a name may be (a safe folder name).
DatasetName = Annotated[str, Path(pattern=FILE_NAME_PATTERN, max_length=128, description="A dataset folder under datasets/")]
POLL_SECONDS = 1.0
TERMINAL = {"finished", "failed", "stopped", "canceled"}


def _mapped(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except DatasetError as exc:
        raise ApiError(exc.status, str(exc)) from None


class DatasetRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"name": "living-lab-june", "site_id": "living_lab_sample", "description": "hourly, UI form", "period": 60,
             "from_ts": "2025-06-01 00:00:00", "until_ts": "2025-06-08 00:00:00",
             "citylearn_configs": {"random_seed": 0, "central_agent": False, "episode_time_steps": 24}},
            {"name": "hq-15min", "site_id": "i_charging_sample", "period": 15, "citylearn_configs": {"selected_buildings": ["i-charging_headquarters"]}, "wait": 120},
        ]},
    )
    name: str
    site_id: str
    citylearn_configs: CityLearnConfigs = Field(default_factory=CityLearnConfigs)
    description: str = Field("", max_length=2000)
    period: int = Field(60, ge=1, le=1440, description="Minutes per time step")
    from_ts: str | None = Field(None, description="ISO 8601 or YYYY-MM-DD HH:mm:ss; naive means UTC")
    until_ts: str | None = None
    target_host: str = "local"
    wait: float = Field(0, ge=0, le=600, description="Seconds to wait for the build to end (0: answer at once)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return safe_name(v, what="name")

    @field_validator("from_ts", "until_ts")
    @classmethod
    def _ts(cls, v: str | None, info: Any) -> str | None:
        if v:
            try:
                parse_ts(v, info.field_name)
            except DatasetError as exc:
                raise ValueError(str(exc)) from None
        return v


class Validation(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: str = Field(description="passed | failed | pending")
    static: dict[str, Any] | None = None
    citylearn: dict[str, Any] | None = None
    detail: str | None = None


class DatasetCreated(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "message": "Dataset build submitted", "job_id": "0f6c6a3e-...", "status": "queued", "host": "local", "name": "living-lab-june",
        "description": "hourly, UI form", "time_steps": 168, "from": "2025-06-01T00:00:00+00:00", "until": "2025-06-08T00:00:00+00:00",
        "warnings": ["building O-03 skipped: no collection building_O-03*"],
        "validation": {"status": "pending", "detail": "checked when the build ends"}}]})
    message: str
    job_id: str
    status: str
    host: str
    name: str
    description: str
    time_steps: int
    from_: str = Field(alias="from", serialization_alias="from")
    until: str
    warnings: list[str]
    validation: Validation


class DatasetEntry(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "living-lab-june", "description": "hourly", "size": 120433, "created": "2025-06-09T10:00:00+00:00",
                                                               "site": "living_lab_sample", "from": "2025-06-01T00:00:00+00:00", "until": "2025-06-08T00:00:00+00:00", "period": 60, "source": "build"}]})
    name: str
    description: str = ""
    size: int
    created: str
    site: str | None = None
    from_: str | None = Field(None, alias="from", serialization_alias="from")
    until: str | None = None
    period: int | None = None
    source: str


class Message(BaseModel):
    message: str


class Uploaded(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"message": "Dataset uploaded", "name": "my-dataset", "size_bytes": 52311, "files": 7}]})
    message: str
    name: str
    size_bytes: int
    files: int


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


async def _wait_for_build(gateway: PrefectGateway, job_id: str, seconds: float) -> tuple[str, str]:
    """(OPEVA status, state message) once the run ends or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while True:
        run = await gateway.read_run(job_id)
        status = opeva_status(run)
        if status in TERMINAL or time.monotonic() >= deadline:
            return status, (run.state.message if run.state else "") or ""
        await asyncio.sleep(POLL_SECONDS)


@router.post("/dataset", summary="Build a CityLearn dataset from a site (a build-dataset flow run)", response_model=DatasetCreated,
             response_model_by_alias=True, responses=errors(404, 409, 413, 422))
async def create_dataset(
    body: DatasetRequest,
    own: Owned,
    gateway: PrefectGateway = Depends(get_gateway),
    storage: DataRoot = Depends(get_storage),
    client: pymongo.MongoClient = Depends(get_mongo),
    hosts: HostsFile = Depends(get_hosts),
) -> dict[str, Any]:
    host = known_host(body.target_host, hosts)
    if storage.dataset_dir(body.name).exists():
        raise ApiError(409, f"dataset {body.name!r} already exists; delete it first or choose another name")
    check_site_name(body.site_id)
    if body.from_ts and body.until_ts:  # the size of what was asked is refused before any site lookup
        check_dataset_rows(parse_ts(body.from_ts, "from_ts"), parse_ts(body.until_ts, "until_ts"), body.period)
    params = body.model_dump(exclude={"target_host", "wait"}, exclude_none=True)
    params["citylearn_configs"] = body.citylearn_configs.model_dump(exclude_none=True)
    request = BuildRequest(**params)
    p = await asyncio.to_thread(_mapped, plan, client, request)
    check_dataset_rows(p.grid.start, p.grid.until, body.period)  # 422 over the row cap (memory and disk of one build)
    run = await gateway.submit(DATASET_FLOW, host.name, params, name=f"dataset-{body.name}")
    await asyncio.to_thread(own.made, "dataset", body.name)
    answer = {"message": "Dataset build submitted", "job_id": str(run.id), "status": run.status, "host": host.name, "name": body.name,
              "description": body.description, "time_steps": p.grid.steps, "from": p.grid.start.isoformat(), "until": p.grid.until.isoformat(),
              "warnings": p.warnings, "validation": {"status": "pending", "detail": "checked when the build ends (dataset.json, the run's artifact)"}}
    if body.wait:
        status, message = await _wait_for_build(gateway, str(run.id), body.wait)
        answer["status"] = status
        if status == "finished":
            meta = read_metadata(storage.dataset_dir(body.name))
            answer.update(message="Dataset created", warnings=meta.get("warnings", p.warnings), validation=meta.get("validation", answer["validation"]))
        elif status in TERMINAL:
            raise ApiError(422, f"the build of {body.name!r} ended {status}: {message}", job_id=str(run.id), status=status)
    return answer


@router.get("/datasets", summary="Datasets (a bare array, as the OPEVA UI reads it)", response_model=list[DatasetEntry], response_model_by_alias=True, responses=errors())
def datasets(own: Owned, storage: DataRoot = Depends(get_storage)) -> list[dict[str, Any]]:
    entries = list_datasets(storage)
    visible = set(own.visible("dataset", [e["name"] for e in entries]))
    return [e for e in entries if e["name"] in visible]


@router.get("/dataset/download/{name}", summary="The dataset as a zip, streamed as it is made", response_class=StreamingResponse,
            responses={**errors(400, 404), 200: {"content": {"application/zip": {}}, "description": "the zip"}})
def download(name: DatasetName, own: Owned, storage: DataRoot = Depends(get_storage)) -> StreamingResponse:
    path = _mapped(require_dataset, storage, name)
    own.check_read("dataset", name)
    storage.inside(path, what="dataset")  # a dataset linked outside the root: refused
    return StreamingResponse(iter_zip(storage, path), media_type="application/zip", headers={"Content-Disposition": f'attachment; filename="{name}.zip"'})


@router.delete("/dataset/{name}", summary="Delete a dataset (its owner or an admin)", response_model=Message, responses=errors(400, 403, 404))
def delete(name: DatasetName, own: Owned, storage: DataRoot = Depends(get_storage)) -> dict[str, Any]:
    path = _mapped(require_dataset, storage, name)
    own.check_change("dataset", name)
    if path.is_symlink():  # not made by the API: neither the link nor what it points at is ours to delete
        raise ApiError(403, f"dataset {name!r} is a link, not a folder the platform made; it is not deleted through the API")
    storage.remove_inside(path)  # links inside are removed, never followed
    own.gone("dataset", name)
    return {"message": f"Dataset {name} deleted"}


@router.post("/dataset/upload", summary="Upload a dataset as a zip (extracted safely into datasets/<name>)", response_model=Uploaded,
             responses=errors(400, 409, 413, 422))
def upload(own: Owned, file: UploadFile = File(description="A .zip of the dataset folder"), name: str = Form(description="Dataset name"),
           storage: DataRoot = Depends(get_storage)) -> dict[str, Any]:
    """Members must be regular files with relative paths inside the folder (no ``..``, no
    absolute paths, no links); size and member count are bounded. One top folder is dropped."""
    answer = _mapped(extract_upload, storage, name, file.file)
    own.made("dataset", answer["name"])
    return answer


@router.get("/dataset/sites", summary="Sites whose schema has buildings with data", response_model=DatasetSites, responses=errors())
def sites_for_datasets(client: pymongo.MongoClient = Depends(get_mongo)) -> dict[str, Any]:
    return {"sites": dataset_sites(client)}


@router.get("/dataset/dates-available/{site}", summary="First and last timestamp per collection (installation)", response_model=list[DatesEntry],
            responses=errors(404, 422))
def dates(site: SiteName, client: pymongo.MongoClient = Depends(get_mongo)) -> list[dict[str, Any]]:
    return dates_available(client, check_site_name(site))
