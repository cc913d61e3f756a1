"""Dataset builds from sites in the real OPEVA layout (observations, price forms, both
charging-session forms, EV flexibility), against the MongoDB-wire server."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from core.dataset_build import BUILDING_CSV_COLUMNS, BuildRequest, build
from core.dataset_ev import CHARGER_CSV_COLUMNS
from core.datasets import DatasetError

DAY = datetime(2025, 1, 6, tzinfo=timezone.utc)  # a Monday; Lisbon is UTC+0 in winter
CHARGER = "charger_B1_1"


def _doc(q: int) -> dict:
    """Building B1, 15-minute documents whose hourly aggregates are known by hand:
    load 0.1..0.4 -> 1.0 kWh per hour, PV 0.5 kWh per quarter in hours 10-13, indoor
    20..23 -> 21.5. Measurements under ``observations`` (which wins over the flat copy)."""
    ts = DAY + timedelta(minutes=15 * q)
    doc = {"timestamp": ts, "non_shiftable_load": 99.0,
           "observations": {"non_shiftable_load": 0.1 * (q % 4 + 1), "solar_generation": 0.5 if 10 <= ts.hour < 14 else 0.0,
                            "indoor_dry_bulb_temperature": 20 + q % 4, "outdoor_dry_bulb_temperature": 10.0, "carbon_intensity": 0.2},
           "energy_tariffs": {"tou": {"energy_price": {"values": [0.1 if ts.hour < 8 else 0.3, 0.3]}}}}
    flex = {"estimated_time_at_arrival": "2025-01-06T18:00:00Z", "estimated_time_at_departure": "2025-01-06T22:00:00Z",
            "estimated_soc_at_arrival": 0.3, "estimated_soc_at_departure": 90, "charger": CHARGER, "mode": "flexible"}
    if 16 <= ts.hour < 18:  # on the way: announced by its flexibility estimates
        doc["electric_vehicles"] = {"EV_A": {"SoC": 0.35, "flexibility": flex}}
    if 18 <= ts.hour < 22:  # plugged in (keyed session form)
        doc["charging_sessions"] = {CHARGER: {"power": 7.4, "electric_vehicle": "EV_A"}}
        doc["electric_vehicles"] = {"EV_A": {"SoC": 0.3 + 0.1 * (ts.hour - 18), "flexibility": flex}}
    return doc


def fill_site(mongo, site: str) -> None:
    db = mongo[site]
    db.building_B1.insert_many([_doc(q) for q in range(96)])
    # B2: flat fields, energy_price as a number, sessions as a list without estimates, collection found by prefix
    db["building_B2_meter"].insert_many([
        {"timestamp": DAY + timedelta(minutes=15 * q), "non_shiftable_load": 0.5, "energy_price": 0.2,
         **({"charging_sessions": [{"charger_id": "c2", "power": 3.0, "user_id": "EV_B", "soc": 40}]} if 52 <= q < 60 else {})}
        for q in range(48, 96)])
    pv = {"type": "citylearn.energy_model.PV", "autosize": False, "autosize_attributes": {}, "attributes": {"nominal_power": 4.0}}
    battery = {"type": "citylearn.energy_model.Battery", "autosize": False, "autosize_attributes": {}, "attributes": {"capacity": 10.0, "nominal_power": 5.0, "custom": [1, 2]}}
    schema = {"electric_vehicles_def": {}, "evs": {"EV_A": {"battery_capacity": 60.0, "charging_power": 11.0}},
              "buildings": {"B1": {"type": "citylearn.building.Building", "include": True, "pv": pv, "electrical_storage": battery,
                                   "chargers": {CHARGER: {"type": "citylearn.electric_vehicle_charger.Charger", "attributes": {"nominal_power": 7.4}}}},
                            "B2": {"include": True, "chargers": {"c2": {"attributes": {"nominal_power": 3.7}}}},
                            "B3": {"include": True}}}
    db.schema.insert_one({"_id": "schema", "schema": schema})


@pytest.fixture
def site(mongo):
    name = f"site_{uuid.uuid4().hex[:8]}"
    fill_site(mongo, name)
    return name


def test_build_reads_the_real_layout(mongo, site, storage):
    meta = build(mongo, storage, BuildRequest(name=f"ds-{site}", site_id=site, period=60), smoke=False)
    folder = storage.dataset_dir(f"ds-{site}")
    assert meta["from"] == (DAY + timedelta(hours=12)).isoformat() and meta["time_steps"] == 12  # where B1 and B2 overlap
    assert any("B3 skipped" in w for w in meta["warnings"])
    b1 = pd.read_csv(folder / "Building_1.csv")
    assert list(b1.columns) == BUILDING_CSV_COLUMNS
    assert b1["non_shiftable_load"].tolist() == pytest.approx([1.0] * 12)  # observations win over the flat 99
    assert b1["indoor_dry_bulb_temperature"].tolist() == pytest.approx([21.5] * 12)
    assert b1["hour"].tolist() == list(range(13, 25)) and set(b1["minutes"]) == {0} and set(b1["day_type"]) == {1}
    assert b1["solar_generation"].tolist() == pytest.approx([500.0, 500.0] + [0.0] * 10)  # 2 kWh/h on 4 kW -> W per kW
    assert b1["indoor_relative_humidity"].tolist() == [50.0] * 12
    assert pd.read_csv(folder / "Building_2.csv")["non_shiftable_load"].tolist() == pytest.approx([2.0] * 12)
    pricing = pd.read_csv(folder / "pricing.csv")
    assert list(pricing.columns) == ["electricity_pricing"] + [f"electricity_pricing_predicted_{k}" for k in (1, 2, 3)]
    assert pricing["electricity_pricing"].tolist() == pytest.approx([0.25] * 12)  # tariff 0.3 (B1) and number 0.2 (B2), averaged
    weather = pd.read_csv(folder / "weather.csv")
    base = ["outdoor_dry_bulb_temperature", "outdoor_relative_humidity", "diffuse_solar_irradiance", "direct_solar_irradiance"]
    assert list(weather.columns) == base + [f"{c}_predicted_{k}" for c in base for k in (1, 2, 3)]
    assert weather["outdoor_dry_bulb_temperature"].tolist() == [10.0] * 12
    assert list(pd.read_csv(folder / "carbon_intensity.csv").columns) == ["carbon_intensity"]

    charger = pd.read_csv(folder / "charger_1_1.csv")
    assert list(charger.columns) == CHARGER_CSV_COLUMNS
    state = charger["electric_vehicle_charger_state"].tolist()
    assert state[4:6] == [2, 2] and state[6:10] == [1, 1, 1, 1] and state[10:] == [3, 3]  # 16-17 h arriving, 18-21 h plugged
    assert charger["electric_vehicle_estimated_arrival_time"].tolist()[4:6] == [2, 1]  # from the EV's estimate (upstream: empty)
    assert charger["electric_vehicle_estimated_soc_arrival"].tolist()[4] == 30.0  # 0.3 -> %
    assert charger["electric_vehicle_departure_time"].tolist()[6:10] == [4, 3, 2, 1]
    assert charger["electric_vehicle_required_soc_departure"].tolist()[6] == 90.0
    c2 = pd.read_csv(folder / "charger_2_1.csv")  # no estimates: times from the plugged-in run
    assert c2["electric_vehicle_charger_state"].tolist()[:3] == [2, 1, 1] and c2["electric_vehicle_departure_time"].tolist()[1:3] == [2, 1]

    cl = json.loads((folder / "schema.json").read_text())
    assert cl["seconds_per_time_step"] == 3600 and cl["simulation_end_time_step"] == 11
    entry = cl["buildings"]["B1"]
    assert entry["electrical_storage"]["attributes"] == {"capacity": 10.0, "nominal_power": 5.0, "custom": [1, 2]}  # unchanged
    assert entry["type"] == "citylearn.building.Building" and entry["energy_simulation"] == "Building_1.csv"
    assert entry["chargers"][CHARGER]["charger_simulation"] == "charger_1_1.csv"
    assert cl["electric_vehicles_def"]["EV_A"]["battery"]["attributes"]["capacity"] == 60.0
    assert "EV_B" in cl["electric_vehicles_def"]
    assert meta["validation"]["static"]["passed"] and meta["validation"]["citylearn"]["status"] == "skipped"
    assert json.loads((folder / "dataset.json").read_text())["warnings"] == meta["warnings"]


def test_citylearn_configs_both_forms(mongo, site, storage):
    configs = {"selected_buildings": ["B1"], "defaults": {"indoor_relative_humidity": 40.0}, "building_overrides": {"B1": {"pv": {"autosize": True}}},
               "schema_overrides": {"central_agent": True}, "random_seed": 7, "episode_time_steps": 6, "reward_function": {"type": "x.Reward"}, "my_key": 1}
    meta = build(mongo, storage, BuildRequest(name=f"cfg-{site}", site_id=site, citylearn_configs=configs, period=30,
                                              from_ts="2025-01-06 00:00:00", until_ts="2025-01-06T02:00:00Z"), smoke=False)
    folder = storage.dataset_dir(f"cfg-{site}")
    cl = json.loads((folder / "schema.json").read_text())
    assert list(cl["buildings"]) == ["B1"] and cl["random_seed"] == 7 and cl["episode_time_steps"] == 6 and cl["central_agent"] is True
    assert cl["reward_function"] == {"type": "x.Reward"} and cl["my_key"] == 1 and any("my_key" in w for w in meta["warnings"])
    assert cl["buildings"]["B1"]["pv"]["autosize"] is True and cl["buildings"]["B1"]["pv"]["attributes"]["nominal_power"] == 4.0
    b1 = pd.read_csv(folder / "Building_1.csv")
    assert b1["non_shiftable_load"].tolist() == pytest.approx([0.3, 0.7, 0.3, 0.7]) and b1["minutes"].tolist() == [0, 30, 0, 30]
    assert b1["indoor_relative_humidity"].tolist() == [40.0] * 4


def test_build_refusals(mongo, site, storage, monkeypatch):
    def refused(match: str, **kw) -> None:
        with pytest.raises(DatasetError, match=match):
            build(mongo, storage, BuildRequest(name=f"x-{uuid.uuid4().hex[:6]}", site_id=site, **kw), smoke=False)

    refused("unknown building", citylearn_configs={"selected_buildings": ["B9"]})
    refused("2025-02-30", from_ts="2025-02-30 00:00:00", until_ts="2025-03-01 00:00:00")
    refused("no time range", from_ts="2025-01-07T00:00:00Z", until_ts="2025-01-06T00:00:00Z")
    refused("exceed the limit of 1000000 rows", period=1, from_ts="2020-01-01T00:00:00Z", until_ts="2025-01-01T00:00:00Z")
    with pytest.raises(ValueError, match=r"\.\."):
        build(mongo, storage, BuildRequest(name="../escape", site_id=site), smoke=False)
    assert not [p for p in storage.datasets_dir.iterdir() if p.name.startswith(".tmp-")]  # failed builds leave nothing


def test_post_dataset_answers_with_plan_warnings_and_errors(api, site):
    r = api.post("/dataset", json={"name": f"rest-{site}", "site_id": site, "description": "d", "from_ts": "2025-01-06 12:00:00",
                                   "until_ts": "2025-01-07 00:00:00", "citylearn_configs": {"random_seed": 1, "central_agent": False}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["message"] == "Dataset build submitted" and body["time_steps"] == 12 and body["status"] == "queued"
    assert any("B3 skipped" in w for w in body["warnings"]) and body["validation"]["status"] == "pending"
    cases = [
        ({"from_ts": "2025-02-30 00:00:00"}, 422, "2025-02-30"),
        ({"from_ts": "yesterday"}, 422, "from_ts"),
        ({"period": 1, "from_ts": "2000-01-01 00:00:00", "until_ts": "2025-01-01 00:00:00"}, 422, "rows"),
        ({"citylearn_configs": {"selected_buildings": ["B7"]}}, 422, "B7"),
        ({"citylearn_configs": {"random_seed": "abc"}}, 422, "random_seed"),
        ({"citylearn_configs": {"central_agent": "perhaps"}}, 422, "central_agent"),
        ({"site_id": "no_such_site"}, 404, "no_such_site"),
        ({"name": "../evil"}, 422, "name"),
        ({"target_host": "mars"}, 404, "mars"),
        ({"period": 0}, 422, "period"),
    ]
    for change, code, words in cases:
        r = api.post("/dataset", json={"name": f"e-{uuid.uuid4().hex[:6]}", "site_id": site, **change})
        assert r.status_code == code and words in r.json()["detail"], (change, r.status_code, r.text)
