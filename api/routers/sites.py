"""MongoDB sites, their real-time data and their schemas.

Routes are plain ``def``: pymongo blocks, so FastAPI runs them in its thread pool.
"""

from __future__ import annotations

import re
from typing import Any

import pymongo
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.deps import get_mongo
from api.errors import ApiError
from core.site_spec import SiteSchema
from core.sites import REALTIME_CAP, create_schema, get_schema, list_sites, realtime_documents, update_schema

router = APIRouter(tags=["sites"])

_SITE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
SEED_000_SITES = {"living-lab": "living_lab", "icharging-headquarters": "i-charging_headquarters"}


def check_site_name(site: str) -> str:
    if not _SITE.fullmatch(site):
        raise ApiError(422, f"site name {site!r} may only use letters, digits, '_' and '-' (at most 63 characters)")
    return site


class SchemaCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"site": "living_lab", "schema": SiteSchema.model_config["json_schema_extra"]["examples"][0]}]})
    site: str = Field(description="New site (a MongoDB database)")
    schema_: SiteSchema = Field(alias="schema")

    @field_validator("site")
    @classmethod
    def _site(cls, v: str) -> str:
        if not _SITE.fullmatch(v):
            raise ValueError("site names use letters, digits, '_' and '-' (at most 63 characters)")
        return v


class SchemaUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"schema": SiteSchema.model_config["json_schema_extra"]["examples"][0]}]})
    schema_: SiteSchema = Field(alias="schema")


@router.get("/sites", summary="Sites: every database but admin, local and config")
def sites(client: pymongo.MongoClient = Depends(get_mongo)) -> dict[str, Any]:
    return {"sites": list_sites(client)}


@router.get("/real-time-data/{site}", summary="Newest documents of every collection of a site")
def real_time_data(
    site: str,
    minutes: int | None = Query(None, ge=1, le=60 * 24 * 366, description="Only documents of the last X minutes"),
    client: pymongo.MongoClient = Depends(get_mongo),
) -> dict[str, Any]:
    """At most REALTIME_CAP documents per collection, newest first; ``truncated`` lists the collections that had more."""
    return realtime_documents(client, check_site_name(site), minutes, REALTIME_CAP)


@router.get("/api/{alias}", include_in_schema=False)
def seed_000_site(alias: str, minutes: int | None = Query(None, ge=1), client: pymongo.MongoClient = Depends(get_mongo)) -> dict[str, Any]:
    if alias not in SEED_000_SITES:
        raise ApiError(404, f"unknown path /api/{alias}; seed 000 aliases: {', '.join('/api/' + a for a in SEED_000_SITES)}")
    return realtime_documents(client, SEED_000_SITES[alias], minutes, REALTIME_CAP)


@router.post("/schema/create", summary="Create a site with its schema (409 if the site exists)")
def schema_create(body: SchemaCreate, client: pymongo.MongoClient = Depends(get_mongo)) -> dict[str, Any]:
    create_schema(client, body.site, body.schema_)
    return {"message": f"Site {body.site} created", "site": body.site}


@router.put("/schema/update/{site}", summary="Replace a site's schema")
def schema_update(site: str, body: SchemaUpdate, client: pymongo.MongoClient = Depends(get_mongo)) -> dict[str, Any]:
    update_schema(client, check_site_name(site), body.schema_)
    return {"message": f"Schema of site {site} updated", "site": site}


@router.get("/schema/{site}", summary="A site's schema")
def schema_get(site: str, client: pymongo.MongoClient = Depends(get_mongo)) -> dict[str, Any]:
    return {"site": site, "schema": get_schema(client, check_site_name(site))}
