"""MongoDB sites: what the platform reads from and writes to a site (no Prefect here).

A site is a MongoDB database (every one but ``admin``, ``local`` and ``config``);
its schema (core/site_spec.py) lives in the site's own ``schema`` collection.
Reads are bounded: real-time windows are capped per collection, dates come
from one sorted, limited query per collection.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pymongo
from bson import ObjectId

from core.site_spec import SiteSchema

SYSTEM_DATABASES = frozenset({"admin", "local", "config"})
SCHEMA_COLLECTION = "schema"
REALTIME_CAP = 1000  # documents per collection in one real-time answer


class SiteNotFound(LookupError):
    def __init__(self, site: str) -> None:
        super().__init__(f"no site named {site!r}")


class SiteExists(ValueError):
    def __init__(self, site: str) -> None:
        super().__init__(f"site {site!r} already exists; update its schema with PUT /schema/update/{site}")


class SchemaNotFound(LookupError):
    def __init__(self, site: str) -> None:
        super().__init__(f"site {site!r} has no schema; create one with POST /schema/create")


def list_sites(client: pymongo.MongoClient) -> list[str]:
    return sorted(n for n in client.list_database_names() if n not in SYSTEM_DATABASES)


def require_site(client: pymongo.MongoClient, site: str) -> pymongo.database.Database:
    if site in SYSTEM_DATABASES or site not in client.list_database_names():
        raise SiteNotFound(site)
    return client[site]


def json_safe(value: Any) -> Any:
    """BSON values as JSON: ObjectId as its hex string, datetimes as ISO 8601 in UTC."""
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def realtime_documents(client: pymongo.MongoClient, site: str, minutes: int | None = None, cap: int = REALTIME_CAP) -> dict[str, Any]:
    """Per collection the newest ``cap`` documents (of the last ``minutes`` when given).

    Newest first, so a capped answer keeps the most recent data; ``truncated``
    says which collections had more.
    """
    db = require_site(client, site)
    query: dict[str, Any] = {}
    if minutes is not None:
        query = {"timestamp": {"$gte": datetime.now(timezone.utc) - timedelta(minutes=minutes)}}
    data: dict[str, list[Any]] = {}
    truncated: list[str] = []
    for name in sorted(db.list_collection_names()):
        if name == SCHEMA_COLLECTION:
            continue
        docs = list(db[name].find(query).sort("timestamp", pymongo.DESCENDING).limit(cap + 1))
        if len(docs) > cap:
            truncated.append(name)
            docs = docs[:cap]
        data[name] = json_safe(docs)
    return {"site": site, "minutes": minutes, "cap_per_collection": cap, "truncated": truncated, "collections": data}


def get_schema(client: pymongo.MongoClient, site: str) -> dict[str, Any]:
    doc = require_site(client, site)[SCHEMA_COLLECTION].find_one({}, {"_id": 0})
    if not doc or "schema" not in doc:
        raise SchemaNotFound(site)
    return doc["schema"]


def site_schema(client: pymongo.MongoClient, site: str) -> SiteSchema:
    return SiteSchema.model_validate(get_schema(client, site))


def create_schema(client: pymongo.MongoClient, site: str, schema: SiteSchema) -> None:
    """Creates the site (its database) with its schema; refuses an existing site."""
    if site in SYSTEM_DATABASES:
        raise SiteExists(site)
    if site in client.list_database_names():
        raise SiteExists(site)
    client[site][SCHEMA_COLLECTION].insert_one({"schema": schema.model_dump(exclude_none=True)})


def update_schema(client: pymongo.MongoClient, site: str, schema: SiteSchema) -> None:
    coll = require_site(client, site)[SCHEMA_COLLECTION]
    coll.delete_many({})
    coll.insert_one({"schema": schema.model_dump(exclude_none=True)})


def collection_range(coll: pymongo.collection.Collection, field: str = "timestamp") -> tuple[datetime, datetime] | None:
    """First and last value of ``field``: two indexed, limited queries, not a scan."""
    flt = {field: {"$exists": True}}
    first = coll.find_one(flt, {field: 1, "_id": 0}, sort=[(field, pymongo.ASCENDING)])
    last = coll.find_one(flt, {field: 1, "_id": 0}, sort=[(field, pymongo.DESCENDING)])
    if not first or not last or not isinstance(first.get(field), datetime):
        return None
    return _utc(first[field]), _utc(last[field])


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def dates_available(client: pymongo.MongoClient, site: str) -> dict[str, Any]:
    """First and last timestamp per collection, and the range they all cover."""
    db = require_site(client, site)
    per: dict[str, dict[str, str]] = {}
    firsts, lasts = [], []
    for name in sorted(db.list_collection_names()):
        if name == SCHEMA_COLLECTION:
            continue
        rng = collection_range(db[name])
        if rng is None:
            continue
        per[name] = {"first": rng[0].isoformat(), "last": rng[1].isoformat()}
        firsts.append(rng[0])
        lasts.append(rng[1])
    common = None
    if firsts and max(firsts) <= min(lasts):
        common = {"from": max(firsts).isoformat(), "until": min(lasts).isoformat()}
    return {"site": site, "collections": per, "common_range": common}
