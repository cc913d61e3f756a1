"""Build a CityLearn 2.4 dataset folder from a MongoDB site.

Why streaming: a site holds years of 15-minute measurements per building. Each
collection is read once through a batched cursor with a projection and a time
filter; each batch is folded into per-time-step sums and counts (numpy
``bincount``), so memory grows with the number of time steps, never with the
number of documents, and a step spanning two batches is still exact.

What a site lacks (the OPEVA builder's defaults): indoor temperature 20.0 °C,
humidity 50.0 %, loads and generation 0.0, outdoor temperature 20.0 °C,
irradiance 0.0, prices and carbon intensity 0.0; an EV battery of 50 kWh /
50 kW, initial SoC 0.5, depth of discharge 0.9. Within a series the site does
have, a time step with no document is 0.0 for summed columns (energy) and is
interpolated for averaged ones (temperatures, prices), edges filled from the
nearest value. ``citylearn_configs.defaults`` overrides any of these defaults.

Time: documents are UTC; bins are aligned to UTC multiples of ``period``;
month, hour (0-23), day_type (1 = Monday ... 7 = Sunday) and
daylight_savings_status are computed in the site's time zone. Naive
``from_ts``/``until_ts`` are read as UTC. PV: ``solar_generation`` is written in
W per kW of installed PV, as CityLearn expects (it multiplies by the schema's
``pv.nominal_power``).

The folder is written under ``datasets/.tmp-<name>-*`` and renamed into place
when complete, so a half-built dataset is never listed.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pymongo

from core.site_spec import AVERAGED, BUILDING_COLUMNS, WEATHER_COLUMNS, BuildingSpec, ChargerSpec, SeriesSpec, SiteSchema
from core.sites import collection_range, site_schema
from core.layout import DataRoot, UnsafeNameError, safe_name, write_json_atomic

TMP_PREFIX = ".tmp-"
METADATA_FILE = "dataset.json"
CALENDAR = ["month", "hour", "day_type", "daylight_savings_status"]
BUILDING_CSV_COLUMNS = CALENDAR + [
    "indoor_dry_bulb_temperature", "average_unmet_cooling_setpoint_difference", "indoor_relative_humidity",
    "non_shiftable_load", "dhw_demand", "cooling_demand", "heating_demand", "solar_generation",
]
CHARGER_CSV_COLUMNS = [
    "electric_vehicle_charger_state", "electric_vehicle_id", "electric_vehicle_battery_capacity_khw", "current_soc",
    "electric_vehicle_departure_time", "electric_vehicle_required_soc_departure",
    "electric_vehicle_estimated_arrival_time", "electric_vehicle_estimated_soc_arrival",
]
DEFAULTS: dict[str, float] = {
    "indoor_dry_bulb_temperature": 20.0, "indoor_relative_humidity": 50.0, "average_unmet_cooling_setpoint_difference": 0.0,
    "non_shiftable_load": 0.0, "dhw_demand": 0.0, "cooling_demand": 0.0, "heating_demand": 0.0, "solar_generation": 0.0,
    "outdoor_dry_bulb_temperature": 20.0, "outdoor_relative_humidity": 50.0, "diffuse_solar_irradiance": 0.0,
    "direct_solar_irradiance": 0.0, "electricity_pricing": 0.0, "carbon_intensity": 0.0,
}
EV_BATTERY = {"capacity": 50.0, "nominal_power": 50.0, "initial_soc": 0.5, "depth_of_discharge": 0.9}
FORECAST_HOURS = (6, 12, 24)  # the *_predicted_1..3 columns: the actual values this far ahead

Progress = Callable[[float, str], None]


class DatasetBuildError(ValueError):
    """The build cannot produce a dataset (no data, bad range, unknown building...)."""


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


@dataclass
class Grid:
    start: datetime
    period_s: int
    steps: int

    @property
    def until(self) -> datetime:
        return self.start + timedelta(seconds=self.period_s * self.steps)

    def index(self, stamps: np.ndarray) -> np.ndarray:
        return np.floor((stamps - self.start.timestamp()) / self.period_s).astype(np.int64)


def parse_ts(value: str, what: str) -> datetime:
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        raise DatasetBuildError(f"{what} {value!r} is not an ISO 8601 timestamp") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def floor_to(ts: datetime, period_s: int) -> datetime:
    return datetime.fromtimestamp(math.floor(ts.timestamp() / period_s) * period_s, tz=timezone.utc)


def building_collection(db: pymongo.database.Database, building_id: str, spec: BuildingSpec) -> str:
    names = db.list_collection_names()
    wanted = spec.collection or f"building_{building_id}"
    if wanted in names:
        return wanted
    matches = sorted(n for n in names if n.startswith(wanted))
    if not matches:
        raise DatasetBuildError(f"building {building_id!r}: no collection {wanted!r} in site {db.name!r}")
    return matches[0]


def aggregate(coll: pymongo.collection.Collection, ts_field: str, fields: dict[str, str], grid: Grid, batch_size: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
    """Per column: per-step sum and count of the documents in the grid's range."""
    sums = {c: np.zeros(grid.steps) for c in fields}
    counts = {c: np.zeros(grid.steps) for c in fields}
    projection = {ts_field: 1, "_id": 0, **{f: 1 for f in fields.values()}}
    cursor = coll.find({ts_field: {"$gte": grid.start, "$lt": grid.until}}, projection, batch_size=batch_size)
    docs = 0
    batch: list[dict] = []

    def fold() -> None:
        stamps = np.fromiter((d[ts_field].timestamp() for d in batch), float, len(batch))
        idx = grid.index(stamps)
        inside = (idx >= 0) & (idx < grid.steps)
        for column, doc_field in fields.items():
            values = _numbers([d.get(doc_field) for d in batch])
            ok = inside & ~np.isnan(values)
            sums[column] += np.bincount(idx[ok], weights=values[ok], minlength=grid.steps)
            counts[column] += np.bincount(idx[ok], minlength=grid.steps)

    for doc in cursor:
        if isinstance(doc.get(ts_field), datetime):
            batch.append(doc)
        if len(batch) >= batch_size:
            docs += len(batch)
            fold()
            batch = []
    if batch:
        docs += len(batch)
        fold()
    return sums, counts, docs


def _numbers(values: list[Any]) -> np.ndarray:
    """Document values as floats, missing or non-numeric ones as NaN (fast path first)."""
    try:
        return np.array(values, dtype=float)  # None -> NaN
    except (TypeError, ValueError):
        return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(float)


def finish_column(column: str, total: np.ndarray, count: np.ndarray, defaults: dict[str, float]) -> np.ndarray:
    if count.sum() == 0:
        return np.full(len(total), defaults[column])
    if column in AVERAGED or column in WEATHER_COLUMNS or column in ("electricity_pricing", "carbon_intensity"):
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        return pd.Series(mean).interpolate(limit_direction="both").to_numpy()
    return total


def calendar(grid: Grid, tz: str) -> pd.DataFrame:
    starts = pd.date_range(grid.start, periods=grid.steps, freq=pd.Timedelta(seconds=grid.period_s)).tz_convert(tz)
    dst = np.fromiter((bool(t.dst()) for t in starts), bool, grid.steps) if grid.steps else np.zeros(0, bool)
    return pd.DataFrame(
        {"month": starts.month, "hour": starts.hour, "day_type": starts.day_of_week + 1, "daylight_savings_status": dst.astype(int)}
    )


def with_forecasts(frame: pd.DataFrame, columns: list[str], grid: Grid) -> pd.DataFrame:
    for column in columns:
        for k, hours in enumerate(FORECAST_HOURS, start=1):
            shift = max(1, round(hours * 3600 / grid.period_s))
            frame[f"{column}_predicted_{k}"] = frame[column].shift(-shift).ffill().to_numpy()
    return frame


def series_frame(db: pymongo.database.Database, spec: SeriesSpec | None, columns: list[str], grid: Grid, defaults: dict[str, float], batch_size: int) -> pd.DataFrame:
    if spec is None:
        data = {c: np.full(grid.steps, defaults[c]) for c in columns}
    else:
        sums, counts, _ = aggregate(db[spec.collection], spec.timestamp_field, spec.fields, grid, batch_size)
        data = {c: finish_column(c, sums[c], counts[c], defaults) if c in sums else np.full(grid.steps, defaults[c]) for c in columns}
    return with_forecasts(pd.DataFrame(data), columns, grid)


def charger_frame(db: pymongo.database.Database, spec: ChargerSpec, grid: Grid, evs: dict[str, dict]) -> pd.DataFrame:
    """One row per step: plugged-in EV (1), arriving next step (2) or none (3)."""
    n = grid.steps
    frame = pd.DataFrame({c: np.full(n, np.nan) for c in CHARGER_CSV_COLUMNS})
    frame["electric_vehicle_charger_state"] = 3
    frame["electric_vehicle_id"] = ""
    query = {spec.arrival_field: {"$lt": grid.until}, spec.departure_field: {"$gt": grid.start}}
    projection = {"_id": 0, spec.ev_id_field: 1, spec.arrival_field: 1, spec.departure_field: 1, spec.required_soc_field: 1, spec.arrival_soc_field: 1}
    for s in db[spec.collection].find(query, projection).sort(spec.arrival_field, pymongo.ASCENDING):
        arrival, departure = s.get(spec.arrival_field), s.get(spec.departure_field)
        if not isinstance(arrival, datetime) or not isinstance(departure, datetime):
            continue
        ev = str(s.get(spec.ev_id_field) or f"EV_{spec.collection}")
        evs.setdefault(ev, {"capacity": spec.ev_battery_capacity})
        a = int(grid.index(np.array([arrival.timestamp()]))[0])
        d = int(math.ceil((departure.timestamp() - grid.start.timestamp()) / grid.period_s))
        required = float(s.get(spec.required_soc_field) or np.nan)
        arrival_soc = float(s.get(spec.arrival_soc_field) or np.nan)
        steps = np.arange(max(a, 0), min(d, n))
        frame.loc[steps, "electric_vehicle_charger_state"] = 1
        frame.loc[steps, "electric_vehicle_id"] = ev
        frame.loc[steps, "electric_vehicle_battery_capacity_khw"] = spec.ev_battery_capacity
        frame.loc[steps, "electric_vehicle_departure_time"] = d - steps
        frame.loc[steps, "electric_vehicle_required_soc_departure"] = required
        if 0 <= a < n:
            frame.loc[a, "current_soc"] = arrival_soc / 100 * spec.ev_battery_capacity
        if 1 <= a <= n and frame.loc[a - 1, "electric_vehicle_charger_state"] == 3:
            frame.loc[a - 1, ["electric_vehicle_charger_state", "electric_vehicle_id", "electric_vehicle_estimated_arrival_time", "electric_vehicle_estimated_soc_arrival"]] = [2, ev, 1, arrival_soc]
    frame["electric_vehicle_charger_state"] = frame["electric_vehicle_charger_state"].astype(int)
    return frame


def resolve_range(db: pymongo.database.Database, request: BuildRequest, collections: dict[str, tuple[str, str]], period_s: int) -> Grid:
    """The requested range, or the one every selected building covers, floored to the period."""
    if request.from_ts and request.until_ts:
        start, until = parse_ts(request.from_ts, "from_ts"), parse_ts(request.until_ts, "until_ts")
    else:
        ranges = {b: collection_range(db[c], ts) for b, (c, ts) in collections.items()}
        empty = [b for b, r in ranges.items() if r is None]
        if empty:
            raise DatasetBuildError(f"no data for building(s) {', '.join(empty)} of site {db.name!r}")
        start = parse_ts(request.from_ts, "from_ts") if request.from_ts else max(r[0] for r in ranges.values())
        until = parse_ts(request.until_ts, "until_ts") if request.until_ts else min(r[1] for r in ranges.values()) + timedelta(seconds=period_s)
    start = floor_to(start, period_s)
    until = floor_to(until, period_s)
    if until <= start:
        raise DatasetBuildError(f"the selected buildings of site {db.name!r} share no time range (from {start.isoformat()} until {until.isoformat()})")
    return Grid(start=start, period_s=period_s, steps=int((until - start).total_seconds() // period_s))


def _select(schema: SiteSchema, configs: dict[str, Any]) -> dict[str, BuildingSpec]:
    selected = configs.get("selected_buildings") or list(schema.buildings)
    unknown = [str(b) for b in selected if str(b) not in schema.buildings]
    if unknown:
        raise DatasetBuildError(f"unknown building(s) {', '.join(unknown)}; the site has {', '.join(schema.buildings)}")
    return {str(b): schema.buildings[str(b)] for b in selected}


def _schema_with_overrides(client: pymongo.MongoClient, site: str, overrides: dict[str, Any]) -> SiteSchema:
    base = site_schema(client, site).model_dump(exclude_none=True)
    return SiteSchema.model_validate({**base, **overrides})


def build(client: pymongo.MongoClient, storage: DataRoot, request: BuildRequest, *, batch_size: int = 5000, progress: Progress | None = None) -> dict[str, Any]:
    """Write ``datasets/<name>/`` and return its metadata."""
    name = safe_name(request.name, what="dataset name")
    final = storage.dataset_dir(name)
    if final.exists():
        raise DatasetBuildError(f"dataset {name!r} already exists")
    if not 1 <= request.period <= 1440:
        raise DatasetBuildError("period must be between 1 and 1440 minutes")
    report = progress or (lambda _p, _s: None)
    configs = request.citylearn_configs or {}
    schema = _schema_with_overrides(client, request.site_id, configs.get("schema_overrides") or {})
    defaults = {**DEFAULTS, **(configs.get("defaults") or {})}
    db = client[request.site_id]
    buildings = _select(schema, configs)
    collections = {b: (building_collection(db, b, spec), spec.timestamp_field) for b, spec in buildings.items()}
    period_s = request.period * 60
    grid = resolve_range(db, request, collections, period_s)
    cal = calendar(grid, schema.timezone)
    storage.datasets_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{name}-", dir=storage.datasets_dir))
    try:
        total_steps = len(buildings) + 3
        evs: dict[str, dict] = {}
        schema_buildings: dict[str, Any] = {}
        documents = 0
        for n, (building_id, spec) in enumerate(buildings.items(), start=1):
            report(100 * (n - 1) / total_steps, f"building {building_id}")
            sums, counts, docs = aggregate(db[collections[building_id][0]], spec.timestamp_field, spec.fields, grid, batch_size)
            if docs == 0:
                raise DatasetBuildError(
                    f"no data for building {building_id} of site {request.site_id!r} between {grid.start.isoformat()} and {grid.until.isoformat()}"
                )
            documents += docs
            frame = cal.copy()
            for column in BUILDING_COLUMNS:
                frame[column] = finish_column(column, sums[column], counts[column], defaults) if column in sums else np.full(grid.steps, defaults[column])
            pv_kw = spec.pv_nominal_power or 1.0
            frame["solar_generation"] = frame["solar_generation"] / pv_kw * 1000 / (period_s / 3600)  # kWh per step -> W per kW
            file = f"Building_{n}.csv"
            frame[BUILDING_CSV_COLUMNS].to_csv(tmp / file, index=False)
            chargers = {}
            for k, (charger_id, cspec) in enumerate(spec.chargers.items(), start=1):
                cfile = f"charger_{n}_{k}.csv"
                charger_frame(db, cspec, grid, evs).to_csv(tmp / cfile, index=False, na_rep="")
                chargers[charger_id] = {
                    "type": "citylearn.electric_vehicle_charger.Charger",
                    "charger_simulation": cfile,
                    "attributes": {"nominal_power": cspec.max_charging_power, "max_charging_power": cspec.max_charging_power, "min_charging_power": 0.0, "efficiency": 0.95},
                }
            entry: dict[str, Any] = {
                "include": True,
                "site_building_id": building_id,
                "energy_simulation": file,
                "weather": "weather.csv",
                "carbon_intensity": "carbon_intensity.csv",
                "pricing": "pricing.csv",
                "inactive_observations": [],
                "inactive_actions": [],
                "pv": {"type": "citylearn.energy_model.PV", "autosize": False, "attributes": {"nominal_power": pv_kw}},
                "chargers": chargers,
            }
            if spec.battery:
                entry["electrical_storage"] = {
                    "type": "citylearn.energy_model.Battery",
                    "autosize": False,
                    "attributes": {"capacity": spec.battery.capacity, "nominal_power": spec.battery.nominal_power, "efficiency": spec.battery.efficiency, "initial_soc": 0.5, "depth_of_discharge": 0.9},
                }
            entry.update((configs.get("building_overrides") or {}).get(building_id, {}))
            schema_buildings[f"Building_{n}"] = entry

        report(100 * len(buildings) / total_steps, "weather")
        series_frame(db, schema.weather, list(WEATHER_COLUMNS), grid, defaults, batch_size).to_csv(tmp / "weather.csv", index=False)
        report(100 * (len(buildings) + 1) / total_steps, "pricing")
        series_frame(db, schema.pricing, ["electricity_pricing"], grid, defaults, batch_size).to_csv(tmp / "pricing.csv", index=False)
        report(100 * (len(buildings) + 2) / total_steps, "carbon intensity")
        carbon = series_frame(db, schema.carbon_intensity, ["carbon_intensity"], grid, defaults, batch_size)
        carbon[["carbon_intensity"]].to_csv(tmp / "carbon_intensity.csv", index=False)

        start_local = grid.start.astimezone(ZoneInfo(schema.timezone))
        citylearn_schema = {
            "random_seed": 0,
            "root_directory": None,
            "central_agent": False,
            "simulation_start_time_step": 0,
            "simulation_end_time_step": grid.steps - 1,
            "episode_time_steps": None,
            "rolling_episode_split": False,
            "random_episode_split": False,
            "seconds_per_time_step": period_s,
            "start_date": start_local.date().isoformat(),
            "observations": {c: {"active": True, "shared_in_central_agent": True} for c in ["month", "hour", "day_type", "daylight_savings_status", "outdoor_dry_bulb_temperature", "electricity_pricing", "carbon_intensity", "non_shiftable_load", "solar_generation", "electrical_storage_soc", "net_electricity_consumption"]},
            "actions": {"electrical_storage": {"active": True}, "electric_vehicle_storage": {"active": True}},
            "agent": {"type": "citylearn.agents.base.BaselineAgent", "attributes": {}},
            "reward_function": {"type": "citylearn.reward_function.RewardFunction", "attributes": {}},
            "electric_vehicles_def": {
                ev: {"include": True, "battery": {"type": "citylearn.energy_model.Battery", "autosize": False, "attributes": {**EV_BATTERY, "capacity": info["capacity"]}}}
                for ev, info in sorted(evs.items())
            },
            "buildings": schema_buildings,
        }
        (tmp / "schema.json").write_text(json.dumps(citylearn_schema, indent=2))
        metadata = {
            "name": name,
            "site": request.site_id,
            "description": request.description,
            "period": request.period,
            "from": grid.start.isoformat(),
            "until": grid.until.isoformat(),
            "time_steps": grid.steps,
            "timezone": schema.timezone,
            "buildings": {f"Building_{n}": b for n, b in enumerate(buildings, start=1)},
            "documents": documents,
            "created": datetime.now(timezone.utc).isoformat(),
            "citylearn_version": "2.4",
        }
        write_json_atomic(tmp / METADATA_FILE, metadata)
        if final.exists():
            raise DatasetBuildError(f"dataset {name!r} was created by another build meanwhile")
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report(100.0, "done")
    return metadata


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def list_datasets(storage: DataRoot) -> list[dict[str, Any]]:
    """Complete datasets only (temporary build folders are skipped)."""
    out = []
    if not storage.datasets_dir.is_dir():
        return out
    for path in sorted(storage.datasets_dir.iterdir()):
        if not path.is_dir() or path.name.startswith("."):
            continue
        try:  # links out of the root (a job can make them) are not listed, nor read through
            storage.inside(path)
            meta = storage.read_json(path / METADATA_FILE)
        except UnsafeNameError:
            continue
        meta = meta if isinstance(meta, dict) else {}
        created = meta.get("created") or datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc).isoformat()
        out.append({
            "name": path.name,
            "size": folder_size(path),
            "created": created,
            "site": meta.get("site"),
            "from": meta.get("from"),
            "until": meta.get("until"),
            "period": meta.get("period"),
            "description": meta.get("description", ""),
        })
    return out


class _Sink(io.RawIOBase):
    """An unseekable stream zipfile writes into; chunks are taken as they are made."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self._chunks.append(bytes(b))
        return len(b)

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def iter_zip(storage: DataRoot, folder: Path, chunk_size: int = 1 << 16) -> Iterator[bytes]:
    """The folder as a zip, produced piece by piece (never whole in memory).

    Files come from ``storage.iter_files``: links are neither stored nor followed,
    so a link a job left in a dataset cannot pull outside files into the zip.
    """
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for relative, src in storage.iter_files(folder):
            with archive.open(f"{folder.name}/{relative}", "w") as dst:
                while block := src.read(chunk_size):
                    dst.write(block)
                    if data := sink.take():
                        yield data
    if data := sink.take():
        yield data
