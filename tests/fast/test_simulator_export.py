"""The reference simulator exports simulation data as OPEVA's does (simulator/export.py):
file names and columns the UI and the maintainers' scripts read, and a KPI matrix whose
district values agree with result.json's metrics."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import yaml

from simulator.runner import main


def _run(tmp_path: Path, config: dict) -> tuple[dict, Path]:
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    return result, tmp_path / "out" / "simulation_data" / result["simulation_data_session_default"]


def test_a_finished_run_exports_time_series_and_kpis(tmp_path):
    config = {"experiment": {"name": "x", "run_name": "y"}, "algorithm": "rule_based", "simulation": {"buildings": 2, "days": 2}}
    result, session = _run(tmp_path, config)
    names = sorted(p.name for p in session.iterdir())
    assert result["simulation_data_available"] is True and result["kpi_source"] == "simulation_data_csv"
    assert sorted(result["simulation_data_files"]) == names
    assert {"exported_kpis.csv", "exported_data_community_ep0.csv", "exported_data_pricing_ep0.csv",
            "exported_data_building_1_ep0.csv", "exported_data_building_2_battery_ep0.csv"} <= set(names)
    assert all(re.fullmatch(r"exported_(kpis|data_[a-z0-9_.-]+_ep\d+)\.csv", n) for n in names), names
    with (session / "exported_data_community_ep0.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 48 and rows[0]["timestamp"].endswith("T00:00:00") and "Net Electricity Consumption-kWh" in rows[0] and "Price-$" in rows[0]
    with (session / "exported_kpis.csv").open() as f:
        kpis = {r["KPI"]: r for r in csv.DictReader(f)}
    # The collector reads the district column of these rows; they agree with result.json.
    assert float(kpis["district_cost_total_control_eur"]["District"]) == round(result["metrics"]["electricity_cost"], 3)
    assert float(kpis["district_cost_total_business_as_usual_eur"]["District"]) == round(result["baseline"]["electricity_cost"], 3)
    assert float(kpis["district_energy_grid_total_import_control_kwh"]["District"]) == round(result["metrics"]["grid_import"], 3)
    assert kpis["district_cost_ratio_to_business_as_usual_total_ratio"]["Building_1"] == ""  # no per-building value: blank, as CityLearn


def test_each_run_is_its_own_session_and_the_episode_number_counts_training(tmp_path):
    config = {"experiment": {"name": "x", "run_name": "y"}, "algorithm": "q_learning", "episodes": 3, "simulation": {"buildings": 1, "days": 1}}
    result, session = _run(tmp_path, config)
    assert (session / "exported_data_community_ep3.csv").is_file()
    assert (session / "exported_data_building_1_battery_ep3.csv").read_text().startswith("timestamp,Battery Soc-%,Battery (Dis)Charge-kWh\n")
