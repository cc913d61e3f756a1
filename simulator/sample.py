"""The built-in sample district: a CityLearn dataset made from a seed.

Built as the very tables a folder would hold and parsed by the same code as a
folder (:mod:`simulator.dataset`), so ``write_sample_dataset`` then
``load_dataset`` gives the same simulation as ``sample_dataset``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.dataset import ARRIVING, AWAY, CHARGER_COLUMNS, PLUGGED, Dataset, _Parser

SAMPLE_START_DATE = "2024-06-03"  # a Monday in early summer: PV surplus at noon, evening peaks
_TARIFF = np.array([0.10] * 7 + [0.22] * 10 + [0.38] * 4 + [0.22] * 3)  # $/kWh by hour of day


def _observations() -> dict[str, dict[str, bool]]:
    shared = {"month", "day_type", "hour", "outdoor_dry_bulb_temperature", "electricity_pricing",
              "electricity_pricing_predicted_1", "carbon_intensity"}
    own = {"non_shiftable_load", "solar_generation", "electrical_storage_soc", "net_electricity_consumption",
           "electric_vehicle_charger_connected_state"}
    return {name: {"active": True, "shared_in_central_agent": name in shared} for name in sorted(shared | own)}


def _district_tables(rng: np.random.Generator, days: int) -> tuple[dict[str, pd.DataFrame], np.ndarray]:
    """Weather, pricing and carbon tables shared by every building (hourly from an
    early-summer Monday: a three-level time-of-use tariff with an evening peak), and
    the PV yield per kW that the buildings share."""
    steps = days * 24
    hour = np.arange(steps) % 24
    day = np.arange(steps) // 24

    clearness = rng.uniform(0.45, 1.0, days)[day]
    sun = np.clip(np.sin(np.pi * (hour - 6.0) / 13.0), 0.0, None)
    solar = np.round(800.0 * sun * clearness * rng.uniform(0.95, 1.05, steps), 3)  # W per kW of PV
    temperature = np.round(22.0 + 6.0 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 1.0, days)[day], 2)
    price = _TARIFF[hour]
    carbon = np.round(0.30 + 0.10 * (price > 0.3) - 0.12 * sun * clearness + rng.normal(0, 0.01, steps), 4)

    def ahead(values: np.ndarray, k: int) -> np.ndarray:
        return np.r_[values[k:], values[-k:]] if k < len(values) else values

    tables: dict[str, pd.DataFrame] = {
        "weather.csv": pd.DataFrame(
            {
                "outdoor_dry_bulb_temperature": temperature,
                "outdoor_relative_humidity": np.round(np.clip(70 - 1.5 * (temperature - 22), 20, 100), 1),
                "diffuse_solar_irradiance": np.round(120.0 * sun * (1.4 - clearness), 2),
                "direct_solar_irradiance": np.round(850.0 * sun * clearness, 2),
            }
        ),
        "pricing.csv": pd.DataFrame(
            {"electricity_pricing": price, **{f"electricity_pricing_predicted_{k}": ahead(price, k) for k in (1, 2, 3)}}
        ),
        "carbon_intensity.csv": pd.DataFrame({"carbon_intensity": carbon}),
    }
    weather = tables["weather.csv"]
    for column in list(weather.columns):
        for k in (1, 2, 3):
            weather[f"{column}_predicted_{k}"] = ahead(weather[column].to_numpy(), k)
    return tables, solar


def _building_tables(rng: np.random.Generator, days: int, buildings: int, solar: np.ndarray) -> tuple[dict[str, Any], dict[str, Any], dict[str, pd.DataFrame]]:
    """Per building: its energy CSV, one PV array, a battery and an EV charger whose EV
    leaves in the morning and comes back at the evening peak."""
    steps = days * 24
    hour = np.arange(steps) % 24
    dates = pd.date_range(SAMPLE_START_DATE, periods=steps, freq="h")
    tables: dict[str, pd.DataFrame] = {}
    weekend = dates.day_of_week.to_numpy() >= 5
    daily_shape = (
        0.35
        + 0.6 * np.exp(-0.5 * ((hour - 7.5) / 1.2) ** 2)
        + 1.3 * np.exp(-0.5 * ((hour - 19.5) / 1.8) ** 2)
        + 0.3 * weekend * np.exp(-0.5 * ((hour - 13) / 3.0) ** 2)
    )
    schema_buildings: dict[str, Any] = {}
    ev_defs: dict[str, Any] = {}
    for b in range(1, buildings + 1):
        size = rng.uniform(0.7, 1.6)
        load = np.round(size * daily_shape * rng.lognormal(0.0, 0.12, steps), 4)
        tables[f"Building_{b}.csv"] = pd.DataFrame(
            {
                "month": dates.month,
                "hour": np.where(hour == 0, 24, hour),  # CityLearn counts hours 1..24
                "day_type": dates.day_of_week + 1,
                "daylight_savings_status": 1,
                "indoor_dry_bulb_temperature": 23.0,
                "average_unmet_cooling_setpoint_difference": 0.0,
                "indoor_relative_humidity": 50.0,
                "non_shiftable_load": load,
                "dhw_demand": 0.0,
                "cooling_demand": 0.0,
                "heating_demand": 0.0,
                "solar_generation": solar,
            }
        )
        ev_id = f"Electric_Vehicle_{b}"
        ev_capacity = float(rng.choice([40.0, 50.0, 60.0, 75.0]))
        ev_defs[ev_id] = {
            "include": True,
            "battery": {
                "type": "citylearn.energy_model.Battery",
                "autosize": False,
                "attributes": {"capacity": ev_capacity, "nominal_power": 50.0, "initial_soc": 0.5, "depth_of_discharge": 0.9},
            },
        }
        charger_file = f"charger_{b}_1.csv"
        tables[charger_file] = _sample_charger(rng, days, ev_id, ev_capacity)
        capacity = float(np.round(rng.uniform(6.0, 13.5), 1))
        schema_buildings[f"Building_{b}"] = {
            "include": True,
            "energy_simulation": f"Building_{b}.csv",
            "weather": "weather.csv",
            "carbon_intensity": "carbon_intensity.csv",
            "pricing": "pricing.csv",
            "inactive_observations": [],
            "inactive_actions": [],
            "electrical_storage": {
                "type": "citylearn.energy_model.Battery",
                "autosize": False,
                "attributes": {"capacity": capacity, "nominal_power": round(capacity / 2, 2), "efficiency": 0.9,
                               "initial_soc": 0.2, "depth_of_discharge": 0.9},
            },
            "pv": {"type": "citylearn.energy_model.PV", "autosize": False,
                   "attributes": {"nominal_power": float(np.round(rng.uniform(2.5, 6.0), 1))}},
            "chargers": {
                f"charger_{b}_1": {
                    "type": "citylearn.electric_vehicle_charger.Charger",
                    "charger_simulation": charger_file,
                    "attributes": {"max_charging_power": 7.4, "min_charging_power": 1.4, "max_discharging_power": 7.4,
                                   "min_discharging_power": 0.0, "efficiency": 0.95},
                }
            },
        }

    return schema_buildings, ev_defs, tables


def _sample_tables(buildings: int, days: int, seed: int) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """The schema and CSV tables of a small synthetic district, deterministic for ``seed``:
    storage and smart EV charging both have something to gain."""
    rng = np.random.default_rng(seed)
    steps = days * 24
    tables, solar = _district_tables(rng, days)
    schema_buildings, ev_defs, building_tables = _building_tables(rng, days, buildings, solar)
    tables.update(building_tables)
    schema = {
        "random_seed": seed,
        "root_directory": None,
        "central_agent": False,
        "simulation_start_time_step": 0,
        "simulation_end_time_step": steps - 1,
        "episode_time_steps": steps,
        "seconds_per_time_step": 3600,
        "start_date": SAMPLE_START_DATE,
        "observations": _observations(),
        "actions": {"electrical_storage": {"active": True}, "electric_vehicle_storage": {"active": True}},
        "agent": {"type": "citylearn.agents.base.BaselineAgent", "attributes": {}},
        "reward_function": {"type": "citylearn.reward_function.RewardFunction", "attributes": {}},
        "electric_vehicles_def": ev_defs,
        "buildings": schema_buildings,
    }
    return schema, tables


def _sample_charger(rng: np.random.Generator, days: int, ev_id: str, capacity: float) -> pd.DataFrame:
    """One EV's charger CSV: home each night, away on the day's errands (07-09h to 17-20h)."""
    steps = days * 24
    state = np.full(steps, PLUGGED)
    for d in range(days):
        leave, back = d * 24 + int(rng.integers(7, 10)), d * 24 + int(rng.integers(17, 21))
        state[leave:back] = AWAY
        state[back - 1] = ARRIVING
    rows = {column: np.full(steps, -1.0) for column in CHARGER_COLUMNS}
    rows["electric_vehicle_charger_state"] = state
    rows["electric_vehicle_id"] = np.where(state == PLUGGED, ev_id, "")
    rows["electric_vehicle_battery_capacity_khw"] = np.where(state == PLUGGED, capacity, -1.0)
    for column in ("current_soc", "electric_vehicle_required_soc_departure", "electric_vehicle_estimated_soc_arrival"):
        rows[column] = np.full(steps, -0.1)
    plugged = np.flatnonzero(state == PLUGGED)
    breaks = np.flatnonzero(np.diff(plugged) > 1)
    for first, last in zip(np.r_[plugged[0], plugged[breaks + 1]], np.r_[plugged[breaks], plugged[-1]]):
        arrival_soc = float(np.round(rng.uniform(35.0, 65.0), 1))  # %
        span = slice(first, last + 1)
        rows["current_soc"][span] = np.round(arrival_soc / 100.0 * capacity, 2)  # kWh
        rows["electric_vehicle_departure_time"][span] = np.arange(last + 1 - first, 0, -1)  # steps until departure
        rows["electric_vehicle_required_soc_departure"][span] = float(np.round(rng.uniform(70.0, 90.0), 1))
        if first > 0 and state[first - 1] == ARRIVING:
            rows["electric_vehicle_estimated_arrival_time"][first - 1] = 1
            rows["electric_vehicle_estimated_soc_arrival"][first - 1] = arrival_soc
    return pd.DataFrame(rows)


def sample_dataset(buildings: int = 5, days: int = 30, seed: int = 0) -> Dataset:
    """The built-in sample district, made in memory (see :func:`write_sample_dataset`)."""
    schema, tables = _sample_tables(buildings, days, seed)
    return _Parser(schema, tables.get, f"sample-{buildings}x{days}d-seed{seed}").parse()


def write_sample_dataset(path: Path, buildings: int = 5, days: int = 30, seed: int = 0) -> Path:
    """Write the built-in sample as a CityLearn dataset folder at ``path`` and return it.

    Loading the folder with :func:`load_dataset` simulates like
    ``sample_dataset(buildings, days, seed)`` (up to CSV float round-off).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    schema, tables = _sample_tables(buildings, days, seed)
    schema["root_directory"] = str(path)
    for file_name, frame in tables.items():
        frame.to_csv(path / file_name, index=False)
    (path / "schema.json").write_text(json.dumps(schema, indent=2))
    return path
