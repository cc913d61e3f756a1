"""Datasets as energaize_ui builds and lists them (OPEVA_UPSTREAM.md §4): format fields,
``seconds_per_time_step``, the ``validation`` option, ``POST /datasets/generate``, and the
2026 building CSV header (``minutes,seconds``)."""

from __future__ import annotations

import json
import uuid

import pandas as pd

from core.dataset_build import BUILDING_CSV_COLUMNS, BuildRequest, build
from tests.fast.test_datasets_build import fill_site

UI_CONFIGS = {"schema_overrides": {}, "building_overrides": {}, "defaults": {}, "validation": {"smoke_check": False}}
HEADER_2026 = ("month,hour,minutes,seconds,day_type,daylight_savings_status,indoor_dry_bulb_temperature,average_unmet_cooling_setpoint_difference,"
               "indoor_relative_humidity,non_shiftable_load,dhw_demand,cooling_demand,heating_demand,solar_generation")


def _site(mongo) -> str:
    name = f"site_{uuid.uuid4().hex[:8]}"
    fill_site(mongo, name)
    return name


def test_ui_body_is_accepted_without_a_validation_warning_and_answers_formats(api, mongo):
    site = _site(mongo)
    body = {"name": f"ui-{site}", "site_id": site, "description": "from the UI", "period": 60, "seconds_per_time_step": 900,
            "from_ts": "2025-01-06 12:00:00", "until_ts": "2025-01-07 00:00:00", "citylearn_configs": UI_CONFIGS}
    r = api.post("/dataset", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert {"message", "name", "description", "warnings", "validation", "format", "type", "formats", "format_counts"} <= set(answer)
    assert not [w for w in answer["warnings"] if "validation" in w], answer["warnings"]  # an option, not a CityLearn key
    assert answer["time_steps"] == 48 and answer["seconds_per_time_step"] == 900  # 12 h of 15-min steps: seconds_per_time_step wins over period
    assert answer["format"] == "csv" and answer["type"] == "citylearn" and answer["formats"] == ["csv"]
    assert answer["format_counts"] == {"csv": 2 + 2 + 3}  # B1, B2 (B3 has no data), their chargers, weather/pricing/carbon
    r = api.post("/dataset", json={**body, "name": f"x-{site}", "citylearn_configs": {"validation": {"smoke_check": "sometimes"}}})
    assert r.status_code == 422 and "smoke_check" in r.json()["detail"]


def test_listing_says_format_by_file_suffix(api, storage):
    tag = uuid.uuid4().hex[:6]
    cases = {f"fmt-csv-{tag}": (["a.csv", "b.csv"], True), f"fmt-pq-{tag}": (["a.parquet"], True),
             f"fmt-mixed-{tag}": (["a.csv", "sub/b.parquet"], True), f"fmt-none-{tag}": (["notes.txt"], False)}
    for name, (files, schema) in cases.items():
        folder = storage.dataset_dir(name)
        for f in files:
            (folder / f).parent.mkdir(parents=True, exist_ok=True)
            (folder / f).write_text("x\n1\n")
        if schema:
            (folder / "schema.json").write_text("{}")
    listed = {d["name"]: d for d in api.get("/datasets").json()}
    assert {k: (listed[k]["format"], listed[k]["type"], listed[k]["formats"], listed[k]["format_counts"]) for k in cases} == {
        f"fmt-csv-{tag}": ("csv", "citylearn", ["csv"], {"csv": 2}),
        f"fmt-pq-{tag}": ("parquet", "citylearn", ["parquet"], {"parquet": 1}),
        f"fmt-mixed-{tag}": ("mixed", "citylearn", ["csv", "parquet"], {"csv": 1, "parquet": 1}),
        f"fmt-none-{tag}": ("unknown", "unknown", [], {}),
    }


def test_generate_plans_creates_and_reports_failures(api, mongo, storage):
    good = _site(mongo)
    window = {"from_ts": "2025-01-06 00:00:00", "until_ts": "2025-01-07 00:00:00", "seconds_per_time_step": 3600}
    prefix = f"g{uuid.uuid4().hex[:6]}"
    dry = api.post("/datasets/generate", json={"name_prefix": prefix, "site_ids": [good], "dry_run": True, **window}).json()
    assert dry["dry_run"] is True and dry["created"] == [] and dry["failed"] == []
    assert [(p["name"], p["site_id"], p["time_steps"]) for p in dry["planned"]] == [(f"{prefix}_{good}_all_buildings", good, 24)]
    assert not storage.dataset_dir(f"{prefix}_{good}_all_buildings").exists()
    # one unknown site, without continue_on_error: 404 with upstream's object detail, nothing submitted
    r = api.post("/datasets/generate", json={"name_prefix": prefix, "site_ids": [good, "no_such_site"], **window})
    assert r.status_code == 404, r.text
    detail = r.json()["detail"]
    assert detail["site_ids"] == ["no_such_site"] and "no_such_site" in detail["message"]
    # with continue_on_error: the good site is submitted, the other listed as failed
    r = api.post("/datasets/generate", json={"name_prefix": prefix, "site_ids": [good, "no_such_site"], "continue_on_error": True, **window})
    assert r.status_code == 200, r.text
    out = r.json()
    assert [c["name"] for c in out["created"]] == [f"{prefix}_{good}_all_buildings"] and out["created"][0]["status"] == "queued"
    assert [(f["site_id"], f["status_code"]) for f in out["failed"]] == [("no_such_site", 404)]
    # the default step is upstream's 15 s: a full day is 5760 rows
    planned = api.post("/datasets/generate", json={"name_prefix": f"{prefix}b", "site_ids": [good], "dry_run": True,
                                                    "from_ts": window["from_ts"], "until_ts": window["until_ts"]}).json()["planned"]
    assert planned[0]["seconds_per_time_step"] == 15 and planned[0]["time_steps"] == 5760


def test_generate_refuses_bad_input(api):
    for body, code, words in (({"name_prefix": "../up"}, 422, "name_prefix"), ({"site_ids": ["../admin"], "dry_run": True}, 404, "site_ids"),
                              ({"seconds_per_time_step": 0}, 422, "seconds_per_time_step"), ({"no_such_option": 1}, 422, "no_such_option"),
                              ({"target_host": "mars"}, 404, "mars")):
        r = api.post("/datasets/generate", json=body)
        assert r.status_code == code and words in json.dumps(r.json()["detail"]), (body, r.status_code, r.text)
    big = b'{"name_prefix": "' + b"x" * (6 * 1024 * 1024) + b'"}'
    r = api.post("/datasets/generate", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    assert api.post("/dataset", content=big, headers={"content-type": "application/json"}).status_code == 413


def test_2026_header_sub_minute_steps_and_smoke_only_when_asked(mongo, storage):
    site = _site(mongo)
    assert ",".join(BUILDING_CSV_COLUMNS) == HEADER_2026
    request = BuildRequest(name=f"s30-{site}", site_id=site, period=60, seconds_per_time_step=30, from_ts="2025-01-06 12:00:00",
                           until_ts="2025-01-06 12:02:00", citylearn_configs=UI_CONFIGS)
    meta = build(mongo, storage, request)  # smoke as the request asks: not asked
    folder = storage.dataset_dir(request.name)
    b1 = pd.read_csv(folder / "Building_1.csv")
    assert ",".join(b1.columns) == HEADER_2026
    assert b1["seconds"].tolist() == [0, 30, 0, 30] and b1["minutes"].tolist() == [0, 0, 1, 1] and set(b1["hour"]) == {13}
    assert json.loads((folder / "schema.json").read_text())["seconds_per_time_step"] == 30
    assert "validation" not in json.loads((folder / "schema.json").read_text())
    assert meta["seconds_per_time_step"] == 30 and meta["period"] == 0.5
    assert meta["validation"]["citylearn"] == {"status": "skipped", "detail": "not asked for"}
