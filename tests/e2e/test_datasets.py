"""MongoDB sites, schemas and CityLearn dataset builds, against the real MongoDB-wire
server, a real Prefect server and a real Docker worker."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from datetime import datetime, timedelta, timezone

import pandas as pd
import pymongo
import pytest

from core.site_spec import SiteSchema
from core.sites import REALTIME_CAP
from helpers import wait_for
from core.dataset_build import BuildRequest, DatasetBuildError, build, list_datasets

DAY = datetime(2025, 1, 6, tzinfo=timezone.utc)  # a Monday, no DST anywhere relevant


def schema(tz: str = "UTC") -> dict:
    return {
        "timezone": tz,
        "buildings": {
            "1": {
                "fields": {"non_shiftable_load": "load_kwh", "solar_generation": "pv_kwh", "indoor_dry_bulb_temperature": "temp"},
                "pv_nominal_power": 4.0,
                "battery": {"capacity": 10.0, "nominal_power": 5.0},
                "chargers": {"charger_1_1": {"collection": "charger_1_1"}},
            },
            "2": {"collection": "building_2_meter", "fields": {"non_shiftable_load": "kwh"}},
        },
        "pricing": {"collection": "pricing", "fields": {"electricity_pricing": "price"}},
    }


def fill_site(client: pymongo.MongoClient, site: str, tz: str = "UTC") -> None:
    """One day of 15-minute data whose hourly aggregates are known by hand:
    load 0.1+0.2+0.3+0.4 = 1.0 kWh per hour, PV 4 x 0.5 = 2.0 kWh in hours 10-13,
    temperature 20, 21, 22, 23 -> mean 21.5. Building 2 only from 12:00."""
    db = client[site]
    b1 = []
    for q in range(96):
        ts = DAY + timedelta(minutes=15 * q)
        b1.append({"timestamp": ts, "load_kwh": 0.1 * (q % 4 + 1), "pv_kwh": 0.5 if 10 <= ts.hour < 14 else 0.0, "temp": 20 + q % 4})
    db.building_1.insert_many(b1)
    db.building_2_meter.insert_many([{"timestamp": DAY + timedelta(minutes=15 * q), "kwh": 0.5} for q in range(48, 96)])
    db.pricing.insert_many([{"timestamp": DAY + timedelta(hours=h), "price": 0.1 if h < 8 else 0.3} for h in range(24)])
    db.charger_1_1.insert_one({"ev_id": "EV_A", "arrival": DAY + timedelta(hours=18), "departure": DAY + timedelta(hours=22), "required_soc": 90, "arrival_soc": 30})
    db.schema.insert_one({"schema": SiteSchema.model_validate(schema(tz)).model_dump(exclude_none=True)})


@pytest.fixture
def mongo(platform):
    with pymongo.MongoClient(platform.mongo_uri, tz_aware=True) as client:
        yield client


@pytest.fixture
def site(mongo):
    name = f"site_{uuid.uuid4().hex[:8]}"
    fill_site(mongo, name)
    return name


def test_sites_list_excludes_system_databases(api, mongo, site):
    mongo.admin.probe.insert_one({"x": 1})
    sites = api.get("/sites").json()["sites"]
    assert site in sites
    assert not {"admin", "local", "config"} & set(sites)


def test_real_time_window_is_json_safe_and_capped(api, mongo):
    name = f"rt_{uuid.uuid4().hex[:8]}"
    now = datetime.now(timezone.utc)
    mongo[name].meter.insert_many([{"timestamp": now - timedelta(minutes=5), "v": 1}, {"timestamp": now - timedelta(days=2), "v": 2}])
    mongo[name].busy.insert_many([{"timestamp": now - timedelta(seconds=i), "v": i} for i in range(REALTIME_CAP + 5)])
    recent = api.get(f"/real-time-data/{name}", params={"minutes": 60}).json()
    assert [d["v"] for d in recent["collections"]["meter"]] == [1]
    doc = recent["collections"]["meter"][0]
    assert isinstance(doc["_id"], str) and datetime.fromisoformat(doc["timestamp"]).tzinfo is not None
    assert recent["truncated"] == ["busy"] and len(recent["collections"]["busy"]) == REALTIME_CAP
    assert recent["collections"]["busy"][0]["v"] == 0  # newest first
    everything = api.get(f"/real-time-data/{name}").json()
    assert sorted(d["v"] for d in everything["collections"]["meter"]) == [1, 2]
    assert api.get("/real-time-data/no_such_site").status_code == 404
    assert api.get(f"/real-time-data/{name}", params={"minutes": 0}).status_code == 422


def test_schema_create_update_get_and_errors(api):
    name = f"new_{uuid.uuid4().hex[:8]}"
    body = {"site": name, "schema": schema()}
    assert api.post("/schema/create", json=body).status_code == 200
    again = api.post("/schema/create", json=body)
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    got = api.get(f"/schema/{name}").json()["schema"]
    assert got["buildings"]["1"]["pv_nominal_power"] == 4.0

    changed = schema("Europe/Lisbon")
    changed["buildings"]["1"]["pv_nominal_power"] = 6.5
    assert api.put(f"/schema/update/{name}", json={"schema": changed}).status_code == 200
    got = api.get(f"/schema/{name}").json()["schema"]
    assert got["timezone"] == "Europe/Lisbon" and got["buildings"]["1"]["pv_nominal_power"] == 6.5

    assert api.put("/schema/update/missing_site", json={"schema": schema()}).status_code == 404
    assert api.get("/schema/missing_site").status_code == 404
    bad_column = schema()
    bad_column["buildings"]["1"]["fields"]["watts"] = "w"
    r = api.post("/schema/create", json={"site": f"x_{uuid.uuid4().hex[:6]}", "schema": bad_column})
    assert r.status_code == 422 and "watts" in r.json()["detail"]
    r = api.post("/schema/create", json={"site": "y", "schema": {**schema(), "timezone": "Mars/Olympus"}})
    assert r.status_code == 422 and "Mars/Olympus" in r.json()["detail"]
    r = api.post("/schema/create", json={"site": "y", "schema": {"buildings": {}}})
    assert r.status_code == 422
    r = api.post("/schema/create", json={"site": "../admin", "schema": schema()})
    assert r.status_code == 422 and "site" in r.json()["detail"]


def test_build_matches_documents(mongo, site, storage):
    meta = build(mongo, storage, BuildRequest(name=f"ds-{site}", site_id=site, period=60))
    folder = storage.dataset_dir(f"ds-{site}")
    # default range: where both buildings have data, 12:00 to the end of the day
    assert meta["from"] == (DAY + timedelta(hours=12)).isoformat() and meta["time_steps"] == 12
    b1 = pd.read_csv(folder / "Building_1.csv")
    assert list(b1.columns) == ["month", "hour", "day_type", "daylight_savings_status", "indoor_dry_bulb_temperature",
                                "average_unmet_cooling_setpoint_difference", "indoor_relative_humidity", "non_shiftable_load",
                                "dhw_demand", "cooling_demand", "heating_demand", "solar_generation"]
    assert b1["non_shiftable_load"].tolist() == pytest.approx([1.0] * 12)
    assert b1["indoor_dry_bulb_temperature"].tolist() == pytest.approx([21.5] * 12)
    assert b1["hour"].tolist() == list(range(12, 24)) and set(b1["day_type"]) == {1} and set(b1["month"]) == {1}
    # PV 2.0 kWh in hours 12 and 13 on 4 kW -> 500 W/kW
    assert b1["solar_generation"].tolist() == pytest.approx([500.0, 500.0] + [0.0] * 10)
    assert b1["indoor_relative_humidity"].tolist() == [50.0] * 12  # the site lacks it: default
    b2 = pd.read_csv(folder / "Building_2.csv")
    assert b2["non_shiftable_load"].tolist() == pytest.approx([2.0] * 12)
    assert pd.read_csv(folder / "pricing.csv")["electricity_pricing"].tolist() == pytest.approx([0.3] * 12)
    assert pd.read_csv(folder / "weather.csv")["outdoor_dry_bulb_temperature"].tolist() == [20.0] * 12

    charger = pd.read_csv(folder / "charger_1_1.csv")
    assert list(charger.columns)[2] == "electric_vehicle_battery_capacity_khw"
    states = charger["electric_vehicle_charger_state"].tolist()
    assert states[5] == 2 and states[6:10] == [1, 1, 1, 1] and states[10] == 3  # 17:00 arriving, 18-21 plugged in
    assert charger["electric_vehicle_departure_time"].tolist()[6:10] == [4, 3, 2, 1]
    assert charger["current_soc"][6] == pytest.approx(15.0)  # 30 % of 50 kWh

    cl = json.loads((folder / "schema.json").read_text())
    assert cl["seconds_per_time_step"] == 3600 and cl["simulation_end_time_step"] == 11
    assert cl["buildings"]["Building_1"]["pv"]["attributes"]["nominal_power"] == 4.0
    assert cl["buildings"]["Building_1"]["electrical_storage"]["attributes"]["capacity"] == 10.0
    assert cl["buildings"]["Building_1"]["chargers"]["charger_1_1"]["charger_simulation"] == "charger_1_1.csv"
    assert "EV_A" in cl["electric_vehicles_def"]


def test_build_resamples_and_uses_the_site_time_zone(mongo, storage):
    name = f"tz_{uuid.uuid4().hex[:8]}"
    fill_site(mongo, name, tz="Asia/Tokyo")
    build(mongo, storage, BuildRequest(name=f"ds-{name}", site_id=name, period=30, from_ts="2025-01-06T00:00:00Z",
                                       until_ts="2025-01-06T02:00:00", citylearn_configs={"selected_buildings": ["1"]}))
    b1 = pd.read_csv(storage.dataset_dir(f"ds-{name}") / "Building_1.csv")
    assert b1["non_shiftable_load"].tolist() == pytest.approx([0.3, 0.7, 0.3, 0.7])  # 0.1+0.2, 0.3+0.4 per 30 min
    assert b1["hour"].tolist() == [9, 9, 10, 10]  # UTC midnight is 09:00 in Tokyo


def test_build_refusals(mongo, site, storage):
    with pytest.raises(DatasetBuildError, match="no data for building 1"):
        build(mongo, storage, BuildRequest(name=f"empty-{site}", site_id=site, from_ts="2030-01-01T00:00:00Z", until_ts="2030-01-02T00:00:00Z"))
    with pytest.raises(DatasetBuildError, match="unknown building"):
        build(mongo, storage, BuildRequest(name=f"x-{site}", site_id=site, citylearn_configs={"selected_buildings": ["9"]}))
    with pytest.raises(ValueError, match=r"\.\."):
        build(mongo, storage, BuildRequest(name="../escape", site_id=site))
    assert not [p for p in storage.datasets_dir.iterdir() if p.name.startswith(".tmp-")]  # failed builds leave nothing


def test_dataset_endpoints_over_rest(api, site, storage, needs_docker):
    r = api.post("/dataset", json={"name": f"rest-{site}", "site_id": site, "description": "test build", "period": 60,
                                   "citylearn_configs": {"selected_buildings": [1, 2]}})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    status = wait_for(lambda: (s := api.get(f"/status/{job_id}").json()["status"]) in ("finished", "failed") and s, 180, what="the build")
    assert status == "finished", api.get(f"/status/{job_id}").json()
    assert api.get(f"/progress/{job_id}").json()["percent"] == 100
    kinds = {j["job_id"]: j["kind"] for j in api.get("/jobs").json()}  # a bare array (upstream contract)
    assert kinds[job_id] == "dataset"

    (storage.datasets_dir / ".tmp-halfbuilt-123").mkdir()
    listed = {d["name"]: d for d in api.get("/datasets").json()["datasets"]}
    assert f"rest-{site}" in listed and not any(n.startswith(".tmp") for n in listed)
    entry = listed[f"rest-{site}"]
    assert entry["site"] == site and entry["description"] == "test build" and entry["size"] > 0 and entry["from"]

    again = api.post("/dataset", json={"name": f"rest-{site}", "site_id": site})
    assert again.status_code == 409

    z = api.get(f"/dataset/download/rest-{site}")
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(z.content)).namelist()
    assert f"rest-{site}/schema.json" in names and f"rest-{site}/Building_2.csv" in names

    dates = api.get(f"/dataset/dates-available/{site}").json()
    assert dates["collections"]["building_1"]["first"].startswith("2025-01-06T00:00:00")
    assert dates["collections"]["building_2_meter"]["first"].startswith("2025-01-06T12:00:00")
    assert dates["common_range"]["from"].startswith("2025-01-06T12:00:00")

    assert api.delete(f"/dataset/rest-{site}").status_code == 200
    assert api.get(f"/dataset/download/rest-{site}").status_code == 404
    assert api.delete(f"/dataset/rest-{site}").status_code == 404


def test_reference_simulator_runs_on_a_built_dataset(api, mongo, site, storage, needs_docker):
    build(mongo, storage, BuildRequest(name=f"sim-{site}", site_id=site, from_ts="2025-01-06T00:00:00Z", until_ts="2025-01-07T00:00:00Z",
                                       citylearn_configs={"selected_buildings": ["1"]}))
    config = {"experiment": {"name": "on-built", "run_name": "r"}, "dataset": f"sim-{site}", "algorithm": {"name": "rule_based"}, "episodes": 1}
    r = api.post("/run-simulation", json={"config": config})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    status = wait_for(lambda: (s := api.get(f"/status/{job_id}").json()["status"]) in ("finished", "failed") and s, 180, what="the job")
    assert status == "finished", api.get(f"/logs/{job_id}", params={"follow": False}).text[-2000:]
    result = api.get(f"/result/{job_id}").json()
    assert result["status"] == "completed" and "electricity_cost" in result["metrics"]
    missing = api.post("/run-simulation", json={"config": {**config, "dataset": "no-such-dataset"}})
    assert missing.status_code == 422 and "dataset" in missing.json()["detail"]


def test_build_of_empty_range_fails_with_clear_message(api, site, needs_docker):
    r = api.post("/dataset", json={"name": f"empty-{site}", "site_id": site, "from_ts": "2030-01-01T00:00:00Z", "until_ts": "2030-01-02T00:00:00Z"})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    status = wait_for(lambda: (s := api.get(f"/status/{job_id}").json()) and s["status"] in ("finished", "failed") and s, 180, what="the build")
    assert status["status"] == "failed"
    assert "no data for building" in status["prefect_state"]["message"] and "2030-01-01" in status["prefect_state"]["message"]


@pytest.mark.parametrize(
    "body, code, words",
    [
        ({"name": "../evil", "site_id": "s"}, 422, "name"),
        ({"name": "a/b", "site_id": "s"}, 422, "name"),
        ({"name": "ok", "site_id": "no_such_site"}, 404, "no_such_site"),
        ({"name": "ok", "site_id": "s", "period": 0}, 422, "period"),
        ({"name": "ok", "site_id": "s", "target_host": "mars"}, 404, "mars"),
    ],
)
def test_dataset_request_errors(api, body, code, words):
    r = api.post("/dataset", json=body)
    assert r.status_code == code, r.text
    assert words in r.json()["detail"]


def test_dataset_request_checks_site_buildings_and_timestamps(api, site):
    r = api.post("/dataset", json={"name": "ok", "site_id": site, "citylearn_configs": {"selected_buildings": ["7"]}})
    assert r.status_code == 422 and "7" in r.json()["detail"]
    r = api.post("/dataset", json={"name": "ok", "site_id": site, "from_ts": "yesterday"})
    assert r.status_code == 422 and "from_ts" in r.json()["detail"]
    for path in ("/dataset/download/..%2F..%2Fetc", "/dataset/download/.hidden"):
        assert 400 <= api.get(path).status_code < 500
    assert api.delete("/dataset/..").status_code in (400, 404, 405)


def test_list_datasets_skips_half_built(storage):
    (storage.datasets_dir / ".tmp-partial-xyz").mkdir(parents=True, exist_ok=True)
    assert all(not d["name"].startswith(".") for d in list_datasets(storage))


def test_sample_site_seeds_once_and_builds(mongo, storage):
    """What `make seed` writes: a site whose schema validates and that builds at once."""
    from tools.seed_site import seed_site

    name = f"sample_{uuid.uuid4().hex[:6]}"
    end = datetime(2026, 3, 30, tzinfo=timezone.utc)  # across the Lisbon DST change of 2026-03-29
    summary = seed_site(mongo, site=name, days=3, buildings=2, seed=3, end=end)
    assert summary["seeded"] and summary["collections"]["building_1"] == 3 * 96
    assert seed_site(mongo, site=name, days=3, buildings=2, seed=3, end=end)["seeded"] is False  # idempotent
    SiteSchema.model_validate(mongo[name].schema.find_one()["schema"])
    meta = build(mongo, storage, BuildRequest(name=f"ds-{name}", site_id=name))
    assert meta["time_steps"] == 72
    b1 = pd.read_csv(storage.dataset_dir(f"ds-{name}") / "Building_1.csv")
    assert b1["non_shiftable_load"].gt(0).all() and b1["solar_generation"].max() > 0
    assert set(b1["daylight_savings_status"]) == {0, 1}  # Europe/Lisbon switches on 2026-03-29
