"""Dataset → run lineage (issue 25 §5): the platform's record of which version each job ran on,
``GET /dataset/{name}/lineage`` and the delete guard, against a real Prefect server (jobs stay
queued in this tier: no worker)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from helpers import experiment, read_run
from test_datasets_build import DAY, fill_site

from core import dataset_lineage
from core.dataset_build import BuildRequest, build


def test_the_dataset_a_config_names_in_each_layout():
    assert dataset_lineage.dataset_name_of({"dataset": "d1"}) == "d1"
    assert dataset_lineage.dataset_name_of({"simulator": {"dataset_name": "citylearn_2022"}}) == "citylearn_2022"
    assert dataset_lineage.dataset_name_of({"dataset": {"name": "d2"}}) == "d2"
    assert dataset_lineage.dataset_name_of({"dataset": "../etc"}) is None
    assert dataset_lineage.dataset_name_of({"experiment": {}}) is None


def test_uses_group_by_version_count_a_retry_once_and_skip_junk(storage):
    name = f"lin-{uuid.uuid4().hex[:8]}"
    j1, j2, j3 = (str(uuid.uuid4()) for _ in range(3))
    for job, digest in ((j1, "a" * 64), (j2, "a" * 64), (j1, "a" * 64), (j3, "b" * 64)):
        dataset_lineage.record_use(storage, job, {"name": name, "digest": digest})
    path = storage.platform_dir / "lineage" / f"{name}.jsonl"
    with path.open("a") as f:
        f.write("not json\n" + '{"job_id": 5, "digest": "c"}\n' + '{"job_id": "j9", "digest": "c"}\n' + "x" * 5000 + "\n")
    versions = dataset_lineage.versions(storage, name)
    assert [(v["digest"][0], [u["job_id"] for u in v["jobs"]]) for v in versions] == [("a", [j1, j2]), ("b", [j3])]


def _queued_job(api, dataset: str) -> str:
    config = {**experiment("lineage", "q"), "dataset": dataset}
    r = api.post("/run-simulation", json={"config": config, "command": ["true"], "target_host": "offline"})
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def test_lineage_lists_jobs_per_version_and_a_used_dataset_is_not_deleted(api, mongo, storage):
    site = f"site_{uuid.uuid4().hex[:8]}"
    fill_site(mongo, site)
    name = f"lin-{site}"
    request = BuildRequest(name=name, site_id=site, from_ts=DAY.isoformat(), until_ts=(DAY + timedelta(days=1)).isoformat())
    v1 = build(mongo, storage, request, smoke=False)
    j1, j2 = _queued_job(api, name), _queued_job(api, name)
    for job in (j1, j2):  # what the simulation flow records when the job starts (no worker in this tier)
        dataset_lineage.record_job_dataset(storage, job, {"dataset": name})
    mongo[site].building_B1.update_many({}, {"$set": {"observations.non_shiftable_load": 7.0}})
    v2 = build(mongo, storage, request, smoke=False, replace=True)
    assert v2["status"] == "rebuilt"
    j3 = _queued_job(api, name)
    dataset_lineage.record_job_dataset(storage, j3, {"dataset": name})

    body = api.get(f"/dataset/{name}/lineage").json()
    assert body["current_digest"] == v2["digest"] and body["site"] == site
    assert [(v["digest"], v["current"], [j["job_id"] for j in v["jobs"]]) for v in body["versions"]] == [
        (v1["digest"], False, [j1, j2]), (v2["digest"], True, [j3])]
    assert {j["status"] for v in body["versions"] for j in v["jobs"]} == {"queued"}
    listed = api.get("/jobs", params={"dataset": name}).json()
    assert sorted(j["job_id"] for j in listed) == sorted([j1, j2, j3])
    assert [j["job_id"] for j in api.get("/jobs", params={"dataset": f"{name}@{v2['digest'][:12]}"}).json()] == [j3]
    assert api.get("/jobs", params={"dataset": "../x"}).status_code == 422

    r = api.delete(f"/dataset/{name}")
    assert r.status_code == 409 and "3 unfinished job(s)" in r.json()["detail"] and j3 in r.json()["detail"]
    assert storage.dataset_dir(name).is_dir()  # nothing deleted
    for job in (j1, j2, j3):
        assert api.post(f"/stop/{job}").status_code == 200
    assert api.delete(f"/dataset/{name}").status_code == 200
    after = api.get(f"/dataset/{name}/lineage").json()  # the record outlives the dataset
    assert after["current_digest"] is None and len(after["versions"]) == 2
    assert api.get("/dataset/never-made-xyz/lineage").status_code == 404


def test_a_rebuild_through_the_api_asks_for_overwrite_and_waits_for_the_jobs_on_it(api, mongo, storage):
    """``POST /dataset {overwrite: true}`` rebuilds a dataset (a new version when its input changed),
    never under a job that still runs or waits on it."""
    site = f"site_{uuid.uuid4().hex[:8]}"
    fill_site(mongo, site)
    name = f"re-{site}"
    body = {"name": name, "site_id": site, "from_ts": DAY.isoformat(), "until_ts": (DAY + timedelta(days=1)).isoformat()}
    build(mongo, storage, BuildRequest(name=name, site_id=site, from_ts=body["from_ts"], until_ts=body["until_ts"]), smoke=False)
    job = _queued_job(api, name)
    dataset_lineage.record_job_dataset(storage, job, {"dataset": name})

    r = api.post("/dataset", json=body)
    assert r.status_code == 409 and "overwrite: true" in r.json()["detail"], r.text
    r = api.post("/dataset", json={**body, "overwrite": True})
    assert r.status_code == 409 and job in r.json()["detail"] and "unfinished" in r.json()["detail"], r.text
    assert api.post(f"/stop/{job}").status_code == 200
    r = api.post("/dataset", json={**body, "overwrite": True})
    assert r.status_code == 200, r.text
    rebuild = r.json()["job_id"]
    assert read_run(rebuild).parameters["overwrite"] is True  # the build-dataset flow replaces the folder
    assert api.post(f"/stop/{rebuild}").status_code == 200  # no worker in this tier


def test_the_lineage_artifact_lists_each_version_and_job_under_a_valid_key(storage):
    name = f"Lin_Ds.{uuid.uuid4().hex[:6]}"
    j1, j2 = str(uuid.uuid4()), str(uuid.uuid4())
    dataset_lineage.record_use(storage, j1, {"name": name, "digest": "a" * 64})
    dataset_lineage.record_use(storage, j2, {"name": name, "digest": "b" * 64})
    rows = [line for line in dataset_lineage.lineage_markdown(storage, name).splitlines() if line.startswith("| `")]
    assert [(r.split("|")[1].strip(" `"), r.split("|")[2].strip(" `")) for r in rows] == [("a" * 12, j1), ("b" * 12, j2)]
    key = dataset_lineage.artifact_key(name)
    assert key == f"lineage-lin-ds-{name[-6:]}" and key == key.lower()
