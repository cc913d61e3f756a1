"""Simulation data as OPEVA's simulator exports it: ``results/simulation_data/<session>/``.

Why these names and columns: the OPEVA UI's Timeseries, KPI and Compare pages and the
maintainers' scripts (Algorithms ``scripts/collect_remote_results.py`` and the audit
scripts) read what CityLearn's exporter writes, by file name and column name:

- ``exported_data_community_ep<k>.csv``: ``timestamp``, ``Net Electricity Consumption-kWh``,
  ``Self Consumption-kWh``, ``Stored energy by community- kWh``, ``Total Solar Generation-kWh``,
  ``CO2-kg_co2``, ``Price-$`` (district sums per step);
- ``exported_data_<building>_ep<k>.csv``: ``timestamp``, ``Net Electricity Consumption-kWh``,
  ``Non-shiftable Load-kWh``, ``Non-shiftable Load Electricity Consumption-kWh``,
  ``Energy Production from PV-kWh``;
- ``exported_data_<building>_battery_ep<k>.csv``: ``timestamp``, ``Battery Soc-%``,
  ``Battery (Dis)Charge-kWh``;
- ``exported_data_<building>_charger_<n>_<j>_ep<k>.csv`` (building number, charger number in it): ``timestamp``, ``Charger Consumption-kWh``,
  ``Charging Action-kWh``, ``Is EV Connected``, ``EV SOC-%``;
- ``exported_data_pricing_ep<k>.csv``: ``timestamp``, ``electricity_pricing-$/kWh``;
- ``exported_kpis.csv``: one row per KPI (column ``KPI``), one column per building and
  ``District`` (CityLearn's pivot), with the district KPI names the collector looks up.

Only what this simulator really computes is exported: a KPI it has no model for (community
market settlement, phase violations) is absent, not zero. Episode ``k`` is the evaluated
episode (the number of training episodes before it, 0-based as CityLearn counts).
"""

from __future__ import annotations

import csv
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from simulator.dataset import Dataset
from simulator.environment import EpisodeRecord

KPI_FILE = "exported_kpis.csv"
KPI_SOURCE = "simulation_data_csv"  # upstream's value: KPIs come from the exported CSV
DEFAULT_START = "2024-01-01T00:00:00"


def session_name(now: datetime | None = None) -> str:
    """A new session folder name (UTC time of the export), sortable."""
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


def _slug(name: str) -> str:
    """A building name as CityLearn lower-cases it into file names, kept to safe characters."""
    return re.sub(r"[^a-z0-9_.-]+", "_", name.lower()).strip("_.") or "building"


def _timestamps(data: Dataset, steps: int) -> list[str]:
    start = datetime.fromisoformat(data.first_timestamp or DEFAULT_START)
    step = timedelta(hours=data.hours_per_step)
    return [(start + k * step).isoformat() for k in range(steps)]


def _write(path: Path, columns: dict[str, Any], stamps: list[str]) -> None:
    names = list(columns)
    arrays = [np.asarray(columns[n]) for n in names]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["timestamp", *names])
        for k, stamp in enumerate(stamps):
            writer.writerow([stamp, *(_cell(a[k]) for a in arrays)])


def _cell(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    return round(float(value), 6)


def _series(folder: Path, data: Dataset, record: EpisodeRecord, episode: int) -> list[str]:
    steps = len(record.net)
    stamps = _timestamps(data, steps)
    n = data.buildings
    flows = record.flows if record.flows is not None else np.zeros((steps, n + data.chargers.count))
    stored = record.battery_energy if record.battery_energy is not None else np.zeros((steps, n))
    load, pv, price, carbon = data.load[:steps], data.pv[:steps], data.price[:steps], data.carbon[:steps]
    net = record.net
    imports = np.maximum(net, 0.0)
    written = []

    def out(name: str, columns: dict[str, Any]) -> None:
        _write(folder / name, columns, stamps)
        written.append(name)

    out(f"exported_data_community_ep{episode}.csv", {
        "Net Electricity Consumption-kWh": net.sum(axis=1),
        "Self Consumption-kWh": np.minimum(pv, load + np.maximum(flows[:, :n], 0.0)).sum(axis=1),
        "Stored energy by community- kWh": stored.sum(axis=1),
        "Total Solar Generation-kWh": pv.sum(axis=1),
        "CO2-kg_co2": (imports * carbon).sum(axis=1),
        "Price-$": (imports * price).sum(axis=1),
    })
    capacity = data.batteries.capacity
    names = [_slug(b) for b in data.building_names]
    for i, b in enumerate(names):
        out(f"exported_data_{b}_ep{episode}.csv", {
            "Net Electricity Consumption-kWh": net[:, i],
            "Non-shiftable Load-kWh": load[:, i],
            "Non-shiftable Load Electricity Consumption-kWh": load[:, i],
            "Energy Production from PV-kWh": pv[:, i],
        })
        soc = stored[:, i] / capacity[i] * 100 if capacity[i] > 0 else np.zeros(steps)
        out(f"exported_data_{b}_battery_ep{episode}.csv", {"Battery Soc-%": soc, "Battery (Dis)Charge-kWh": flows[:, i]})
    ev = data.chargers
    ev_energy = record.ev_energy if record.ev_energy is not None else np.zeros((steps, ev.count))
    ordinal: dict[int, int] = {}
    for j in range(ev.count):
        i = int(ev.building[j])
        ordinal[i] = ordinal.get(i, 0) + 1
        b = names[i]
        cap = ev.capacity[:steps, j]
        soc = np.divide(ev_energy[:, j], cap, out=np.zeros(steps), where=cap > 0) * 100
        out(f"exported_data_{b}_charger_{i + 1}_{ordinal[i]}_ep{episode}.csv", {  # CityLearn's charger ids: charger_<building>_<k>
            "Charger Consumption-kWh": np.maximum(flows[:, n + j], 0.0), "Charging Action-kWh": flows[:, n + j],
            "Is EV Connected": ev.plugged[:steps, j], "EV SOC-%": soc,
        })
    out(f"exported_data_pricing_ep{episode}.csv", {"electricity_pricing-$/kWh": price[:, 0] if n else np.zeros(steps)})
    return written


def _kpi_rows(data: Dataset, record: EpisodeRecord, baseline: EpisodeRecord) -> dict[str, tuple[np.ndarray, float]]:
    """KPI name -> (per building values, District value)."""
    steps = len(record.net)
    price, pv, carbon = data.price[:steps], data.pv[:steps], data.carbon[:steps]

    def per_building(rec: EpisodeRecord) -> dict[str, np.ndarray]:
        imports, exports = np.maximum(rec.net, 0.0), np.maximum(-rec.net, 0.0)
        flows = rec.flows[:, : data.buildings] if rec.flows is not None else np.zeros_like(rec.net)
        return {"cost": (imports * price).sum(0), "import": imports.sum(0), "export": exports.sum(0), "net": rec.net.sum(0),
                "emissions": (imports * carbon).sum(0), "throughput": np.abs(flows).sum(0), "pv_export": np.minimum(exports, pv).sum(0)}

    ctl, bau = per_building(record), per_building(baseline)
    district_peak = float(np.maximum(record.net.sum(1), 0).max(initial=0.0))
    bau_peak = float(np.maximum(baseline.net.sum(1), 0).max(initial=0.0))
    generation = pv.sum(0)

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    rows: dict[str, tuple[np.ndarray, float]] = {}
    nan = np.full(data.buildings, np.nan)
    rows["district_cost_total_control_eur"] = (ctl["cost"], ctl["cost"].sum())
    rows["district_cost_total_business_as_usual_eur"] = (bau["cost"], bau["cost"].sum())
    rows["district_cost_total_delta_to_business_as_usual_eur"] = (ctl["cost"] - bau["cost"], ctl["cost"].sum() - bau["cost"].sum())
    rows["district_cost_ratio_to_business_as_usual_total_ratio"] = (nan, ratio(ctl["cost"].sum(), bau["cost"].sum()))
    rows["district_energy_grid_total_import_control_kwh"] = (ctl["import"], ctl["import"].sum())
    rows["district_energy_grid_total_export_control_kwh"] = (ctl["export"], ctl["export"].sum())
    rows["district_energy_grid_total_net_exchange_control_kwh"] = (ctl["net"], ctl["net"].sum())
    rows["district_energy_grid_total_net_exchange_delta_to_business_as_usual_kwh"] = (ctl["net"] - bau["net"], ctl["net"].sum() - bau["net"].sum())
    rows["district_energy_grid_shape_quality_peak_all_time_average_to_business_as_usual_ratio"] = (nan, ratio(district_peak, bau_peak))
    rows["district_emissions_ratio_to_business_as_usual_total_ratio"] = (nan, ratio(ctl["emissions"].sum(), bau["emissions"].sum()))
    rows["district_solar_self_consumption_total_generation_kwh"] = (generation, generation.sum())
    rows["district_solar_self_consumption_total_export_kwh"] = (ctl["pv_export"], ctl["pv_export"].sum())
    rows["district_solar_self_consumption_ratio_self_consumption_ratio"] = (
        np.array([1 - ratio(e, g) if g else np.nan for e, g in zip(ctl["pv_export"], generation)]),
        1 - ratio(ctl["pv_export"].sum(), generation.sum()) if generation.sum() else float("nan"))
    rows["district_battery_total_throughput_kwh"] = (ctl["throughput"], ctl["throughput"].sum())
    if data.chargers.count:
        rows["district_ev_total_charged_kwh"] = (nan, record.ev_charged)
        rows["district_ev_total_unmet_departure_kwh"] = (nan, record.ev_unmet)
    return rows


def _write_kpis(path: Path, data: Dataset, record: EpisodeRecord, baseline: EpisodeRecord) -> None:
    """CityLearn's layout: ``KPI`` then one column per building then ``District``, 3 decimals, blanks for none."""
    def fmt(v: float) -> str:
        return "" if v is None or not np.isfinite(v) else f"{round(float(v), 3):g}"

    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["KPI", *data.building_names, "District"])
        for name, (values, district) in _kpi_rows(data, record, baseline).items():
            writer.writerow([name, *(fmt(v) for v in values), fmt(district)])


def export_session(results_dir: Path, data: Dataset, record: EpisodeRecord, baseline: EpisodeRecord, episode: int,
                   session: str | None = None) -> dict[str, Any]:
    """Write one session under ``results_dir/simulation_data/``; returns the keys result.json carries
    about it (``simulation_data_session_default`` is what the collector asks the index for)."""
    name = session or session_name()
    folder = results_dir / "simulation_data" / name
    folder.mkdir(parents=True, exist_ok=True)
    files = _series(folder, data, record, episode)
    _write_kpis(folder / KPI_FILE, data, record, baseline)
    return {"simulation_data_available": True, "simulation_data_dir": "results/simulation_data", "simulation_data_session_default": name,
            "simulation_data_files": [*files, KPI_FILE], "kpi_source": KPI_SOURCE}
