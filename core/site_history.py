"""Historical data of an energy community (a site database), paged and bucketed in MongoDB.

Why an aggregation: a community holds years of documents per collection; the server
filters, buckets and pages them, so the API never holds more than ``limit`` documents
per collection. With ``granularity_minutes`` each bucket averages the numeric
top-level fields of its documents and keeps the first value of the others
(``timestamp`` is the bucket's start).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pymongo

from core.sites import SCHEMA_COLLECTION, json_safe, require_site

MAX_LIMIT = 1000
FIELD_SAMPLE = 50  # documents read to learn a collection's field names and types


class HistoryQueryError(ValueError):
    """A query the route answers 400 to (no time filter, or both kinds)."""


def time_window(minutes: int | None, from_ts: datetime | None, until_ts: datetime | None) -> tuple[datetime | None, datetime | None]:
    relative = minutes is not None
    absolute = from_ts is not None or until_ts is not None
    if relative and absolute:
        raise HistoryQueryError("give either minutes or from_ts/until_ts, not both")
    if not relative and not absolute:
        raise HistoryQueryError("a time filter is required: minutes, or from_ts and/or until_ts")
    if relative:
        return datetime.now(timezone.utc) - timedelta(minutes=minutes), None
    if from_ts and until_ts and until_ts <= from_ts:
        raise HistoryQueryError("until_ts must be after from_ts")
    return from_ts, until_ts


def _fields(coll: pymongo.collection.Collection, match: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Numeric and other top-level fields, from a small sample of the range."""
    numeric, other = set(), set()
    for doc in coll.find(match, {"_id": 0}).limit(FIELD_SAMPLE):
        for key, value in doc.items():
            if key == "timestamp" or "." in key or key.startswith("$"):
                continue
            (numeric if isinstance(value, (int, float)) and not isinstance(value, bool) else other).add(key)
    return sorted(numeric), sorted(other - numeric)


def _pipeline(coll: pymongo.collection.Collection, match: dict[str, Any], granularity: int | None, limit: int, offset: int) -> list[dict]:
    if not granularity:
        return [{"$match": match}, {"$sort": {"timestamp": 1}}, {"$skip": offset}, {"$limit": limit}, {"$project": {"_id": 0}}]
    numeric, other = _fields(coll, match)
    group: dict[str, Any] = {"_id": {"$dateTrunc": {"date": "$timestamp", "unit": "minute", "binSize": granularity}}, "documents": {"$sum": 1}}
    group.update({f: {"$avg": f"${f}"} for f in numeric})
    group.update({f: {"$first": f"${f}"} for f in other})
    return [
        {"$match": match}, {"$sort": {"timestamp": 1}}, {"$group": group}, {"$sort": {"_id": 1}},
        {"$skip": offset}, {"$limit": limit}, {"$set": {"timestamp": "$_id"}}, {"$project": {"_id": 0}},
    ]


def historical_data(client: pymongo.MongoClient, community: str, *, limit: int = 100, offset: int = 0, minutes: int | None = None,
                    from_ts: datetime | None = None, until_ts: datetime | None = None, granularity_minutes: int | None = None) -> dict[str, Any]:
    db = require_site(client, community)  # unknown community: 404 before anything else
    start, end = time_window(minutes, from_ts, until_ts)
    match: dict[str, Any] = {"timestamp": {}}
    if start:
        match["timestamp"]["$gte"] = start
    if end:
        match["timestamp"]["$lt"] = end
    limit = max(1, min(limit, MAX_LIMIT))
    collections = {}
    for name in sorted(db.list_collection_names()):
        if name == SCHEMA_COLLECTION:
            continue
        items = list(db[name].aggregate(_pipeline(db[name], match, granularity_minutes, limit, offset)))
        collections[name] = {"items": json_safe(items), "count": len(items)}
    query = {"limit": limit, "offset": offset, "minutes": minutes, "from_ts": start.isoformat() if start else None,
             "until_ts": end.isoformat() if end else None, "granularity_minutes": granularity_minutes}
    return {"energy_community": community, "query": query, "collections": collections}
