"""CityLearn 2.4-format datasets: read a folder, or make a small sample in memory.

The simulator works on dense arrays, ``(steps, buildings)`` for time series and
``(steps, chargers)`` for EV sessions, so everything the schema and CSVs say is
turned into those once here. Reading is tolerant: a missing optional file or
column becomes zeros or a default, and each such gap is noted in
:attr:`Dataset.notes` so the run log says what was assumed.

The sample dataset is built as the very tables a folder would hold and parsed
by the same code, so ``write_sample_dataset`` then ``load_dataset`` gives the
same simulation as ``sample_dataset`` (up to CSV float round-off).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_EV_CAPACITY = 50.0  # kWh, when neither the charger CSV nor electric_vehicles_def says
CHARGER_COLUMNS = (
    "electric_vehicle_charger_state",
    "electric_vehicle_id",
    "electric_vehicle_battery_capacity_khw",
    "current_soc",
    "electric_vehicle_departure_time",
    "electric_vehicle_required_soc_departure",
    "electric_vehicle_estimated_arrival_time",
    "electric_vehicle_estimated_soc_arrival",
)
# OPEVA's builder writes these six (CityLearn 2.5 and OPEVA's fork read them by position).
UPSTREAM_CHARGER_COLUMNS = (
    "electric_vehicle_charger_state",
    "electric_vehicle_id",
    "electric_vehicle_departure_time",
    "electric_vehicle_required_soc_departure",
    "electric_vehicle_estimated_arrival_time",
    "electric_vehicle_estimated_soc_arrival",
)
PLUGGED, ARRIVING, AWAY = 1, 2, 3


class DatasetError(ValueError):
    """A dataset the simulator cannot use at all (no buildings, no building CSV...)."""


@dataclass(frozen=True)
class Batteries:
    """One stationary battery per building, arrays of shape ``(buildings,)``; energy in kWh.

    ``efficiency`` is the round trip: each direction loses ``sqrt(efficiency)``.
    A building without a battery has capacity 0.
    """

    capacity: np.ndarray
    nominal_power: np.ndarray  # kW
    efficiency: np.ndarray
    initial_energy: np.ndarray
    min_energy: np.ndarray  # capacity * (1 - depth_of_discharge)


@dataclass(frozen=True)
class Chargers:
    """EV chargers and their plug-in sessions, arrays of shape ``(steps, chargers)``.

    A session is a run of steps in state 1 (plugged) with the same EV; the EV
    leaves after the session's last step (``departing``) and should by then hold
    ``target_energy``. Sessions still plugged at the end of the episode have no
    departure inside it.
    """

    building: np.ndarray  # (chargers,) index of the building it feeds
    max_power: np.ndarray  # (chargers,) kW, grid side
    efficiency: np.ndarray  # (chargers,)
    plugged: np.ndarray  # bool
    arriving: np.ndarray  # bool: first step of a session
    arrival_energy: np.ndarray  # kWh in the EV when it plugs in (valid where arriving)
    target_energy: np.ndarray  # kWh wanted at departure (0 where not plugged)
    capacity: np.ndarray  # EV battery kWh (0 where not plugged)
    departing: np.ndarray  # bool: last step of a session that ends inside the episode
    steps_left: np.ndarray  # int: plugged steps left in the session, this one included

    @property
    def count(self) -> int:
        return len(self.building)


@dataclass(frozen=True)
class Dataset:
    """One episode's worth of district data; energies in kWh per step."""

    name: str
    building_names: tuple[str, ...]
    hours_per_step: float
    hour: np.ndarray  # (steps,) hour of day 0..23
    load: np.ndarray  # (steps, buildings) non-shiftable load
    pv: np.ndarray  # (steps, buildings) PV generation
    price: np.ndarray  # (steps, buildings) $/kWh
    carbon: np.ndarray  # (steps, buildings) kgCO2/kWh
    batteries: Batteries
    chargers: Chargers
    notes: tuple[str, ...] = ()
    first_timestamp: str | None = None  # ISO time of the first step (schema start_date), for exported time series

    @property
    def steps(self) -> int:
        return len(self.hour)

    @property
    def buildings(self) -> int:
        return len(self.building_names)

    def describe(self) -> str:
        return (
            f"{self.name}: {self.buildings} buildings, {self.chargers.count} EV chargers, "
            f"{self.steps} steps of {self.hours_per_step * 60:g} min"
        )


TableReader = Callable[[str], "pd.DataFrame | None"]


def _attrs(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, Mapping):
        return {}
    attributes = entry.get("attributes")
    return dict(attributes) if isinstance(attributes, Mapping) else {}


def _number(value: Any, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if np.isfinite(number) else default


class _Parser:
    """Turns a schema and its tables into a :class:`Dataset`, noting every default taken."""

    def __init__(self, schema: Mapping[str, Any], read_table: TableReader, name: str) -> None:
        self.schema = schema
        self.read_table = read_table
        self.name = name
        self.notes: list[str] = []
        self._tables: dict[str, pd.DataFrame | None] = {}

    def table(self, file_name: Any, what: str) -> pd.DataFrame | None:
        if not isinstance(file_name, str) or not file_name:
            self.notes.append(f"no {what} file named in schema.json: using defaults")
            return None
        if file_name not in self._tables:
            frame = self.read_table(file_name)
            if frame is None:
                self.notes.append(f"{file_name} ({what}) is missing: using defaults")
            self._tables[file_name] = frame
        return self._tables[file_name]

    def column(self, frame: pd.DataFrame | None, column: str, window: slice, steps: int, default: float, file_name: str) -> np.ndarray:
        if frame is None:
            return np.full(steps, default)
        if column not in frame.columns:
            self.notes.append(f"{file_name} has no column {column!r}: using {default:g}")
            return np.full(steps, default)
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)[window]
        if len(values) < steps:
            self.notes.append(f"{file_name} has only {len(values)} of {steps} steps for {column!r}: padding with {default:g}")
            values = np.concatenate([values, np.full(steps - len(values), default)])
        return np.where(np.isfinite(values), values, default)

    def parse(self) -> Dataset:
        buildings = self.schema.get("buildings")
        if not isinstance(buildings, Mapping):
            raise DatasetError("schema.json has no 'buildings' mapping")
        included = {n: b for n, b in buildings.items() if isinstance(b, Mapping) and b.get("include", True)}
        if not included:
            raise DatasetError("schema.json includes no building")
        hours_per_step = _number(self.schema.get("seconds_per_time_step"), 3600.0) / 3600.0

        energy = {}
        for name, entry in included.items():
            frame = self.table(entry.get("energy_simulation"), f"energy simulation of {name}")
            if frame is None:
                raise DatasetError(f"building {name}: its energy_simulation CSV {entry.get('energy_simulation')!r} is missing")
            energy[name] = frame
        rows = min(len(frame) for frame in energy.values())
        start = int(_number(self.schema.get("simulation_start_time_step"), 0))
        end = int(_number(self.schema.get("simulation_end_time_step"), rows - 1))
        end = min(end, rows - 1)
        if not 0 <= start <= end:
            raise DatasetError(f"simulation_start_time_step {start} is not within the {rows} rows of the building CSVs")
        window, steps = slice(start, end + 1), end + 1 - start

        first_name, first = next(iter(energy.items()))
        first_file = included[first_name]["energy_simulation"]
        if "hour" in first.columns:
            hour = self.column(first, "hour", window, steps, 0, first_file).astype(int) % 24
        else:
            hour = (np.floor(np.arange(start, end + 1) * hours_per_step) % 24).astype(int)

        columns: dict[str, list[np.ndarray]] = {"load": [], "pv": [], "price": [], "carbon": []}
        for name, entry in included.items():
            file_name = entry["energy_simulation"]
            columns["load"].append(self.column(energy[name], "non_shiftable_load", window, steps, 0.0, file_name))
            pv_kw = _number(_attrs(entry.get("pv")).get("nominal_power"), 0.0)
            solar = self.column(energy[name], "solar_generation", window, steps, 0.0, file_name)
            columns["pv"].append(np.maximum(solar, 0.0) * pv_kw / 1000.0 * hours_per_step)
            for key, file_key, column in (("price", "pricing", "electricity_pricing"), ("carbon", "carbon_intensity", "carbon_intensity")):
                file_name = entry.get(file_key)
                frame = self.table(file_name, file_key.replace("_", " "))
                columns[key].append(self.column(frame, column, window, steps, 0.0, str(file_name)))

        return Dataset(
            name=self.name,
            building_names=tuple(included),
            hours_per_step=hours_per_step,
            hour=hour,
            batteries=self.batteries(included),
            chargers=self.chargers(included, window, steps, hours_per_step),
            notes=tuple(dict.fromkeys(self.notes)),
            first_timestamp=_first_timestamp(self.schema.get("start_date"), start, hours_per_step),
            **{key: np.ascontiguousarray(np.column_stack(arrays)) for key, arrays in columns.items()},
        )

    def batteries(self, included: Mapping[str, Mapping[str, Any]]) -> Batteries:
        specs = []
        for name, entry in included.items():
            attrs = _attrs(entry.get("electrical_storage"))
            capacity = max(_number(attrs.get("capacity"), 0.0), 0.0)
            if entry.get("electrical_storage") and capacity == 0.0:
                self.notes.append(f"building {name}: electrical_storage has no capacity: no battery")
            power = max(_number(attrs.get("nominal_power"), capacity), 0.0)
            efficiency = min(max(_number(attrs.get("efficiency"), 0.9), 0.01), 1.0)
            dod = min(max(_number(attrs.get("depth_of_discharge"), 1.0), 0.0), 1.0)
            min_energy = capacity * (1.0 - dod)
            initial = min(max(_number(attrs.get("initial_soc"), 0.0) * capacity, min_energy), capacity)
            specs.append((capacity, power, efficiency, initial, min_energy))
        capacity, power, efficiency, initial, min_energy = (np.array(v, dtype=float) for v in zip(*specs))
        return Batteries(capacity, power, efficiency, initial, min_energy)

    def chargers(self, included: Mapping[str, Mapping[str, Any]], window: slice, steps: int, hours_per_step: float) -> Chargers:
        ev_defs = self.schema.get("electric_vehicles_def")
        ev_defs = ev_defs if isinstance(ev_defs, Mapping) else {}
        building, max_power, efficiency, sessions = [], [], [], []
        for b, entry in enumerate(included.values()):
            chargers = entry.get("chargers")
            for charger_id, charger in (chargers.items() if isinstance(chargers, Mapping) else ()):
                file_name = charger.get("charger_simulation") if isinstance(charger, Mapping) else None
                frame = self.table(file_name, f"charger {charger_id}")
                if frame is None:
                    continue
                attrs = _attrs(charger)
                building.append(b)
                max_power.append(max(_number(attrs.get("max_charging_power"), 7.4), 0.0))
                efficiency.append(min(max(_number(attrs.get("efficiency"), 1.0), 0.01), 1.0))
                sessions.append(_charger_sessions(frame.iloc[window], steps, ev_defs))

        def stack(i: int, dtype: type) -> np.ndarray:
            return np.column_stack([s[i] for s in sessions]).astype(dtype) if sessions else np.zeros((steps, 0), dtype=dtype)

        return Chargers(
            building=np.array(building, dtype=np.intp),
            max_power=np.array(max_power, dtype=float),
            efficiency=np.array(efficiency, dtype=float),
            plugged=stack(0, bool),
            arriving=stack(1, bool),
            arrival_energy=stack(2, float),
            target_energy=stack(3, float),
            capacity=stack(4, float),
            departing=stack(5, bool),
            steps_left=stack(6, np.int64),
        )


def _ev_capacity(ev_defs: Mapping[str, Any], ev_id: Any) -> float:
    entry = ev_defs.get(ev_id) if isinstance(ev_id, str) else None
    battery = entry.get("battery") if isinstance(entry, Mapping) else None
    return _number(_attrs(battery).get("capacity"), DEFAULT_EV_CAPACITY)


def _ev_initial_soc(ev_defs: Mapping[str, Any], ev_id: Any) -> float:
    entry = ev_defs.get(ev_id) if isinstance(ev_id, str) else None
    battery = entry.get("battery") if isinstance(entry, Mapping) else None
    return _number(_attrs(battery).get("initial_soc"), 0.5)


def _charger_sessions(frame: pd.DataFrame, steps: int, ev_defs: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    """Per-step session arrays of one charger CSV, columns read by name.

    Both layouts are read: OPEVA's six columns and CityLearn 2.4's eight (which add
    the battery capacity and current SoC). A file without those headers is read by
    position, its width telling the layout. SoC percentages may also be written as
    fractions (0-1): a file whose SoC columns never exceed 1 is read that way.
    Blanks are NaN or negative.
    """
    if frame.shape[1] and str(frame.columns[0]) != CHARGER_COLUMNS[0]:
        names = CHARGER_COLUMNS if frame.shape[1] >= len(CHARGER_COLUMNS) else UPSTREAM_CHARGER_COLUMNS
        frame = frame.set_axis(list(names[: frame.shape[1]]) + [f"extra_{i}" for i in range(frame.shape[1] - len(names))], axis=1)

    def col(name: str) -> np.ndarray:
        if name not in frame.columns:
            return np.full(steps, np.nan)
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
        return np.concatenate([values, np.full(steps - len(values), np.nan)]) if len(values) < steps else values

    state = col("electric_vehicle_charger_state")
    ids = frame["electric_vehicle_id"].astype(str).to_numpy() if "electric_vehicle_id" in frame.columns else np.full(len(frame), "")
    ids = np.concatenate([ids, np.full(steps - len(ids), "")]) if len(ids) < steps else ids
    capacity_col, current = col("electric_vehicle_battery_capacity_khw"), col("current_soc")
    required, estimated = col("electric_vehicle_required_soc_departure"), col("electric_vehicle_estimated_soc_arrival")
    percents = np.concatenate([required[required >= 0], estimated[estimated >= 0]])
    soc_scale = 100.0 if percents.size and percents.max() > 1.0 else 1.0

    plugged = state == PLUGGED
    continues = plugged & np.r_[False, plugged[:-1]] & np.r_[False, ids[1:] == ids[:-1]]
    starts = np.flatnonzero(plugged & ~continues)
    ends = np.flatnonzero(plugged & ~np.r_[continues[1:], False])
    arriving, departing = np.zeros(steps, bool), np.zeros(steps, bool)
    arrival, target, capacity, left = np.zeros(steps), np.zeros(steps), np.zeros(steps), np.zeros(steps, np.int64)
    for s, e in zip(starts, ends):
        ev_id = ids[s]
        cap = capacity_col[s] if capacity_col[s] > 0 else _ev_capacity(ev_defs, ev_id)
        if current[s] >= 0:
            energy = current[s]
        elif estimated[s] >= 0:
            energy = estimated[s] / soc_scale * cap
        elif s > 0 and state[s - 1] == ARRIVING and estimated[s - 1] >= 0:
            energy = estimated[s - 1] / soc_scale * cap
        else:
            energy = _ev_initial_soc(ev_defs, ev_id) * cap
        wanted = required[s : e + 1][required[s : e + 1] >= 0]
        goal = min(wanted[-1] / soc_scale, 1.0) * cap if wanted.size else cap
        arriving[s] = True
        arrival[s] = min(max(energy, 0.0), cap)
        target[s : e + 1] = goal
        capacity[s : e + 1] = cap
        left[s : e + 1] = np.arange(e - s + 1, 0, -1)
        departing[e] = e < steps - 1
    return plugged, arriving, arrival, target, capacity, departing, left


def _read_csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise DatasetError(f"{path.name} is not a readable CSV: {exc}") from exc


def _first_timestamp(start_date: Any, start_step: int, hours_per_step: float) -> str | None:
    """The schema's ``start_date`` (a day, local time) moved to the window's first step; None when absent or unreadable."""
    try:
        day = datetime.fromisoformat(str(start_date)) if start_date else None
    except ValueError:
        return None
    return None if day is None else (day + timedelta(hours=start_step * hours_per_step)).isoformat()


def load_dataset(folder: Path) -> Dataset:
    """Read a CityLearn-format dataset folder (``schema.json`` and its CSVs)."""
    folder = Path(folder)
    try:
        schema = json.loads((folder / "schema.json").read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {folder / 'schema.json'}: {exc}") from exc
    if not isinstance(schema, Mapping):
        raise DatasetError(f"{folder / 'schema.json'} is not a JSON object")
    return _Parser(schema, lambda name: _read_csv(folder / name), folder.name).parse()
