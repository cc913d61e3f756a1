"""CityLearn datasets: built by the build-dataset flow, served from shared storage."""

from __future__ import annotations

import asyncio
from typing import Any

import pymongo
from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.deps import get_gateway, get_hosts, get_mongo, get_storage, known_host
from api.errors import ApiError
from api.gateway import DATASET_FLOW, PrefectGateway
from api.routers.sites import check_site_name
from api.gateway import opeva_status
from core.sites import dates_available, site_schema
from core.layout import DataRoot, safe_name
from core.hosts import HostsFile
from core.dataset_build import iter_zip, list_datasets, parse_ts
from core.limits import check_dataset_rows

router = APIRouter(tags=["datasets"])


class CityLearnConfigs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    selected_buildings: list[str] | None = Field(None, description="Building ids of the site schema; default all")
    schema_overrides: dict[str, Any] = Field(default_factory=dict, description="Top-level site-schema keys replaced for this build")
    building_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Per building id, keys merged into its schema.json entry")
    defaults: dict[str, float] = Field(default_factory=dict, description="Column -> value for what the site lacks")

    @field_validator("selected_buildings", mode="before")
    @classmethod
    def _ids(cls, v: Any) -> Any:
        return [str(b) for b in v] if isinstance(v, list) else v


class DatasetRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "living-lab-2025", "site_id": "living_lab_sample", "citylearn_configs": {"selected_buildings": ["1", "2"]}, "description": "two buildings, hourly", "period": 60, "from_ts": "2025-06-01T00:00:00Z", "until_ts": "2025-07-01T00:00:00Z"}]},
    )
    name: str
    site_id: str
    citylearn_configs: CityLearnConfigs = Field(default_factory=CityLearnConfigs)
    description: str = Field("", max_length=2000)
    period: int = Field(60, ge=1, le=1440, description="Minutes per time step")
    from_ts: str | None = None
    until_ts: str | None = None
    target_host: str = "local"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return safe_name(v, what="name")


@router.post("/dataset", summary="Build a CityLearn dataset from a site (a build-dataset flow run)")
async def create_dataset(
    body: DatasetRequest,
    gateway: PrefectGateway = Depends(get_gateway),
    storage: DataRoot = Depends(get_storage),
    client: pymongo.MongoClient = Depends(get_mongo),
    hosts: HostsFile = Depends(get_hosts),
) -> dict[str, Any]:
    host = known_host(body.target_host, hosts)
    if storage.dataset_dir(body.name).exists():
        raise ApiError(409, f"dataset {body.name!r} already exists; delete it first or choose another name")
    check_site_name(body.site_id)
    stamps = {}
    for value, what in ((body.from_ts, "from_ts"), (body.until_ts, "until_ts")):
        if value:
            try:
                stamps[what] = parse_ts(value, what)
            except (ValueError, OverflowError) as exc:
                raise ApiError(422, str(exc)) from None
    if len(stamps) == 2:
        check_dataset_rows(stamps["from_ts"], stamps["until_ts"], body.period)  # 422 over the row cap
    schema = await asyncio.to_thread(site_schema, client, body.site_id)
    unknown = [b for b in body.citylearn_configs.selected_buildings or [] if b not in schema.buildings]
    if unknown:
        raise ApiError(422, f"unknown building(s) {', '.join(unknown)}; site {body.site_id} has {', '.join(schema.buildings)}")
    params = body.model_dump(exclude={"target_host"})
    run = await gateway.submit(DATASET_FLOW, host.name, params, name=f"dataset-{body.name}")
    return {"job_id": str(run.id), "status": opeva_status(run), "host": host.name, "name": body.name, "message": "Dataset build submitted"}


@router.get("/datasets", summary="Datasets with size, creation time, site and range")
def datasets(storage: DataRoot = Depends(get_storage)) -> dict[str, Any]:
    return {"datasets": list_datasets(storage)}


def _dataset(storage: DataRoot, name: str):
    path = storage.dataset_dir(name)
    if not path.is_dir() and not path.is_symlink():
        raise ApiError(404, f"no dataset named {name!r}")
    return path


@router.get("/dataset/download/{name}", summary="The dataset as a zip, streamed as it is made", response_class=StreamingResponse)
def download(name: str, storage: DataRoot = Depends(get_storage)) -> StreamingResponse:
    path = _dataset(storage, name)
    storage.inside(path, what="dataset")  # a dataset linked outside the root: 403
    return StreamingResponse(iter_zip(storage, path), media_type="application/zip", headers={"Content-Disposition": f'attachment; filename="{name}.zip"'})


@router.delete("/dataset/{name}", summary="Delete a dataset")
def delete(name: str, storage: DataRoot = Depends(get_storage)) -> dict[str, Any]:
    storage.remove_inside(_dataset(storage, name))  # a linked dataset: the link goes, never its target
    return {"message": f"Dataset {name} deleted"}


@router.get("/dataset/dates-available/{site}", summary="First and last timestamp per collection, and the range all cover")
def dates(site: str, client: pymongo.MongoClient = Depends(get_mongo)) -> dict[str, Any]:
    return dates_available(client, check_site_name(site))
