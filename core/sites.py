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
SCHEMA_ID = "schema"
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


def realtime_documents(client: pymongo.MongoClient, site: str, minutes: int | None = None, cap: int = REALTIME_CAP) -> tuple[dict[str, list[Any]], list[str]]:
    """Per collection the newest ``cap`` documents (of the last ``minutes`` when given),
    and the collections that had more.

    Newest first, so a capped answer keeps the most recent data. The answer's top level
    is the collections, as the OPEVA UI reads them; the rest is for headers.
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
    return data, truncated


def get_schema(client: pymongo.MongoClient, site: str) -> dict[str, Any]:
    doc = require_site(client, site)[SCHEMA_COLLECTION].find_one({}, {"_id": 0})
    if not doc or "schema" not in doc:
        raise SchemaNotFound(site)
    return doc["schema"]


def site_schema(client: pymongo.MongoClient, site: str) -> SiteSchema:
    return SiteSchema.model_validate(get_schema(client, site))


def create_schema(client: pymongo.MongoClient, site: str, schema: dict[str, Any]) -> None:
    """Creates the site (its database) with its schema; refuses an existing site.

    ``schema`` is stored exactly as sent (validated by the caller with SiteSchema), so
    it reads back unchanged, keys we do not model included.
    """
    SiteSchema.model_validate(schema)
    if site in SYSTEM_DATABASES:
        raise SiteExists(site)
    if site in client.list_database_names():
        raise SiteExists(site)
    client[site][SCHEMA_COLLECTION].insert_one({"_id": SCHEMA_ID, "schema": schema})


def update_schema(client: pymongo.MongoClient, site: str, schema: dict[str, Any]) -> None:
    SiteSchema.model_validate(schema)
    coll = require_site(client, site)[SCHEMA_COLLECTION]
    coll.delete_many({})
    coll.insert_one({"_id": SCHEMA_ID, "schema": schema})


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


def dates_available(client: pymongo.MongoClient, site: str) -> list[dict[str, Any]]:
    """Per collection (an installation) its first and last timestamp; the schema left out."""
    db = require_site(client, site)
    out = []
    for name in sorted(db.list_collection_names()):
        if name == SCHEMA_COLLECTION:
            continue
        rng = collection_range(db[name])
        if rng is not None:
            out.append({"installation": name, "oldest_record": rng[0].isoformat(), "newest_record": rng[1].isoformat()})
    return out


def dataset_sites(client: pymongo.MongoClient) -> list[dict[str, Any]]:
    """Sites whose schema names buildings that have a data collection (what a build can use)."""
    out = []
    for site in list_sites(client):
        db = client[site]
        doc = db[SCHEMA_COLLECTION].find_one({}, {"_id": 0, "schema.buildings": 1})
        buildings = ((doc or {}).get("schema") or {}).get("buildings")
        if not isinstance(buildings, dict) or not buildings:
            continue
        names = db.list_collection_names()
        prefixes = {b: (spec.get("collection") if isinstance(spec, dict) else None) or f"building_{b}" for b, spec in buildings.items()}
        with_data = [b for b, p in prefixes.items() if any(n.startswith(p) for n in names)]
        if with_data:
            out.append({"site_id": site, "buildings": with_data})
    return out
