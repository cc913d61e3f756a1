"""Failure codes, container names, storage and ETAs of jobs that really ran in containers."""

from __future__ import annotations

import pytest

from helpers import wait_for

pytestmark = pytest.mark.usefixtures("needs_docker")

# The reference simulator, started as a command so the API does not refuse the config at
# submit (it checks datasets only for the default simulator): the job fails in its container.
SIMULATOR = ["python", "-m", "simulator"]


def final(api, job_id: str, timeout: float = 240) -> dict:
    return wait_for(lambda: (lambda s: s if s["status"] in ("finished", "failed", "stopped") else None)(api.get(f"/status/{job_id}").json()),
                    timeout=timeout, what=f"job {job_id} to end")


def test_a_job_whose_dataset_is_missing_fails_with_dataset_missing(api):
    config = {"experiment": {"name": "insight", "run_name": "no-dataset"}, "algorithm": {"name": "rule_based"}, "dataset": "gone_for_good"}
    r = api.post("/run-simulation", json={"config": config, "command": SIMULATOR, "target_host": "local"})
    assert r.status_code == 200, r.text
    job = r.json()["job_id"]
    status = final(api, job)
    assert status["status"] == "failed" and status["error_code"] == "dataset_missing"
    info = api.get(f"/job-info/{job}").json()
    assert info["error_code"] == "dataset_missing" and info["error_category"] == "data" and "dataset" in info["error_hint"]
    assert "gone_for_good" in info["error_summary"]
    assert info["container_name"] == f"opeva-sim-{job}"
    assert info["result_storage"]["installed"]["categories"]["logs"]["file_count"] >= 1


def test_a_finished_job_has_its_container_storage_and_a_final_eta(api):
    config = {"experiment": {"name": "insight", "run_name": "ok"}, "algorithm": {"name": "rule_based"}, "episodes": 1}
    r = api.post("/run-simulation", json={"config": config, "target_host": "local"})
    assert r.status_code == 200, r.text
    job = r.json()["job_id"]
    assert final(api, job)["status"] == "finished"
    info = api.get(f"/job-info/{job}").json()
    assert info["container_name"] == f"opeva-sim-{job}" and info["error_code"] is None
    assert info["total_duration_seconds"] > 0 and info["queued_at"]
    storage = info["result_storage"]["installed"]
    assert storage["categories"]["results"]["file_count"] >= 1 and storage["bytes"] > 0
    progress = api.get(f"/progress/{job}").json()
    assert progress["eta"]["available"] and progress["eta"]["state"] == "finished" and progress["eta_seconds"] == 0
