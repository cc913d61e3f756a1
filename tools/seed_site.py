"""Fill a MongoDB server with sample sites in the real OPEVA layout, so dataset builds,
the API and the UI have something to work on without a real living lab.

    python -m tools.seed_site --uri mongodb://127.0.0.1:27017 [--site living_lab_sample]
        [--ev-site i_charging_sample] [--days 365] [--buildings 4] [--seed 7] [--drop]

Two sites (one database each, as OPEVA keeps them; see shared/OPEVA_UPSTREAM.md §2):

- ``living_lab_sample``: buildings ``R-H-01``, ``R-H-02``, ``O-03`` ... with documents
  every 15 minutes in ``building_<id>``: measurements under ``observations`` (load and
  PV in kWh per document, indoor and weather columns, carbon intensity), the price as
  ``energy_tariffs.tou.energy_price.values``, ``batteries`` and ``pv_panels``, and on
  buildings with chargers ``charging_sessions`` (keyed form) and ``electric_vehicles``.
- ``i_charging_sample``: one EV-charging building ``i-charging_headquarters`` whose
  collection is ``building_i-charging_headquarters_3Phase`` (found by prefix), with flat
  fields, ``energy_price: {values: [...]}``, sessions in the list form and EV
  ``flexibility`` estimates.

Each site's ``schema`` document holds CityLearn building specs (type, include, devices
with ``{type, autosize, autosize_attributes, attributes}``, chargers) and ``evs``.
Values are generated as numpy arrays and turned into documents one ``insert_many``
batch at a time. The schema is written last: its presence means the seed completed,
which makes a re-run a no-op (``--drop`` re-creates the site). Same seed and end date,
same documents.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pymongo
from pymongo.errors import OperationFailure, PyMongoError

from tools.seed_climate import (EV_CAPACITIES, SOC_FIELD, STEP, STEPS_PER_HOUR, TIMEZONE, Building, _rng, building_series,
                                carbon_intensity, charging_sessions, make_climate, plan_buildings)
from tools.seed_ev import EvFields

log = logging.getLogger(__name__)

BATCH = 5000  # documents per insert_many: large enough to amortise round trips, small in memory
SCHEMA_COLLECTION = "schema"
SYSTEM_DATABASES = frozenset({"admin", "local", "config"})
EV_BUILDING = "i-charging_headquarters"
EV_COLLECTION = f"building_{EV_BUILDING}_3Phase"


class SeedError(ValueError):
    """The site cannot be seeded as asked (system database, foreign data...)."""


def _device(kind: str, **attributes: Any) -> dict[str, Any]:
    return {"type": kind, "autosize": False, "autosize_attributes": {}, "attributes": attributes}


def building_spec(b: Building, charger_ids: list[str], charger_kw: float) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": "citylearn.building.Building", "include": True, "energy_simulation": f"{b.id}.csv", "weather": "weather.csv",
        "carbon_intensity": "carbon_intensity.csv", "pricing": "pricing.csv", "inactive_observations": [], "inactive_actions": [],
        "pv": _device("citylearn.energy_model.PV", nominal_power=b.pv_kw),
        "power_outage": {"simulate_power_outage": False, "stochastic_power_outage": False},
    }
    if b.battery:
        spec["electrical_storage"] = _device("citylearn.energy_model.Battery", capacity=b.battery[0], nominal_power=b.battery[1],
                                             efficiency=0.9, capacity_loss_coefficient=1e-05, loss_coefficient=0.0, initial_soc=0.5)
    if charger_ids:
        spec["chargers"] = {c: _device("citylearn.electric_vehicle_charger.Charger", nominal_power=charger_kw, max_charging_power=charger_kw,
                                       min_charging_power=1.4, efficiency=0.95) for c in charger_ids}
    return spec


def _documents(start: datetime, series: dict[str, np.ndarray], first: int, last: int, nest: bool, price_form: str,
               ev: EvFields | None) -> list[dict[str, Any]]:
    """Documents for rows [first, last): the only place Python dicts are made, one batch at a time."""
    keys = [k for k in series if k not in ("price", SOC_FIELD)]
    columns = [series[k][first:last].tolist() for k in keys]
    price = series["price"][first:last].tolist()
    soc = series[SOC_FIELD][first:last].tolist() if SOC_FIELD in series else None
    docs = []
    for n, (i, row) in enumerate(zip(range(first, last), zip(*columns))):
        values = dict(zip(keys, row))
        doc: dict[str, Any] = {"timestamp": start + STEP * i}
        doc.update({"observations": values} if nest else values)
        if price_form == "tariffs":
            doc["energy_tariffs"] = {"tou": {"energy_price": {"values": [price[n]]}}}
        else:
            doc["energy_price"] = {"values": price[n : n + 4] or [price[n]]}
        if soc is not None:
            doc["batteries"] = {"battery_1": {"soc": soc[n]}}
        doc["pv_panels"] = {"pv_1": {"energy": values["solar_generation"]}}
        if ev is not None:
            doc.update(ev.fields(i))
        docs.append(doc)
    return docs


def _insert(coll: pymongo.collection.Collection, start: datetime, series: dict[str, np.ndarray], nest: bool, price_form: str,
            ev: EvFields | None) -> int:
    began = time.perf_counter()
    n = len(series["price"])
    for first in range(0, n, BATCH):
        coll.insert_many(_documents(start, series, first, min(first + BATCH, n), nest, price_form, ev), ordered=False)
    try:  # the builder's range queries and first/last lookups use it; a server without it still works
        coll.create_index([("timestamp", pymongo.ASCENDING)])
    except OperationFailure as exc:
        log.warning("no index on %s.timestamp: %s", coll.name, exc)
    log.info("%s: %d documents in %.1f s", coll.name, n, time.perf_counter() - began)
    return n


def _site_series(b: Building, climate: Any, carbon: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    s = building_series(b, climate, seed)
    s.update({"outdoor_dry_bulb_temperature": np.round(climate.temp, 1), "outdoor_relative_humidity": np.round(climate.humidity, 1),
              "diffuse_solar_irradiance": np.round(climate.dhi, 1), "direct_solar_irradiance": np.round(climate.dni, 1),
              "carbon_intensity": carbon, "price": climate.price})
    return s


def _prepare(client: pymongo.MongoClient, site: str, drop: bool) -> pymongo.database.Database | None:
    """The site's database to write, or None when a completed seed is already there."""
    if site in SYSTEM_DATABASES:
        raise SeedError(f"{site!r} is a system database, not a site")
    db = client[site]
    if drop:
        client.drop_database(site)
    elif db[SCHEMA_COLLECTION].find_one({}, {"_id": 1}) is not None:
        return None
    elif site in client.list_database_names():
        raise SeedError(f"database {site!r} has data but no schema (an interrupted seed, or not a sample site); pass --drop to replace it")
    return db


def _window(end: datetime | None, days: int) -> tuple[datetime, datetime]:
    if days < 1:
        raise SeedError("days must be at least 1")
    if end is None:
        now = datetime.now(timezone.utc)
        end = datetime(now.year, now.month, now.day, tzinfo=timezone.utc)
    end = end if end.tzinfo else end.replace(tzinfo=timezone.utc)
    if end != end.replace(hour=0, minute=0, second=0, microsecond=0):
        raise SeedError(f"end must be a UTC midnight, not {end.isoformat()}")
    return end - timedelta(days=days), end


def _summary(db: pymongo.database.Database, seeded: bool, began: float, start: datetime | None, end: datetime | None) -> dict[str, Any]:
    collections = {name: db[name].estimated_document_count() for name in sorted(db.list_collection_names())}
    return {"site": db.name, "seeded": seeded, "collections": collections, "documents": sum(collections.values()),
            "from": start.isoformat() if seeded and start else None, "until": (end - STEP).isoformat() if seeded and end else None,
            "seconds": round(time.perf_counter() - began, 2)}


def seed_site(client: pymongo.MongoClient, site: str = "living_lab_sample", days: int = 365, buildings: int = 4, seed: int = 7,
              drop: bool = False, *, end: datetime | None = None) -> dict[str, Any]:
    """The living-lab sample: ``buildings`` buildings, measurements under ``observations``."""
    began = time.perf_counter()
    if buildings < 1:
        raise SeedError("buildings must be at least 1")
    start, end = _window(end, days)
    db = _prepare(client, site, drop)
    if db is None:
        return _summary(client[site], False, began, None, None)
    climate = make_climate(start, days, seed)
    carbon = np.round(np.repeat(carbon_intensity(climate, seed), STEPS_PER_HOUR), 4)
    specs, evs, next_ev = {}, {}, 1
    for b in plan_buildings(buildings, seed):
        chargers = {}
        for k in range(1, b.chargers + 1):
            chargers[f"charger_{b.id}_{k}"], next_ev = charging_sessions(b, k, start, end, seed, next_ev)
        for sessions in chargers.values():
            for s in sessions:
                evs.setdefault(s["ev_id"], {"battery_capacity": EV_CAPACITIES[int(_rng(seed, 5, int(s["ev_id"][3:])).integers(4))],
                                            "charging_power": 7.4})
        ev = EvFields(start, STEP, climate.steps, chargers, 7.4, list_form=False) if chargers else None
        _insert(db[b.collection], start, _site_series(b, climate, carbon, seed), True, "tariffs", ev)
        specs[b.id] = building_spec(b, list(chargers), 11.0 if b.office else 7.4)
    schema = {"timezone": TIMEZONE, "electric_vehicles_def": {}, "evs": evs, "buildings": specs}
    db[SCHEMA_COLLECTION].insert_one({"_id": "schema", "schema": schema})
    return _summary(db, True, began, start, end)


def seed_ev_site(client: pymongo.MongoClient, site: str = "i_charging_sample", days: int = 365, seed: int = 7, drop: bool = False,
                 *, end: datetime | None = None, chargers: int = 4) -> dict[str, Any]:
    """The EV-charging sample: one headquarters building, flat fields, list-form sessions."""
    began = time.perf_counter()
    start, end = _window(end, days)
    db = _prepare(client, site, drop)
    if db is None:
        return _summary(client[site], False, began, None, None)
    climate = make_climate(start, days, seed + 1)
    carbon = np.round(np.repeat(carbon_intensity(climate, seed + 1), STEPS_PER_HOUR), 4)
    hq = Building(number=3, office=True, daily_kwh=60.0, pv_kw=15.0, battery=(50.0, 25.0), chargers=chargers)
    plan, next_ev = {}, 1
    for k in range(1, chargers + 1):
        plan[f"{EV_BUILDING}_charger_{k}"], next_ev = charging_sessions(hq, k + 1, start, end, seed, next_ev)
    evs = {f"EV_{n:02d}": {"battery_capacity": EV_CAPACITIES[n % 4], "charging_power": 11.0} for n in range(1, next_ev)}
    ev = EvFields(start, STEP, climate.steps, plan, 11.0, list_form=True)
    _insert(db[EV_COLLECTION], start, _site_series(hq, climate, carbon, seed + 1), False, "values", ev)
    spec = building_spec(hq, list(plan), 11.0)
    spec["energy_simulation"] = f"{EV_BUILDING}.csv"
    schema = {"timezone": TIMEZONE, "electric_vehicles_def": {}, "evs": evs, "buildings": {EV_BUILDING: spec}}
    db[SCHEMA_COLLECTION].insert_one({"_id": "schema", "schema": schema})
    return _summary(db, True, began, start, end)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.seed_site", description="Fill a MongoDB server with sample OPEVA sites.")
    parser.add_argument("--uri", required=True, help="mongodb://host:port")
    parser.add_argument("--site", default="living_lab_sample", help="living-lab site name (default %(default)s)")
    parser.add_argument("--ev-site", default="i_charging_sample", help="EV-charging site name (default %(default)s); '' skips it")
    parser.add_argument("--days", type=_positive, default=365, help="days of data, ending at the most recent UTC midnight (default %(default)s)")
    parser.add_argument("--buildings", type=_positive, default=4, help="living-lab buildings (default %(default)s)")
    parser.add_argument("--seed", type=int, default=7, help="random seed; the same seed gives the same sites (default %(default)s)")
    parser.add_argument("--drop", action="store_true", help="drop the sites' databases first and re-create them")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        with pymongo.MongoClient(args.uri, serverSelectionTimeoutMS=5000, tz_aware=True) as client:
            summaries = [seed_site(client, args.site, args.days, args.buildings, args.seed, args.drop)]
            if args.ev_site:
                summaries.append(seed_ev_site(client, args.ev_site, args.days, args.seed, args.drop))
    except (SeedError, PyMongoError) as exc:
        print(f"seed_site: {exc}", file=sys.stderr)
        return 1
    for summary in summaries:
        state = f"seeded in {summary['seconds']} s" if summary["seeded"] else "already has a schema; nothing written (--drop re-creates it)"
        print(f"site {summary['site']!r} {state}")
        for name, count in summary["collections"].items():
            print(f"  {name:<42} {count:>8} documents")
        if summary["from"]:
            print(f"  time range {summary['from']} .. {summary['until']} (every 15 minutes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
