"""MongoDB sites (energy communities): their schemas, real-time and historical data.

Routes are plain ``def``: pymongo blocks, so FastAPI runs them in its thread pool.
Answers follow the OPEVA clients (shared/OPEVA_UPSTREAM.md §1): real-time data is the
collections at the top level, its metadata in headers.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any

import pymongo
from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.deps import Mongo
from api.errors import ApiError
from api.owners import Owned
from api.responses import errors
from core.site_history import MAX_LIMIT, HistoryQueryError, historical_data
from core.site_spec import EXAMPLE, SiteSchema
from core.sites import REALTIME_CAP, SYSTEM_DATABASES, create_schema, get_schema, list_sites, realtime_documents, require_site, update_schema

router = APIRouter(tags=["sites"])

_SITE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
SEED_000_SITES = {"living-lab": "living_lab", "icharging-headquarters": "i-charging_headquarters"}


# Path parameters say in the OpenAPI document what a site name may be (a MongoDB database name).
SiteName = Annotated[str, Path(pattern=f"^{_SITE.pattern}$", description="A site (MongoDB database) name")]


def check_site_name(site: str) -> str:
    if not _SITE.fullmatch(site):
        raise ApiError(422, f"site name {site!r} may only use letters, digits, '_' and '-' (at most 63 characters)")
    return site


def _validated(schema: dict[str, Any]) -> dict[str, Any]:
    SiteSchema.model_validate(schema)
    return schema


class SchemaCreate(BaseModel):
    """The schema is validated as a SiteSchema and stored exactly as sent."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"site": "living_lab", "schema": EXAMPLE},
                                                                              {"site": "new_site", "schema": {"electric_vehicles_def": {}, "buildings": {}}}]})
    site: str = Field(description="New site (a MongoDB database)")
    schema_: dict[str, Any] = Field(alias="schema", description="A CityLearn schema template; see SiteSchema")

    @field_validator("site")
    @classmethod
    def _site(cls, v: str) -> str:
        if not _SITE.fullmatch(v) or v in SYSTEM_DATABASES:
            raise ValueError("site names use letters, digits, '_' and '-' (at most 63 characters), and are not admin, local or config")
        return v

    @field_validator("schema_")
    @classmethod
    def _schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _validated(v)


class SchemaUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"schema": EXAMPLE}]})
    schema_: dict[str, Any] = Field(alias="schema")

    @field_validator("schema_")
    @classmethod
    def _schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _validated(v)


class SiteMessage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"message": "Site living_lab created", "site": "living_lab"}]})
    message: str
    site: str


class SiteSchemaAnswer(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"site": "living_lab", "schema": EXAMPLE}]})
    site: str
    schema_: dict[str, Any] = Field(alias="schema", serialization_alias="schema")


class SitesAnswer(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"sites": ["living_lab_sample", "i_charging_sample"]}]})
    sites: list[str]


class CommunitiesAnswer(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"energy_communities": ["living_lab_sample", "i_charging_sample"]}]})
    energy_communities: list[str]


class CollectionItems(BaseModel):
    items: list[dict[str, Any]]
    count: int


class HistoryAnswer(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "energy_community": "living_lab_sample",
        "query": {"limit": 2, "offset": 0, "minutes": None, "from_ts": "2025-01-01T00:00:00+00:00", "until_ts": "2025-01-02T00:00:00+00:00", "granularity_minutes": 60},
        "collections": {"building_R-H-01": {"items": [{"timestamp": "2025-01-01T00:00:00+00:00", "documents": 4, "observations": {"non_shiftable_load": 0.3}}], "count": 1}},
    }]})
    energy_community: str
    query: dict[str, Any]
    collections: dict[str, CollectionItems]


REALTIME_EXAMPLE = {"building_R-H-01": [{"_id": "665f1c...", "timestamp": "2025-01-01T00:15:00+00:00", "observations": {"non_shiftable_load": 0.31}}]}


@router.get("/sites", summary="Sites: every database but admin, local and config", response_model=SitesAnswer, responses=errors())
def sites(client: Mongo) -> dict[str, Any]:
    return {"sites": list_sites(client)}


@router.get("/energy-communities", summary="Energy communities (the sites' databases)", response_model=CommunitiesAnswer, responses=errors())
def energy_communities(client: Mongo) -> dict[str, Any]:
    return {"energy_communities": list_sites(client)}


def _realtime(client: pymongo.MongoClient, site: str, minutes: int | None, response: Response) -> dict[str, list[dict[str, Any]]]:
    data, truncated = realtime_documents(client, site, minutes, REALTIME_CAP)
    response.headers["X-OPEVA-Site"] = site
    response.headers["X-OPEVA-Cap-Per-Collection"] = str(REALTIME_CAP)
    response.headers["X-OPEVA-Truncated"] = ",".join(truncated)
    return data


@router.get(
    "/real-time-data/{site}", summary="Newest documents of every collection of a site, keyed by collection",
    response_model=dict[str, list[dict[str, Any]]], responses={**errors(404, 422), 200: {"content": {"application/json": {"example": REALTIME_EXAMPLE}}}},
)
def real_time_data(
    site: SiteName, response: Response, client: Mongo,
    minutes: int | None = Query(None, ge=1, le=60 * 24 * 366, description="Only documents of the last X minutes"),
) -> dict[str, list[dict[str, Any]]]:
    """At most 1,000 documents per collection: the newest, in time order. Headers: ``X-OPEVA-Truncated`` lists
    the collections that had more, ``X-OPEVA-Cap-Per-Collection`` the cap."""
    return _realtime(client, check_site_name(site), minutes, response)


@router.get("/api/{alias}", response_model=dict[str, list[dict[str, Any]]], include_in_schema=False)
def seed_000_site(alias: str, response: Response, client: Mongo, minutes: int | None = Query(None, ge=1)) -> dict[str, Any]:
    if alias not in SEED_000_SITES:
        raise ApiError(404, f"unknown path /api/{alias}; seed 000 aliases: {', '.join('/api/' + a for a in SEED_000_SITES)}")
    return _realtime(client, SEED_000_SITES[alias], minutes, response)


@router.get(
    "/historical-data/{community}", summary="Paged, optionally bucketed, history of every collection of a community",
    response_model=HistoryAnswer, responses=errors(400, 404, 422),
)
def history(
    community: SiteName,
    client: Mongo,
    limit: int = Query(100, ge=1, le=MAX_LIMIT, description="Items per collection"),
    offset: int = Query(0, ge=0, le=10_000_000),
    minutes: int | None = Query(None, ge=1, le=60 * 24 * 3660, description="The last X minutes (or from_ts/until_ts)"),
    from_ts: datetime | None = Query(None, description="ISO 8601; naive means UTC"),
    until_ts: datetime | None = Query(None, description="ISO 8601; naive means UTC"),
    granularity_minutes: int | None = Query(None, ge=1, le=60 * 24 * 31, description="Bucket size: numeric fields averaged, others first"),
) -> dict[str, Any]:
    """An unknown community is 404 before anything else; no time filter, or both kinds, is 400."""
    check_site_name(community)
    from_ts, until_ts = (t.replace(tzinfo=t.tzinfo or timezone.utc) if t else None for t in (from_ts, until_ts))
    try:
        return historical_data(client, community, limit=limit, offset=offset, minutes=minutes, from_ts=from_ts, until_ts=until_ts,
                               granularity_minutes=granularity_minutes)
    except HistoryQueryError as exc:
        raise ApiError(400, str(exc)) from None


@router.post("/schema/create", summary="Create a site with its schema (409 if the site exists)", response_model=SiteMessage, responses=errors(409, 413, 422))
def schema_create(body: SchemaCreate, own: Owned, client: Mongo) -> dict[str, Any]:
    create_schema(client, body.site, body.schema_)
    own.made("site", body.site)
    return {"message": f"Site {body.site} created", "site": body.site}


@router.put("/schema/update/{site}", summary="Replace a site's schema (its owner or an admin)", response_model=SiteMessage, responses=errors(403, 404, 413, 422))
def schema_update(site: SiteName, body: SchemaUpdate, own: Owned, client: Mongo) -> dict[str, Any]:
    require_site(client, check_site_name(site))  # 404 for an unknown site before any owner is told
    own.check_change("site", site)
    update_schema(client, check_site_name(site), body.schema_)
    return {"message": f"Schema of site {site} updated", "site": site}


@router.get("/schema/{site}", summary="A site's schema, exactly as stored", response_model=SiteSchemaAnswer, response_model_by_alias=True, responses=errors(404, 422))
def schema_get(site: SiteName, own: Owned, client: Mongo) -> dict[str, Any]:
    own.check_read("site", site)
    return {"site": site, "schema": get_schema(client, check_site_name(site))}
