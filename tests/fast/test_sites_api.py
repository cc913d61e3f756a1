"""Site schemas in the real OPEVA format, real-time and historical data, over HTTP against
the MongoDB-wire server (secantus)."""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from core.site_spec import EXAMPLE

T0 = datetime(2025, 3, 3, tzinfo=timezone.utc)

REAL_SCHEMA = {
    "electric_vehicles_def": {},
    "evs": {"EV_Zoe": {"battery_capacity": 52.0, "charging_power": 7.4}},
    "random_seed": 3,
    "buildings": {
        "R-H-01": {
            "type": "citylearn.building.LSTMDynamicsBuilding", "include": True, "energy_simulation": "R-H-01.csv",
            "weather": "weather.csv", "carbon_intensity": "carbon_intensity.csv", "pricing": "pricing.csv",
            "inactive_observations": ["cooling_demand"], "inactive_actions": [],
            "cooling_device": {"type": "citylearn.energy_model.HeatPump", "autosize": True, "autosize_attributes": {"safety_factor": 1.2},
                               "attributes": {"nominal_power": None, "efficiency": 0.2, "target_cooling_temperature": 8, "vendor_note": "kept"}},
            "dhw_device": {"type": "citylearn.energy_model.ElectricHeater", "autosize": True, "autosize_attributes": {}, "attributes": {"efficiency": 0.9}},
            "dhw_storage": {"type": "citylearn.energy_model.StorageTank", "autosize": True, "autosize_attributes": {}, "attributes": {"capacity": None}},
            "electrical_storage": {"type": "citylearn.energy_model.Battery", "autosize": False, "autosize_attributes": {},
                                   "attributes": {"capacity": 6.4, "nominal_power": 5.0, "power_efficiency_curve": [[0, 0.83], [0.3, 0.83]]}},
            "pv": {"type": "citylearn.energy_model.PV", "autosize": False, "autosize_attributes": {}, "attributes": {"nominal_power": 4.0}},
            "power_outage": {"type": "citylearn.power_outage.PowerOutage", "autosize": False, "autosize_attributes": {}, "attributes": {}},
            "dynamics": {"type": "citylearn.dynamics.LSTMDynamics", "autosize": False, "autosize_attributes": {},
                         "attributes": {"filename": "R-H-01.pth", "input_size": 7, "hidden_size": 8}},
            "chargers": {"charger_R-H-01_1": {"type": "citylearn.electric_vehicle_charger.Charger", "attributes": {"nominal_power": 7.4}}},
        }
    },
}


def test_real_format_schema_round_trips_unchanged(api):
    site = f"real_{uuid.uuid4().hex[:8]}"
    assert api.post("/schema/create", json={"site": site, "schema": REAL_SCHEMA}).status_code == 200
    assert api.get(f"/schema/{site}").json() == {"site": site, "schema": REAL_SCHEMA}
    changed = copy.deepcopy(REAL_SCHEMA)
    changed["buildings"]["R-H-01"]["pv"]["attributes"]["nominal_power"] = 6.5
    changed["buildings"]["R-H-02"] = copy.deepcopy(EXAMPLE["buildings"]["R-H-01"])
    r = api.put(f"/schema/update/{site}", json={"schema": changed})
    assert r.status_code == 200 and r.json() == {"message": f"Schema of site {site} updated", "site": site}
    assert api.get(f"/schema/{site}").json()["schema"] == changed
    again = api.post("/schema/create", json={"site": site, "schema": REAL_SCHEMA})
    assert again.status_code == 409 and "already exists" in again.json()["detail"]


def test_ui_creates_an_empty_site_first(api):
    site = f"ui_{uuid.uuid4().hex[:8]}"
    r = api.post("/schema/create", json={"site": site, "schema": {"electric_vehicles_def": {}, "buildings": {}}})
    assert r.status_code == 200, r.text
    assert api.get(f"/schema/{site}").json()["schema"] == {"electric_vehicles_def": {}, "buildings": {}}
    build = api.post("/dataset", json={"name": f"ds-{site}", "site_id": site})
    assert build.status_code == 422 and "no buildings" in build.json()["detail"]


@pytest.mark.parametrize("schema, words", [
    ({"buildings": {"1": {"include": "maybe"}}}, "include"),
    ({"buildings": {"1": {"pv": {"autosize": "sometimes"}}}}, "pv.autosize"),
    ({"buildings": {"1": {"inactive_observations": "all"}}}, "inactive_observations"),
    ({"buildings": {"1": {"fields": {"watts": "w"}}}}, "watts"),
    ({"buildings": {}, "timezone": "Mars/Olympus"}, "Mars/Olympus"),
    ({"buildings": {}, "evs": {"EV": {"battery_capacity": -5}}}, "battery_capacity"),
    ({"electric_vehicles_def": {}}, "buildings"),
])
def test_schema_known_keys_are_checked(api, schema, words):
    r = api.post("/schema/create", json={"site": f"bad_{uuid.uuid4().hex[:6]}", "schema": schema})
    assert r.status_code == 422 and words in r.json()["detail"], r.text


def test_schema_errors(api):
    assert api.put("/schema/update/missing_site", json={"schema": REAL_SCHEMA}).status_code == 404
    assert api.get("/schema/missing_site").status_code == 404
    for site in ("../admin", "admin"):
        r = api.post("/schema/create", json={"site": site, "schema": REAL_SCHEMA})
        assert r.status_code == 422 and "site" in r.json()["detail"]


def test_real_time_data_has_collections_at_the_top_level(api, mongo):
    name = f"rt_{uuid.uuid4().hex[:8]}"
    now = datetime.now(timezone.utc)
    mongo[name].meter.insert_many([{"timestamp": now - timedelta(minutes=5), "v": 1}, {"timestamp": now - timedelta(days=2), "v": 2}])
    mongo[name].busy.insert_many([{"timestamp": now - timedelta(seconds=i), "v": i} for i in range(1005)])
    mongo[name].schema.insert_one({"_id": "schema", "schema": {"buildings": {}}})
    r = api.get(f"/real-time-data/{name}", params={"minutes": 60})
    body = r.json()
    assert set(body) == {"meter", "busy"}
    assert [d["v"] for d in body["meter"]] == [1] and isinstance(body["meter"][0]["_id"], str)
    assert datetime.fromisoformat(body["meter"][0]["timestamp"]).tzinfo is not None
    assert len(body["busy"]) == 1000 and body["busy"][0]["v"] == 0  # newest first, capped
    assert r.headers["x-opeva-truncated"] == "busy" and r.headers["x-opeva-cap-per-collection"] == "1000"
    assert sorted(d["v"] for d in api.get(f"/real-time-data/{name}").json()["meter"]) == [1, 2]
    assert api.get("/real-time-data/no_such_site").status_code == 404
    assert api.get(f"/real-time-data/{name}", params={"minutes": 0}).status_code == 422
    assert api.get("/api/nowhere").status_code == 404


def test_energy_communities_and_historical_data(api, mongo):
    name = f"hist_{uuid.uuid4().hex[:8]}"
    docs = [{"timestamp": T0 + timedelta(minutes=15 * q), "load": float(q), "label": f"q{q}", "observations": {"x": q}} for q in range(16)]
    mongo[name].building_A.insert_many(docs)
    mongo[name].schema.insert_one({"_id": "schema", "schema": {"buildings": {}}})
    mongo.admin.probe.insert_one({"x": 1})
    communities = api.get("/energy-communities").json()["energy_communities"]
    assert name in communities and not {"admin", "local", "config"} & set(communities)

    window = {"from_ts": T0.isoformat(), "until_ts": (T0 + timedelta(hours=4)).isoformat()}
    raw = api.get(f"/historical-data/{name}", params={**window, "limit": 5, "offset": 2}).json()
    assert raw["energy_community"] == name and set(raw["collections"]) == {"building_A"}  # the schema is left out
    assert [d["load"] for d in raw["collections"]["building_A"]["items"]] == [2.0, 3.0, 4.0, 5.0, 6.0]
    hourly = api.get(f"/historical-data/{name}", params={**window, "granularity_minutes": 60}).json()["collections"]["building_A"]["items"]
    assert [d["load"] for d in hourly] == [1.5, 5.5, 9.5, 13.5]  # numeric fields averaged per bucket
    assert [d["label"] for d in hourly] == ["q0", "q4", "q8", "q12"] and hourly[1]["documents"] == 4  # others: first value
    assert hourly[1]["timestamp"].startswith("2025-03-03T01:00:00")
    assert api.get(f"/historical-data/{name}", params={"minutes": 30}).json()["collections"]["building_A"]["items"] == []

    unknown = api.get("/historical-data/no_such_community", params={"minutes": 5, **window})
    assert unknown.status_code == 404  # checked before the filter's 400
    for params in ({}, {"minutes": 5, **window}):
        r = api.get(f"/historical-data/{name}", params=params)
        assert r.status_code == 400 and "minutes" in r.json()["detail"]
    assert api.get(f"/historical-data/{name}", params={"minutes": 5, "limit": 5000}).status_code == 422


def test_openapi_declares_the_site_routes(api):
    spec = api.get("/openapi.json").json()
    for path, method, codes in (("/schema/create", "post", {"200", "409", "422"}), ("/historical-data/{community}", "get", {"200", "400", "404"}),
                                ("/real-time-data/{site}", "get", {"200", "404"}), ("/energy-communities", "get", {"200"})):
        op = spec["paths"][path][method]
        assert codes <= set(op["responses"]), (path, op["responses"].keys())
        assert "$ref" in str(op["responses"]["200"]) or "example" in str(op["responses"]["200"]) or "schema" in str(op["responses"]["200"])
