"""/deploy/bundles*: a finished job's bundle/ copied into the store (core/bundle_store.py) as
untrusted job output: links refused, sha256 checked against the manifest, content-addressed ids."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

from helpers import KPI_HEADER, experiment, gateway_call

from simulator.agents import make_controller
from simulator.bundle import export_bundle
from simulator.config import validate_config
from simulator.sample import sample_dataset


def _job(api, finished: bool = True) -> str:
    r = api.post("/run-simulation", json={"config": experiment("bundles", "t"), "command": ["true"], "target_host": "offline"})
    assert r.status_code == 200, r.text
    job = r.json()["job_id"]
    if finished:
        from prefect.states import Completed

        async def done(gateway):
            await gateway.client.set_flow_run_state(uuid.UUID(job), Completed(), force=True)

        gateway_call(done)
    return job


def _export(job_dir: Path, algorithm: str = "rule_based") -> dict:
    config = validate_config({"experiment": {"name": "x", "run_name": "y"}, "algorithm": algorithm, "simulation": {"buildings": 2, "days": 1}})
    data = sample_dataset(2, 1, 0)
    return export_bundle(job_dir, config, data, make_controller(algorithm, data, config.params, 0))


def _expected_id(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix()):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def test_a_finished_job_s_bundle_is_stored_once_with_its_lineage(api, storage):
    job = _job(api)
    _export(storage.job(job).dir)
    kpi_folder = storage.job(job).dir / "results" / "simulation_data" / "s1"
    kpi_folder.mkdir(parents=True)
    (kpi_folder / "exported_kpis.csv").write_text(KPI_HEADER + "district_cost_total_control_eur,1,12.5\n")
    source = storage.job(job).dir / "bundle"
    manifest = json.loads((source / "artifact_manifest.json").read_text())
    assert api.get(f"/job-info/{job}").json()["stored_bundle_ids"] == []
    r = api.post(f"/deploy/bundles/from-job/{job}")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["created"] is True
    bundle = body["bundle"]
    assert bundle["bundle_id"] == _expected_id(source)
    assert bundle["source_job_id"] == job and bundle["file_count"] == 3
    assert bundle["config_sha256"] == manifest["simulator"]["config_sha256"]
    assert bundle["dataset_name"] == manifest["simulator"]["dataset_name"]
    assert 12.5 in bundle["kpis"].values(), bundle["kpis"]  # lineage: the job's KPIs when it was stored
    assert api.get(f"/job-info/{job}").json()["stored_bundle_ids"] == [bundle["bundle_id"]]  # the job detail links it
    stored = storage.root / "bundles" / bundle["storage_dir_name"]
    for item in manifest["files"]:
        assert (stored / item["path"]).read_bytes() == (source / item["path"]).read_bytes()
    index = json.loads((storage.root / "bundles" / "index.json").read_text())
    assert [e["bundle_id"] for e in index["bundles"]].count(bundle["bundle_id"]) == 1

    again = api.post(f"/deploy/bundles/from-job/{job}")
    assert again.status_code == 200 and again.json() == {"created": False, "bundle": bundle}
    listed = api.get("/deploy/bundles").json()
    assert [b["bundle_id"] for b in listed].count(bundle["bundle_id"]) == 1
    files = api.get(f"/deploy/bundles/{bundle['bundle_id']}/files").json()
    assert files["bundle_id"] == bundle["bundle_id"] and files["file_count"] == 3
    assert {f["path"]: f["size_bytes"] for f in files["files"]} == {
        **{i["path"]: i["size_bytes"] for i in manifest["files"]},
        "artifact_manifest.json": (source / "artifact_manifest.json").stat().st_size}

    d = api.delete(f"/deploy/bundles/{bundle['bundle_id']}")
    assert d.status_code == 200 and d.json() == {"status": "deleted", "bundle_id": bundle["bundle_id"]}
    assert not stored.exists()
    assert bundle["bundle_id"] not in [b["bundle_id"] for b in api.get("/deploy/bundles").json()]
    assert api.delete(f"/deploy/bundles/{bundle['bundle_id']}").status_code == 404


def test_a_link_in_the_bundle_is_refused_naming_it(api, storage, tmp_path):
    job = _job(api)
    _export(storage.job(job).dir)
    secret = tmp_path / "secret"
    secret.write_text("not for the store")
    victim = storage.job(job).dir / "bundle" / "policy_agent_1.json"
    victim.unlink()
    victim.symlink_to(secret)
    r = api.post(f"/deploy/bundles/from-job/{job}")
    assert r.status_code == 400, r.text
    assert "policy_agent_1.json" in r.json()["detail"]
    assert all(b["source_job_id"] != job for b in api.get("/deploy/bundles").json())
    assert not [p for p in (storage.root / "bundles").iterdir() if p.name.startswith(".import-")]  # nothing half-copied left
    folder = storage.job(job).dir / "bundle"
    moved = tmp_path / "real_bundle"
    folder.rename(moved)
    folder.symlink_to(moved)  # the whole bundle/ a link: not followed either
    r = api.post(f"/deploy/bundles/from-job/{job}")
    assert r.status_code == 400 and "bundle" in r.json()["detail"], r.text


def test_a_file_whose_digest_differs_from_the_manifest_is_422(api, storage):
    job = _job(api)
    _export(storage.job(job).dir)
    (storage.job(job).dir / "bundle" / "policy_agent_0.json").write_text('{"tampered": true}')
    r = api.post(f"/deploy/bundles/from-job/{job}")
    assert r.status_code == 422, r.text
    assert "policy_agent_0.json" in r.json()["detail"] and "sha256" in r.json()["detail"]


def test_unknown_unfinished_and_bundle_less_jobs(api, storage):
    assert api.post(f"/deploy/bundles/from-job/{uuid.uuid4()}").status_code == 404
    pending = _job(api, finished=False)
    _export(storage.job(pending).dir)
    r = api.post(f"/deploy/bundles/from-job/{pending}")
    assert r.status_code == 409, r.text
    bare = _job(api)
    r = api.post(f"/deploy/bundles/from-job/{bare}")
    assert r.status_code == 404 and "no policy bundle" in r.json()["detail"], r.text
    for bad in ("0123456789abcdef", "../../etc"):
        assert api.get(f"/deploy/bundles/{bad}/files").status_code == 404
        assert api.delete(f"/deploy/bundles/{bad}").status_code == 404
