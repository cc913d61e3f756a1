"""Build a CityLearn dataset folder from a MongoDB site in the real OPEVA layout.

Two steps. :func:`plan` (cheap: a few indexed queries) resolves the site schema, the
buildings and their collections, the time range and its size; the API runs it to
answer ``POST /dataset`` at once with errors and warnings. :func:`build` then streams
every building's documents (core/dataset_read.py), writes the files and checks them
(core/dataset_check.py).

Files (what CityLearn 2.5 and OPEVA's simulator load): ``Building_<n>.csv`` (the 2026
header: ``month,hour,minutes,seconds,day_type,...``, calendar in the site's zone,
Europe/Lisbon by default; hour 1-24, the hour ending),
``weather.csv`` and ``pricing.csv`` with ``_predicted_1..3`` (the values 6/12/24 h
ahead), ``carbon_intensity.csv``, ``charger_<n>_<k>.csv`` (6 columns), ``schema.json``
and ``dataset.json`` (our metadata, with ``warnings`` and ``validation``).

What a site lacks gets OPEVA's defaults: indoor 20 °C, humidity 50 %, loads and
generation 0, outdoor 20 °C, irradiance, prices and carbon 0 (``defaults`` overrides
them). ``solar_generation`` is written in W per kW of PV (CityLearn scales it by
``pv.nominal_power``). The folder is written under ``datasets/.tmp-*`` and renamed into
place when complete, so a half-built dataset is never listed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pymongo

from core.dataset_check import validate
from core.dataset_ev import ChargerTracker
from core.dataset_read import Grid, Sums, finish, floor_to, read_building
from core.dataset_schema import CityLearnConfigs, base_schema, building_entry, ev_definitions, merged_schema
from core.datasets import METADATA_FILE, TMP_PREFIX, DatasetError, files_digest, parse_ts, read_metadata
from core.layout import DataRoot, safe_name, write_json_atomic
from core.site_spec import BUILDING_COLUMNS, SITE_COLUMNS, SUMMED, WEATHER_COLUMNS, BuildingSpec, SiteSchema
from core.sites import collection_range, get_schema

BUILDING_CSV_COLUMNS = ["month", "hour", "minutes", "seconds", "day_type", "daylight_savings_status", "indoor_dry_bulb_temperature",
                        "average_unmet_cooling_setpoint_difference", "indoor_relative_humidity", "non_shiftable_load",
                        "dhw_demand", "cooling_demand", "heating_demand", "solar_generation"]
DEFAULTS: dict[str, float] = {
    "indoor_dry_bulb_temperature": 20.0, "indoor_relative_humidity": 50.0, "average_unmet_cooling_setpoint_difference": 0.0,
    "non_shiftable_load": 0.0, "dhw_demand": 0.0, "cooling_demand": 0.0, "heating_demand": 0.0, "solar_generation": 0.0,
    "outdoor_dry_bulb_temperature": 20.0, "outdoor_relative_humidity": 50.0, "diffuse_solar_irradiance": 0.0,
    "direct_solar_irradiance": 0.0, "electricity_pricing": 0.0, "carbon_intensity": 0.0,
}
FORECAST_HOURS = (6, 12, 24)
MAX_ROWS = int(os.environ.get("OPEVA_DATASET_MAX_ROWS", 1_000_000))
MAX_STEP_SECONDS = 86_400
CITYLEARN_TARGET = "2.5"

Progress = Callable[[float, str], None]
DatasetBuildError = DatasetError  # the name older callers import


@dataclass
class BuildRequest:
    """The OPEVA ``POST /dataset`` body."""

    name: str
    site_id: str
    citylearn_configs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    period: int = 60
    from_ts: str | None = None
    until_ts: str | None = None
    seconds_per_time_step: int | None = None  # overrides period (minutes), as upstream; allows sub-minute steps

    @property
    def step_seconds(self) -> int:
        return int(self.seconds_per_time_step or self.period * 60)


@dataclass
class Plan:
    site_raw: dict[str, Any]
    schema: SiteSchema
    configs: CityLearnConfigs
    buildings: dict[str, tuple[BuildingSpec, str]]  # id -> (spec, collection)
    grid: Grid
    warnings: list[str]


def _collection(names: list[str], building_id: str, spec: BuildingSpec) -> str | None:
    wanted = spec.collection or f"building_{building_id}"
    if wanted in names:
        return wanted
    matches = sorted(n for n in names if n.startswith(wanted))
    return matches[0] if matches else None


def plan(client: pymongo.MongoClient, request: BuildRequest, *, probe: bool = True) -> Plan:
    """Everything a build needs to know before reading data; raises DatasetError (422/404).

    ``probe``: with a given range, look for one document per building in it (the API's
    pre-flight). The build itself skips that: it finds empty buildings while reading, and
    on some servers (secantus) a ranged find_one costs a scan of the range."""
    if not 1 <= request.step_seconds <= MAX_STEP_SECONDS:
        raise DatasetError(f"the time step must be between 1 and {MAX_STEP_SECONDS} seconds (period 1-1440 minutes); got {request.step_seconds} s", 422)
    start = parse_ts(request.from_ts, "from_ts") if request.from_ts else None
    until = parse_ts(request.until_ts, "until_ts") if request.until_ts else None
    configs = CityLearnConfigs.model_validate(request.citylearn_configs or {})
    raw = get_schema(client, request.site_id)
    schema = SiteSchema.model_validate(raw)
    if not schema.buildings:
        raise DatasetError(f"site {request.site_id!r} has no buildings in its schema; add them with PUT /schema/update/{request.site_id}", 422)
    selected = configs.selected_buildings or list(schema.buildings)
    unknown = [b for b in selected if b not in schema.buildings]
    if unknown:
        raise DatasetError(f"unknown building(s) {', '.join(unknown)}; site {request.site_id} has {', '.join(schema.buildings)}", 422)
    warnings = [f"citylearn_configs key {k!r} is not a CityLearn key this builder knows; passed into schema.json as given" for k in configs.unknown_keys()]
    db = client[request.site_id]
    names = db.list_collection_names()
    buildings: dict[str, tuple[BuildingSpec, str]] = {}
    for b in selected:
        coll = _collection(names, b, schema.buildings[b])
        if coll is None:
            warnings.append(f"building {b} skipped: no collection {schema.buildings[b].collection or f'building_{b}'}*")
        else:
            buildings[b] = (schema.buildings[b], coll)
    period_s = request.step_seconds
    if start and until:
        start, until = floor_to(start, period_s), floor_to(until, period_s)
        _check_size(request, start, until)
        if probe:
            buildings = _with_data_in(db, buildings, start, until, warnings)
    else:
        start, until = _common_range(db, buildings, start, until, period_s, warnings)
    if not buildings:
        raise DatasetError(f"no data for building(s) {', '.join(selected)} of site {request.site_id!r} between {start.isoformat()} and {until.isoformat()}", 422)
    steps = int((until - start).total_seconds() // period_s)
    return Plan(raw, schema, configs, buildings, Grid(start, period_s, steps), warnings)


def _check_size(request: BuildRequest, start: datetime, until: datetime) -> None:
    if until <= start:
        raise DatasetError(f"no time range: from {start.isoformat()} until {until.isoformat()} (site {request.site_id!r})", 422)
    steps = int((until - start).total_seconds() // request.step_seconds)
    if steps > MAX_ROWS:
        raise DatasetError(f"{steps} time steps of {request.step_seconds} s from {start.isoformat()} to {until.isoformat()} exceed the limit of "
                           f"{MAX_ROWS} rows per file; shorten the range or raise period", 422)


def _with_data_in(db: pymongo.database.Database, buildings: dict, start: datetime, until: datetime, warnings: list[str]) -> dict:
    """Buildings with at least one document in the range: one indexed find_one each (cheap
    everywhere, where first/last lookups cost a scan on some servers)."""
    kept = {}
    for b, (spec, coll) in buildings.items():
        ts = spec.timestamp_field
        if db[coll].find_one({ts: {"$gte": start, "$lt": until}}, {ts: 1, "_id": 0}) is None:
            warnings.append(f"building {b} skipped: no document in {coll} between {start.isoformat()} and {until.isoformat()}")
        else:
            kept[b] = (spec, coll)
    return kept


def _common_range(db: pymongo.database.Database, buildings: dict, start: datetime | None, until: datetime | None, period_s: int,
                  warnings: list[str]) -> tuple[datetime, datetime]:
    """A missing end is the one every building covers (latest first, earliest last), floored."""
    ranges = {}
    for b, (spec, coll) in list(buildings.items()):
        rng = collection_range(db[coll], spec.timestamp_field)
        if rng is None:
            warnings.append(f"building {b} skipped: {coll} has no timestamped documents")
            del buildings[b]
        else:
            ranges[b] = rng
    if not ranges:
        now = datetime.now(timezone.utc)
        return start or now, until or now
    start = floor_to(start or max(r[0] for r in ranges.values()), period_s)
    until = floor_to(until or min(r[1] for r in ranges.values()) + timedelta(seconds=period_s), period_s)
    if until <= start:
        raise DatasetError(f"the selected buildings of site {db.name!r} share no time range (from {start.isoformat()} until {until.isoformat()})", 422)
    steps = int((until - start).total_seconds() // period_s)
    if steps > MAX_ROWS:
        raise DatasetError(f"{steps} time steps from {start.isoformat()} to {until.isoformat()} exceed the limit of {MAX_ROWS} rows per file; "
                           "shorten the range or raise period", 422)
    for b, (first, last) in ranges.items():
        if first >= until or last < start:
            warnings.append(f"building {b} skipped: no data between {start.isoformat()} and {until.isoformat()} (it has {first.isoformat()} .. {last.isoformat()})")
            del buildings[b]
        elif first > start or last < until - timedelta(seconds=period_s):
            warnings.append(f"building {b}: data covers {first.isoformat()} .. {last.isoformat()}, less than the range; the rest is filled")
    return start, until


def calendar(grid: Grid, tz: str) -> pd.DataFrame:
    starts = pd.date_range(grid.start, periods=grid.steps, freq=pd.Timedelta(seconds=grid.period_s)).tz_convert(tz)
    dst = np.fromiter((bool(t.dst()) for t in starts), bool, grid.steps) if grid.steps else np.zeros(0, bool)
    return pd.DataFrame({"month": starts.month, "hour": starts.hour + 1, "minutes": starts.minute, "seconds": starts.second,
                         "day_type": starts.day_of_week + 1, "daylight_savings_status": dst.astype(int)})


def with_forecasts(frame: pd.DataFrame, columns: list[str], period_s: int) -> pd.DataFrame:
    out = frame[columns].copy()
    for column in columns:
        for k, hours in enumerate(FORECAST_HOURS, start=1):
            shift = max(1, round(hours * 3600 / period_s))
            out[f"{column}_predicted_{k}"] = frame[column].shift(-shift).ffill().to_numpy()
    return out


def _building_files(tmp: Path, n: int, b: str, spec: BuildingSpec, sums: Sums, grid: Grid, cal: pd.DataFrame,
                    defaults: dict[str, float], per_step: np.ndarray, warnings: list[str]) -> float | None:
    frame = cal.copy()
    lacking = []
    for column in BUILDING_COLUMNS:
        if sums.count[column].sum() == 0:
            lacking.append(column)
        frame[column] = finish(column, sums.sum[column], sums.count[column], defaults[column], column in SUMMED)
    pv_kw = spec.pv_kw()
    if pv_kw is None and sums.count["solar_generation"].sum() > 0:
        warnings.append(f"building {b}: solar_generation measured but no pv.attributes.nominal_power; 1 kW assumed")
        pv_kw = 1.0
    frame["solar_generation"] = frame["solar_generation"] / (pv_kw or 1.0) * 1000 / (grid.period_s / 3600)
    frame[BUILDING_CSV_COLUMNS].to_csv(tmp / f"Building_{n}.csv", index=False)
    empty = int((per_step == 0).sum())
    if empty:
        warnings.append(f"building {b}: {empty} of {grid.steps} time steps had no document (energy 0, averages interpolated)")
    if lacking:
        warnings.append(f"building {b}: no data for {', '.join(lacking)}; defaults used")
    return pv_kw if spec.pv is None else None


def build(client: pymongo.MongoClient, storage: DataRoot, request: BuildRequest, *, batch_size: int = 5000,
          progress: Progress | None = None, smoke: bool | None = None, replace: bool = False) -> dict[str, Any]:
    """Write ``datasets/<name>/`` and return its metadata (with warnings, validation, digest and
    ``status``: built, rebuilt or unchanged).

    ``smoke``: None = as the request's ``citylearn_configs.validation.smoke_check`` asks
    (default no); True/False force it (tests). ``replace``: an existing dataset of that name is
    rebuilt (scheduled builds and backfills) rather than refused; see :func:`_publish`."""
    name = safe_name(request.name, what="dataset name")
    final = storage.dataset_dir(name)
    if final.exists() and not replace:
        raise DatasetError(f"dataset {name!r} already exists; delete it first or choose another name", 409)
    report = progress or (lambda _p, _s: None)
    p = plan(client, request, probe=False)
    grid, zone, warnings = p.grid, p.schema.zone, list(p.warnings)
    defaults = {**DEFAULTS, **p.configs.defaults}
    cal = calendar(grid, zone)
    storage.datasets_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{name}-", dir=storage.datasets_dir))
    tmp.chmod(0o755)  # mkdtemp makes it 0700: simulators run unprivileged and must read datasets
    try:
        site = Sums(SITE_COLUMNS, grid.steps)
        entries, evs_seen, documents, ev_counts = {}, {}, 0, {}
        for n, (b, (spec, coll)) in enumerate(p.buildings.items(), start=1):
            report(90 * (n - 1) / len(p.buildings), f"building {b}")
            charger_ids = list((spec.chargers or {}).keys())
            tracker = ChargerTracker(charger_ids, grid.steps, grid.start, grid.period_s, zone)
            sums = Sums(BUILDING_COLUMNS, grid.steps)
            docs, per_step = read_building(client[request.site_id][coll], spec.timestamp_field, spec.fields, grid, sums, site, tracker, batch_size)
            if docs == 0:
                warnings.append(f"building {b} skipped: no document between {grid.start.isoformat()} and {grid.until.isoformat()}")
                continue
            documents += docs
            added_pv = _building_files(tmp, n, b, spec, sums, grid, cal, defaults, per_step, warnings)
            chargers = {}
            for k, charger_id in enumerate(charger_ids, start=1):
                frame, counts = tracker.frame(charger_id)
                frame.to_csv(tmp / f"charger_{n}_{k}.csv", index=False, na_rep="")
                chargers[charger_id] = f"charger_{n}_{k}.csv"
                ev_counts = {key: ev_counts.get(key, 0) + v for key, v in counts.items()}
            if tracker.unknown_chargers:
                warnings.append(f"building {b}: sessions on charger(s) {', '.join(sorted(tracker.unknown_chargers))} not in its schema were left out")
            evs_seen.update({ev: v for ev, v in tracker.evs.items() if ev not in evs_seen})
            files = {"energy_simulation": f"Building_{n}.csv", "weather": "weather.csv", "carbon_intensity": "carbon_intensity.csv", "pricing": "pricing.csv"}
            raw_spec = p.site_raw["buildings"][b]
            entries[b] = building_entry(raw_spec, files, chargers, added_pv, p.configs.building_overrides.get(b, {}))
        if not entries:
            raise DatasetError(f"no data for building(s) {', '.join(p.buildings)} of site {request.site_id!r} between {grid.start.isoformat()} and {grid.until.isoformat()}", 422)
        report(90, "weather, pricing, carbon intensity")
        _site_files(tmp, site, grid, defaults, warnings)
        start_local = grid.start.astimezone(ZoneInfo(zone))
        cl_schema = merged_schema(base_schema(grid.steps, grid.period_s, start_local.date().isoformat()), p.site_raw, p.configs)
        cl_schema["electric_vehicles_def"] = ev_definitions(p.site_raw, evs_seen)
        cl_schema["buildings"] = entries
        (tmp / "schema.json").write_text(json.dumps(cl_schema, indent=2))
        report(95, "validation")
        validation = validate(tmp, smoke=p.configs.smoke_check if smoke is None else smoke)
        metadata = {
            "name": name, "site": request.site_id, "description": request.description, "period": request.step_seconds // 60 if request.step_seconds % 60 == 0 else request.step_seconds / 60,
            "seconds_per_time_step": request.step_seconds,
            "from": grid.start.isoformat(), "until": grid.until.isoformat(), "time_steps": grid.steps, "timezone": zone,
            "buildings": {b: entry["energy_simulation"] for b, entry in entries.items()}, "documents": documents,
            "ev_times": ev_counts, "created": datetime.now(timezone.utc).isoformat(), "citylearn_version": CITYLEARN_TARGET,
            "source": "build", "warnings": warnings, "validation": validation,
        }
        metadata = _publish(tmp, final, metadata, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report(100.0, "done")
    return metadata


def _publish(tmp: Path, final: Path, metadata: dict[str, Any], replace: bool) -> dict[str, Any]:
    """Move the built folder into place, atomically for readers.

    Why compare digests: a scheduled slot built twice (a retry, a backfill over a built range)
    must not make a new version when the input has not changed; the old folder stays, untouched,
    and the answer says ``unchanged``. A changed input replaces the folder (``rebuilt``): the new
    one is renamed in, the old one removed after, so a reader sees one or the other, whole."""
    digest = files_digest(tmp)
    metadata = {**metadata, "digest": digest, "status": "built"}
    if final.exists() and replace:
        old = read_metadata(final)
        if (old.get("digest") or files_digest(final)) == digest:
            shutil.rmtree(tmp, ignore_errors=True)
            return {**old, "digest": digest, "status": "unchanged"}
        metadata["status"] = "rebuilt"
        write_json_atomic(tmp / METADATA_FILE, metadata)
        retired = final.with_name(f"{TMP_PREFIX}{final.name}-old-{uuid.uuid4().hex[:12]}")
        os.rename(final, retired)
        os.rename(tmp, final)
        shutil.rmtree(retired, ignore_errors=True)
        return metadata
    write_json_atomic(tmp / METADATA_FILE, metadata)
    if final.exists():
        raise DatasetError(f"dataset {final.name!r} was created by another build meanwhile", 409)
    os.rename(tmp, final)
    return metadata


def _site_files(tmp: Path, site: Sums, grid: Grid, defaults: dict[str, float], warnings: list[str]) -> None:
    frame = pd.DataFrame({c: finish(c, site.sum[c], site.count[c], defaults[c], False) for c in SITE_COLUMNS})
    lacking = [c for c in SITE_COLUMNS if site.count[c].sum() == 0]
    if lacking:
        warnings.append(f"the site has no data for {', '.join(lacking)}; defaults used")
    with_forecasts(frame, list(WEATHER_COLUMNS), grid.period_s).to_csv(tmp / "weather.csv", index=False)
    with_forecasts(frame, ["electricity_pricing"], grid.period_s).to_csv(tmp / "pricing.csv", index=False)
    frame[["carbon_intensity"]].to_csv(tmp / "carbon_intensity.csv", index=False)
