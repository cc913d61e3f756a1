"""ETAs, start estimates, failure codes, job-info extras, recover, folders and archive over HTTP.

Jobs stay queued in this tier (no worker); where a test needs a started, failed or crashed
job, it sets that state through Prefect's own API, as a worker or Prefect's zombie detection
would, and the API reads it back. A worker heartbeat is sent through Prefect's API the way a
worker sends it, so the host counts as online for the start estimates.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from helpers import API_TOKEN, experiment, gateway_call

HOST = "second"  # concurrency_limit 2 in the test hosts file


def submit(api, host: str = HOST, **body) -> str:
    r = api.post("/run-simulation", json={"config": experiment("insight", "t"), "command": ["true"], "target_host": host, **body})
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def set_state(job_id: str, state) -> None:
    async def go(gateway):
        await gateway.client.set_flow_run_state(uuid.UUID(job_id), state, force=True)

    gateway_call(go)


def clear_host(host: str) -> None:
    """Cancel what other tests left active on ``host``, so the queue is this test's alone."""
    async def go(gateway):
        from prefect.states import Cancelled

        for run in await gateway.active_runs(host):
            await gateway.client.set_flow_run_state(run.id, Cancelled(), force=True)

    gateway_call(go)


def heartbeat(host: str) -> None:
    async def go(gateway):
        await gateway.client.send_worker_heartbeat(host, "insight-test-worker", heartbeat_interval_seconds=600)

    gateway_call(go)


def write_progress(storage, job_id: str, data: dict) -> None:
    path = storage.job(job_id).progress_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_progress_has_an_eta_from_the_progress_rate(api, storage):
    from prefect.states import Running

    job = submit(api)
    first = api.get(f"/progress/{job}").json()
    assert first["progress"] == "No updates yet." and first["eta"] == {"available": False, "reason": "no estimate while the job is queued"}
    set_state(job, Running())
    start = time.time()
    for pct in (10, 20, 30):  # 1 %/s from the start, dated by the file's own timestamp
        write_progress(storage, job, {"progress_pct": pct, "episode": pct // 10, "episodes": 10, "timestamp": start + pct})
        body = api.get(f"/progress/{job}").json()
    eta = body["eta"]
    assert body["progress_pct"] == 30 and body["episode"] == 3  # the file passed through
    assert eta["available"] and eta["source"] == "progress_rate" and eta["unit"] == "episodes" and eta["total"] == 10
    assert 90 < eta["eta_seconds"] <= 101 and eta["confidence"] == "medium" and eta["state"] == "running"
    assert body["eta_seconds"] == eta["eta_seconds"] and body["eta_confidence"] == "medium" and body["eta_source"] == "progress_rate"
    assert body["estimated_finish_at"] == eta["estimated_finish_at"] and eta["elapsed_seconds"] >= 0


def test_queued_jobs_get_start_estimates_from_slots_and_running_etas(api, storage):
    from prefect.states import Running

    clear_host(HOST)
    heartbeat(HOST)
    running = submit(api)
    set_state(running, Running())
    start = time.time()
    for pct in (25, 50):
        write_progress(storage, running, {"percent": pct, "timestamp": start + pct})
        api.get(f"/progress/{running}")
    second, third = submit(api), submit(api)  # a profile goes only with automatic selection (test_api_jobs_contract)
    items = {j["job_id"]: j for j in api.get("/jobs", params={"host": HOST}).json()}
    free, blocked = items[second]["queued_start_estimate"], items[third]["queued_start_estimate"]
    assert free["available"] and free["kind"] == "estimated_start" and free["source"] == "free_slot" and free["queue_position"] == 1
    assert free["estimated_start_seconds"] == 0 and free["target_host"] == HOST
    assert blocked["available"] and blocked["blocking_job_id"] == running and blocked["source"] == "running_eta"
    assert 90 < blocked["estimated_start_seconds"] <= 101 and blocked["queue_position"] == 2 and blocked["profile"] is None
    assert items[third]["estimated_start_at"] == blocked["estimated_start_at"] and items[running]["queued_start_estimate"] is None
    queue = {q["job_id"]: q for q in api.get("/queue").json()}
    assert queue[third]["queued_start_estimate"]["blocking_job_id"] == running


def test_a_host_without_worker_says_why_there_is_no_estimate(api):
    job = submit(api, host="offline")
    item = next(j for j in api.get("/jobs", params={"host": "offline"}).json() if j["job_id"] == job)
    est = item["queued_start_estimate"]
    assert est["available"] is False and "no worker online" in est["reason"] and item["estimated_start_at"] is None


@pytest.mark.parametrize("message,result,code", [
    ("Flow run encountered an exception: SimulatorImageMissing: image 'calof/opeva_simulator:v9' is not present on host 'second'", None, "image_missing"),
    ("Flow run encountered an exception: SimulatorFailed: simulator exited with code 1", {"status": "failed", "error": "ConfigError: dataset: no dataset 'gone': datasets/gone/schema.json does not exist"}, "dataset_missing"),
    ("Flow run encountered an exception: SimulatorFailed: simulator exited with code 137 (OOMKilled: the container ran out of memory)", None, "out_of_memory"),
])
def test_failed_jobs_carry_their_error_code_everywhere(api, storage, message, result, code):
    from prefect.states import Failed

    job = submit(api)
    if result is not None:
        path = storage.job(job).result_file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result))
    set_state(job, Failed(message=message))
    info = api.get(f"/job-info/{job}").json()
    assert info["error_code"] == code and info["error_hint"] and info["error_category"]
    assert api.get(f"/status/{job}").json()["error_code"] == code
    item = next(j for j in api.get("/jobs", params={"status": "failed"}).json() if j["job_id"] == job)
    assert item["error_code"] == code
    assert api.get(f"/job-info/{submit(api)}").json()["error_code"] is None  # a queued job has none


def test_job_info_has_queue_time_duration_storage_and_container(api, storage):
    from prefect.states import Completed

    job = submit(api)
    paths = storage.job(job)
    for rel, size in {"logs/platform.log": 100, "results/result.json": 50, "checkpoints/c.pt": 1000, "bundle/m.json": 10}.items():
        (paths.dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (paths.dir / rel).write_bytes(b"x" * size)
    (paths.dir / "container.json").write_text(json.dumps({"name": f"opeva-sim-{job}", "simulator_container_id": "abc"}))
    set_state(job, Completed())
    info = api.get(f"/job-info/{job}").json()
    assert info["queued_at"] == info["submitted_at"] and info["total_duration_seconds"] >= 0
    assert info["container_name"] == f"opeva-sim-{job}"
    cats = info["result_storage"]["installed"]["categories"]
    assert cats["checkpoints"] == {"bytes": 1000, "file_count": 1} and cats["logs"]["bytes"] == 100
    assert info["result_storage"]["installed"]["bytes"] >= 1160 and info["result_storage"]["schema_version"] == 1
    (paths.dir / "container.json").write_text(json.dumps({"name": "bad name; rm -rf"}))
    assert api.get(f"/job-info/{job}").json()["container_name"] is None  # the job's folder is not trusted


def test_recover_completes_a_lost_job_that_has_its_results(api, storage):
    from prefect.states import Crashed

    job = submit(api)
    assert api.post(f"/ops/jobs/{job}/recover").status_code == 409  # queued: nothing to recover
    set_state(job, Crashed(message="No heartbeat for 90 s: the worker or host died."))
    assert api.get(f"/job-info/{job}").json()["error_code"] == "host_lost"
    refused = api.post(f"/ops/jobs/{job}/recover")
    assert refused.status_code == 409 and "result" in refused.json()["detail"]
    path = storage.job(job).result_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"status": "completed", "kpis": {"cost": 1}}))
    done = api.post(f"/ops/jobs/{job}/recover")
    assert done.status_code == 200 and done.json() == {"message": "Job recovered: its results are complete", "job_id": job, "status": "finished"}
    assert api.get(f"/status/{job}").json()["status"] == "finished"
    assert api.post(f"/ops/jobs/{uuid.uuid4()}/recover").status_code == 404


def test_folders_are_per_owner_and_archive_keeps_every_file(api, storage):
    from prefect.states import Completed

    owner = f"alice{uuid.uuid4().hex[:6]}"
    made = api.post("/job-folders", json={"owner": owner, "name": "Q1 runs"})
    assert made.status_code == 200, made.text
    folder = made.json()
    assert folder["owner"] == owner and folder["name"] == "Q1 runs" and folder["created_at"]
    assert api.get("/job-folders", params={"owner": owner}).json() == [folder]
    assert api.get("/job-folders", params={"owner": "mallory"}).json() == []
    assert api.put(f"/job-folders/{folder['folder_id']}", json={"owner": "mallory", "name": "mine"}).status_code == 404
    assert api.delete(f"/job-folders/{folder['folder_id']}", params={"owner": "mallory"}).status_code == 404
    assert api.post("/job-folders", json={"owner": owner, "name": "Q1 runs"}).status_code == 409
    assert api.post("/job-folders", json={"owner": owner, "name": "../etc"}).status_code == 400
    assert api.post("/job-folders", json={"owner": owner, "name": "x" * 101}).status_code == 422
    assert api.post("/job-folders", json={"name": "no owner"}).status_code == 422
    assert api.post("/job-folders", content=b'{"owner": "a", "name": "' + b"x" * (6 << 20) + b'"}',
                    headers={"Content-Type": "application/json"}).status_code == 413
    renamed = api.put(f"/job-folders/{folder['folder_id']}", json={"owner": owner, "name": "Q1 final"}).json()
    assert renamed["name"] == "Q1 final"

    job = submit(api, submitted_by=owner)
    (storage.job(job).dir / "results").mkdir(parents=True, exist_ok=True)
    (storage.job(job).dir / "results" / "result.json").write_text('{"status": "completed"}')
    moved = api.put(f"/job/{job}/folder", json={"owner": owner, "folder_id": folder["folder_id"]})
    assert moved.status_code == 200 and moved.json()["organization"]["folder_id"] == folder["folder_id"]
    assert api.put(f"/job/{job}/folder", json={"owner": "mallory", "folder_id": folder["folder_id"]}).status_code == 404
    assert api.put(f"/job/{uuid.uuid4()}/folder", json={"owner": owner, "folder_id": None}).status_code == 404
    assert api.post(f"/job/{job}/archive", json={"owner": owner}).status_code == 409  # still queued
    set_state(job, Completed())
    archived = api.post(f"/job/{job}/archive", json={"owner": owner}).json()
    assert archived["message"] == "Job archived" and archived["job_id"] == job
    org = archived["organization"]
    assert org["archived"] is True and org["archived_by"] == owner and org["archived_at"] and org["folder_id"] == folder["folder_id"]
    assert api.get(f"/job-info/{job}").json()["organization"]["archived"] is True
    item = next(j for j in api.get("/jobs").json() if j["job_id"] == job)
    assert item["organization"]["archived"] is True
    assert (storage.job(job).dir / "results" / "result.json").exists()
    restored = api.post(f"/job/{job}/restore", json={"owner": owner}).json()
    assert restored["organization"]["archived"] is False and restored["organization"]["folder_id"] == folder["folder_id"]
    gone = api.delete(f"/job-folders/{folder['folder_id']}", params={"owner": owner})
    assert gone.status_code == 200 and gone.json()["moved_job_ids"] == [job]
    assert api.get(f"/job-info/{job}").json()["organization"]["folder_id"] is None
    assert api.get("/job-folders", params={"owner": owner}).json() == []


def test_with_tokens_the_owner_is_the_tokens_user(secured_api_url):
    first = httpx.Client(base_url=secured_api_url, timeout=30, headers={"Authorization": "Bearer other-token"})
    second = httpx.Client(base_url=secured_api_url, timeout=30, headers={"Authorization": f"Bearer {API_TOKEN}"})
    with first, second:
        made = first.post("/job-folders", json={"owner": "somebody-else", "name": "Mine"}).json()
        assert made["owner"] == "token1"  # a body owner naming someone else is ignored
        assert [f["folder_id"] for f in first.get("/job-folders").json()] == [made["folder_id"]]
        assert second.get("/job-folders", params={"owner": "token1"}).json() == []
        assert second.put(f"/job-folders/{made['folder_id']}", json={"name": "taken"}).status_code == 404
        assert first.delete(f"/job-folders/{made['folder_id']}").status_code == 200
