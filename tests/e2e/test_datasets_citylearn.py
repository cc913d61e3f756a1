"""A dataset built from the seeded real-layout sites loads in CityLearn 2.5 and steps one
episode with the baseline agent (CityLearn runs in its own venv: core/dataset_check.py).

CI sets OPEVA_REQUIRE_CITYLEARN=1 (.ci/run installs CityLearn, cached), so there a missing
CityLearn fails this test instead of skipping it.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone

import pandas as pd
import pytest

from core.dataset_build import BUILDING_CSV_COLUMNS, BuildRequest, build
from core.dataset_check import citylearn_python
from tools.seed_site import seed_ev_site, seed_site

END = datetime(2026, 3, 30, tzinfo=timezone.utc)  # across the Lisbon DST change of 2026-03-29


@pytest.fixture(scope="module")
def citylearn() -> str:
    python = citylearn_python()
    if python is None:
        if os.environ.get("OPEVA_REQUIRE_CITYLEARN") == "1":
            pytest.fail("OPEVA_REQUIRE_CITYLEARN=1 but no CityLearn Python (install: .ci/install_citylearn.sh)")
        pytest.skip("CityLearn is not installed (bash .ci/install_citylearn.sh, or set OPEVA_CITYLEARN_PYTHON)")
    return python


@pytest.mark.parametrize("kind", ["living_lab", "ev_charging"])
def test_seeded_site_builds_and_loads_in_citylearn(mongo, storage, citylearn, kind):
    site = f"{kind}_{uuid.uuid4().hex[:6]}"
    if kind == "living_lab":
        seed_site(mongo, site=site, days=2, buildings=3, seed=5, end=END)
    else:
        seed_ev_site(mongo, site=site, days=2, seed=5, end=END)
    meta = build(mongo, storage, BuildRequest(name=f"cl-{site}", site_id=site, period=60), smoke=True)
    validation = meta["validation"]
    assert validation["static"]["passed"], validation["static"]
    assert validation["citylearn"]["status"] == "passed", validation["citylearn"]
    assert validation["citylearn"]["version"].startswith("2.5") and validation["citylearn"]["steps"] == meta["time_steps"] - 1
    assert validation["status"] == "passed"
    folder = storage.dataset_dir(f"cl-{site}")
    assert list(pd.read_csv(folder / "Building_1.csv").columns) == BUILDING_CSV_COLUMNS  # the 2026 header (minutes, seconds) loads
    assert set(pd.read_csv(folder / "Building_1.csv")["daylight_savings_status"]) == {0, 1}
    schema = json.loads((folder / "schema.json").read_text())
    chargers = [c for b in schema["buildings"].values() for c in (b.get("chargers") or {}).values()]
    assert chargers and validation["citylearn"]["electric_vehicles"] == len(schema["electric_vehicles_def"]) > 0
    frames = [pd.read_csv(folder / c["charger_simulation"]) for c in chargers]
    plugged = pd.concat([f[f["electric_vehicle_charger_state"] == 1] for f in frames])
    arriving = pd.concat([f[f["electric_vehicle_charger_state"] == 2] for f in frames])
    assert len(plugged) and plugged["electric_vehicle_departure_time"].ge(1).all()  # EV times filled
    assert len(arriving) and arriving["electric_vehicle_estimated_arrival_time"].ge(1).all()
    assert meta["ev_times"]["departure_estimated"] > 0 and meta["ev_times"]["arrival_estimated"] > 0


def test_citylearn_failure_is_reported_not_raised(mongo, storage, citylearn):
    site = f"broken_{uuid.uuid4().hex[:6]}"
    seed_ev_site(mongo, site=site, days=1, seed=2, end=END)
    overrides = {"i-charging_headquarters": {"type": "citylearn.building.NoSuchBuilding"}}
    meta = build(mongo, storage, BuildRequest(name=f"cl-{site}", site_id=site, citylearn_configs={"building_overrides": overrides}), smoke=True)
    assert meta["validation"]["static"]["passed"] and meta["validation"]["status"] == "failed"
    assert "NoSuchBuilding" in meta["validation"]["citylearn"]["detail"]
