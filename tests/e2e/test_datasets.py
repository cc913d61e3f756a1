"""Dataset builds as flow runs on a Docker worker, from the seeded real-layout sites, over REST;
and a built dataset used by a simulation job."""

from __future__ import annotations

import io
import uuid
import zipfile
from datetime import datetime, timezone

import pytest

from core.dataset_build import BuildRequest, build
from helpers import wait_for
from tools.seed_site import seed_ev_site, seed_site

END = datetime(2026, 3, 30, tzinfo=timezone.utc)


@pytest.fixture
def ev_site(mongo):
    name = f"ev_{uuid.uuid4().hex[:8]}"
    seed_ev_site(mongo, site=name, days=2, seed=4, end=END)
    return name


def test_rest_build_waits_and_answers_with_validation(api, ev_site, needs_docker):
    name = f"rest-{ev_site}"
    r = api.post("/dataset", json={"name": name, "site_id": ev_site, "description": "e2e build", "period": 30,
                                   "from_ts": "2026-03-28 00:00:00", "until_ts": "2026-03-29 00:00:00",
                                   "citylearn_configs": {"random_seed": 3, "central_agent": True}, "wait": 240}, timeout=300)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["message"] == "Dataset created" and body["status"] == "finished" and body["time_steps"] == 48
    assert isinstance(body["warnings"], list)
    assert body["validation"]["static"]["passed"] and body["validation"]["status"] == "passed"
    assert body["validation"]["citylearn"]["status"] in ("skipped", "passed")  # the runtime image has no CityLearn
    job_id = body["job_id"]
    assert api.get(f"/progress/{job_id}").json()["percent"] == 100
    assert api.get(f"/status/{job_id}").json()["status"] == "finished"

    listed = {d["name"]: d for d in api.get("/datasets").json()}
    assert listed[name]["site"] == ev_site and listed[name]["description"] == "e2e build" and listed[name]["source"] == "build"
    assert api.post("/dataset", json={"name": name, "site_id": ev_site}).status_code == 409
    z = api.get(f"/dataset/download/{name}")
    names = zipfile.ZipFile(io.BytesIO(z.content)).namelist()
    assert f"{name}/schema.json" in names and f"{name}/charger_1_1.csv" in names and f"{name}/dataset.json" in names
    assert api.delete(f"/dataset/{name}").status_code == 200
    assert api.get(f"/dataset/download/{name}").status_code == 404


def test_build_without_wait_is_followed_as_a_job(api, ev_site, needs_docker):
    r = api.post("/dataset", json={"name": f"async-{ev_site}", "site_id": ev_site})
    assert r.status_code == 200 and r.json()["validation"]["status"] == "pending"
    job_id = r.json()["job_id"]
    status = wait_for(lambda: (s := api.get(f"/status/{job_id}").json()["status"]) in ("finished", "failed") and s, 180, what="the build")
    assert status == "finished"
    assert any(d["name"] == f"async-{ev_site}" for d in api.get("/datasets").json())


def test_range_without_data_is_refused_before_submitting(api, ev_site):
    r = api.post("/dataset", json={"name": f"empty-{ev_site}", "site_id": ev_site, "from_ts": "2030-01-01T00:00:00Z", "until_ts": "2030-01-02T00:00:00Z"})
    assert r.status_code == 422 and "no data for building" in r.json()["detail"] and "2030-01-01" in r.json()["detail"]


def test_reference_simulator_runs_on_a_built_dataset(api, mongo, storage, needs_docker):
    site = f"ll_{uuid.uuid4().hex[:8]}"
    seed_site(mongo, site=site, days=2, buildings=3, seed=3, end=END)
    build(mongo, storage, BuildRequest(name=f"sim-{site}", site_id=site), smoke=False)
    config = {"experiment": {"name": "on-built", "run_name": "r"}, "dataset": f"sim-{site}", "algorithm": {"name": "rule_based"}, "episodes": 1}
    r = api.post("/run-simulation", json={"config": config})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    status = wait_for(lambda: (s := api.get(f"/status/{job_id}").json()["status"]) in ("finished", "failed") and s, 180, what="the job")
    assert status == "finished", api.get(f"/logs/{job_id}", params={"follow": False}).text[-2000:]
    result = api.get(f"/result/{job_id}").json()
    assert result["status"] == "completed" and "electricity_cost" in result["metrics"]
