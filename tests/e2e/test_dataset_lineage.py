"""Dataset → run lineage end to end (issue 25 §5 "Accept"): build D, run J1 and J2 on it, rebuild
D with new data, run J3: the lineage shows J1 and J2 under version 1 and J3 under version 2, each
finished with its KPIs, and /job-info names the version each job ran on. The record is the
platform's own file (core/dataset_lineage.py), not Prefect's events."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from helpers import wait_for
from tools.seed_site import seed_site

END = datetime(2026, 3, 30, tzinfo=timezone.utc)


def _run_on(api, dataset: str) -> str:
    config = {"experiment": {"name": "lineage", "run_name": "r"}, "dataset": dataset, "algorithm": {"name": "rule_based"}, "episodes": 1}
    r = api.post("/run-simulation", json={"config": config})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    status = wait_for(lambda: (s := api.get(f"/status/{job_id}").json()["status"]) in ("finished", "failed") and s, 180, what="the job")
    assert status == "finished", api.get(f"/logs/{job_id}").text[-2000:]
    return job_id


def _build(api, name: str, site: str, **extra) -> str:
    """A build through the API, waited for; the dataset's version (digest) after it."""
    r = api.post("/dataset", json={"name": name, "site_id": site, "wait": 300, **extra})
    assert r.status_code == 200 and r.json()["status"] == "finished", r.text
    return api.get(f"/dataset/{name}/lineage").json()["current_digest"]


def test_lineage_puts_each_job_under_the_version_it_ran_on(api, mongo, storage, needs_docker):
    site = f"lin_{uuid.uuid4().hex[:8]}"
    seed_site(mongo, site=site, days=2, buildings=2, seed=9, end=END)
    name = f"lin-{site}"
    v1 = {"digest": _build(api, name, site)}
    j1, j2 = _run_on(api, name), _run_on(api, name)
    for coll in mongo[site].list_collection_names():
        if coll != "schema":
            mongo[site][coll].update_many({}, {"$inc": {"observations.non_shiftable_load": 0.5}})
    v2 = {"digest": _build(api, name, site, overwrite=True)}
    assert v2["digest"] != v1["digest"]
    j3 = _run_on(api, name)

    body = api.get(f"/dataset/{name}/lineage").json()
    assert [(v["digest"], [j["job_id"] for j in v["jobs"]]) for v in body["versions"]] == [(v1["digest"], [j1, j2]), (v2["digest"], [j3])]
    assert body["current_digest"] == v2["digest"]
    jobs = [j for v in body["versions"] for j in v["jobs"]]
    assert all(j["status"] == "finished" for j in jobs)
    assert all(j["kpis"] for j in jobs), jobs  # each finished job's district KPIs
    info = api.get(f"/job-info/{j1}").json()["dataset"]
    assert info["name"] == name and info["digest"] == v1["digest"] and info["site"] == site
    assert api.get(f"/job-info/{j3}").json()["dataset"]["digest"] == v2["digest"]
