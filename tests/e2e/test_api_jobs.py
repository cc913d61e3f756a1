"""The OPEVA job endpoints over real HTTP, a real Prefect server and a real Docker worker."""

from __future__ import annotations

import json
import os
import subprocess
import time

import httpx
import pytest

from helpers import experiment, prefect_cmd, sh, wait_for

pytestmark = pytest.mark.usefixtures("needs_docker")

WRITES_EVERYTHING = sh(
    'echo "[INFO] Simulation started"; '
    'echo \'{"percent": 40, "stage": "training"}\' > "$OPEVA_PROGRESS_FILE"; '
    'echo "[INFO] own log line" >> "$OPEVA_LOG_FILE"; '
    'echo \'{"status": "completed", "summary": "done", "metrics": {"cost": 3.5}}\' > "$OPEVA_RESULT_FILE"'
)
TICKS = sh('i=0; while true; do i=$((i+1)); echo "[INFO] tick $i"; sleep 0.5; done')


def launch(api, command, **body) -> str:
    payload = {"config": experiment(), "command": command, **body}
    r = api.post("/run-simulation", json=payload)
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def wait_status(api, job_id: str, wanted: set[str], timeout: float = 180) -> str:
    def check():
        status = api.get(f"/status/{job_id}").json()["status"]
        return status if status in wanted else None

    return wait_for(check, timeout, what=f"job {job_id} to reach {wanted}")


def test_simulation_job_lifecycle_over_rest(api, storage):
    r = api.post("/run-simulation", json={"config": experiment("rest", "r1"), "command": WRITES_EVERYTHING, "submitted_by": "alice"})
    assert r.status_code == 200, r.text
    body = r.json()
    job_id = body["job_id"]
    assert body["host"] == "local" and body["job_name"] == "rest-r1" and body["status"] == "queued"

    assert wait_status(api, job_id, {"finished", "failed"}) == "finished"
    status = api.get(f"/status/{job_id}").json()
    assert status["prefect_state"]["type"] == "COMPLETED" and status["host"] == "local"

    assert api.get(f"/progress/{job_id}").json()["percent"] == 40
    assert api.get(f"/result/{job_id}").json() == {"status": "completed", "summary": "done", "metrics": {"cost": 3.5}}

    info = api.get(f"/job-info/{job_id}").json()
    assert info["job_id"] == job_id and info["job_name"] == "rest-r1" and info["target_host"] == "local"
    assert info["experiment_name"] == "rest" and info["run_name"] == "r1" and info["submitted_by"] == "alice"
    assert info["container_id"]
    assert info["labels"]["opeva.phase"] == "running"  # the flow marked setup, then running once the simulator started

    logs = api.get(f"/logs/{job_id}", params={"follow": False}).text.splitlines()
    assert "[INFO] Simulation started" in logs and "[INFO] own log line" in logs
    file_log = api.get(f"/file-logs/{job_id}").text
    assert file_log == "[INFO] own log line\n"  # the simulator's own file only; its stdout is in /logs
    assert api.get(f"/logs/file/{job_id}").text == file_log  # seed 000 alias

    # visible to Prefect's own CLI
    wide = {**os.environ, "COLUMNS": "400"}
    out = subprocess.run(prefect_cmd("flow-run", "ls", "--limit", "50"), capture_output=True, text=True, timeout=60, env=wide)
    assert out.returncode == 0, out.stderr
    assert job_id in out.stdout and "rest-r1" in out.stdout


def test_job_started_with_prefect_cli_appears_in_jobs(api):
    params = json.dumps({"config": experiment("cli", "c1"), "command": ["sh", "-c", "echo cli"], "job_name": "from-cli"})
    out = subprocess.run(prefect_cmd("deployment", "run", "run-simulation/local", "--params", params), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    jobs = api.get("/jobs", params={"limit": 10}).json()
    mine = [j for j in jobs if (api.get(f"/job-info/{j['job_id']}").json()["parameters"].get("job_name") == "from-cli")]
    assert mine, jobs
    assert wait_status(api, mine[0]["job_id"], {"finished", "failed"}) == "finished"
    assert mine[0]["kind"] == "simulation" and mine[0]["host"] == "local"


def test_following_logs_delivers_lines_while_the_job_runs(api):
    job_id = launch(api, sh('echo "[INFO] early-marker" | tee -a "$OPEVA_LOG_FILE"; sleep 12; echo "[INFO] late" | tee -a "$OPEVA_LOG_FILE"'))
    started = time.monotonic()
    with api.stream("GET", f"/logs/{job_id}", params={"follow": "true"}, timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line == "[INFO] early-marker":
                break
    assert api.get(f"/status/{job_id}").json()["status"] == "running"  # it arrived before the job ended
    assert time.monotonic() - started < 60
    now = api.get(f"/file-logs/{job_id}", timeout=30)  # once, by default: answers while the job runs
    assert now.status_code == 200 and "[INFO] early-marker" in now.text and "[INFO] late" not in now.text
    with api.stream("GET", f"/file-logs/{job_id}", params={"follow": "true"}, timeout=120) as r:  # follows to the end
        text = "".join(r.iter_text())
    assert "[INFO] early-marker" in text and "[INFO] late" in text
    assert api.get(f"/status/{job_id}").json()["status"] == "finished"


def test_stop_running_job_then_already_finished(api):
    job_id = launch(api, TICKS)
    wait_status(api, job_id, {"running"}, 90)
    r = api.post(f"/stop/{job_id}")
    assert r.status_code == 200 and r.json()["message"] == "Stop requested; worker should terminate the job"
    assert wait_status(api, job_id, {"stopped"}, 60) == "stopped"
    again = api.post(f"/stop/{job_id}")
    assert again.status_code == 200 and again.json() == {"message": "Job already finished (stopped)", "job_id": job_id, "status": "stopped"}


def test_an_automatic_job_goes_to_the_first_online_host_with_a_free_slot(api):
    """No ``target_host``: ``local`` (first in hosts.yaml, limit 4) is full of pinned jobs, so the
    job goes to ``second``; ``offline`` (no worker) is never chosen (core/placement.py)."""
    pinned = [launch(api, TICKS, target_host="local") for _ in range(4)]
    try:
        r = api.post("/run-simulation", json={"config": experiment(), "command": sh("echo placed")})
        assert r.status_code == 200 and r.json()["host"] == "second", r.text
        auto = r.json()["job_id"]
        assert wait_status(api, auto, {"finished", "failed"}, 120) == "finished"
        assert api.get(f"/job-info/{auto}").json()["target_host"] == "second"
    finally:
        for job in pinned:
            api.post(f"/stop/{job}")
        for job in pinned:
            wait_status(api, job, {"stopped", "canceled"}, 90)


def test_stop_queued_job_is_canceled_and_hosts_report_offline_worker(api):
    job_id = launch(api, TICKS, target_host="offline")  # a pool with no worker: stays queued
    assert api.get(f"/status/{job_id}").json()["status"] == "queued"
    hosts = api.get("/hosts").json()["hosts"]
    assert hosts["offline"]["online"] is False and "no worker online" in hosts["offline"]["message"]
    assert job_id in hosts["offline"]["active_job_ids"] and hosts["offline"]["queued"] >= 1
    assert hosts["local"]["online"] is True and hosts["local"]["concurrency_limit"] == 4
    assert isinstance(hosts["local"]["last_seen"], float)

    r = api.post(f"/stop/{job_id}")
    assert r.status_code == 200 and r.json()["message"] == "Job canceled from queue"
    assert api.get(f"/status/{job_id}").json()["status"] == "canceled"


def test_jobs_list_filters_and_pages(api):
    first = launch(api, sh("true"), job_name="page-a")
    second = launch(api, sh("true"), job_name="page-b")
    wait_status(api, first, {"finished"})
    wait_status(api, second, {"finished"})
    page = api.get("/jobs", params={"limit": 2})
    assert len(page.json()) == 2 and int(page.headers["X-Total-Count"]) >= 2
    assert [j["job_id"] for j in page.json()] == [second, first]  # newest first
    done = page.json()[0]
    assert done["started_at"] and done["finished_at"] and done["run_duration_seconds"] > 0 and done["queue_wait_seconds"] >= 0
    assert api.get("/jobs", params={"limit": 1, "offset": 1}).json()[0]["job_id"] == first
    finished = api.get("/jobs", params={"status": "finished", "host": "local"}).json()
    assert {first, second} <= {j["job_id"] for j in finished}
    assert all(j["status"] == "finished" and j["host"] == "local" for j in finished)
    on_second = launch(api, sh("true"), target_host="second")
    wait_status(api, on_second, {"finished"})
    second_jobs = api.get("/jobs", params={"host": "second"}).json()
    assert on_second in {j["job_id"] for j in second_jobs} and all(j["host"] == "second" for j in second_jobs)
    assert first not in {j["job_id"] for j in second_jobs}


def test_delete_job_refused_while_running_then_removes_run_and_files(api, storage):
    job_id = launch(api, TICKS)
    wait_status(api, job_id, {"running"}, 90)
    r = api.delete(f"/job/{job_id}")
    assert r.status_code == 409 and r.json()["status"] == "running"
    api.post(f"/stop/{job_id}")
    wait_for(lambda: api.get(f"/status/{job_id}").json()["prefect_state"]["type"] == "CANCELLED", 60, what="Cancelled")
    assert storage.job(job_id).dir.exists()
    assert api.delete(f"/job/{job_id}").status_code == 200
    assert not storage.job(job_id).dir.exists()
    gone = api.get(f"/status/{job_id}")
    assert gone.status_code == 404 and gone.json()["status"] == "not_found"


def test_progress_result_and_simulation_data_from_a_container(api):
    script = (
        'echo \'{"progress_pct": 10, "status": "running"}\' > "$OPEVA_PROGRESS_FILE"; '
        'mkdir -p "$OPEVA_JOB_DIR/results/simulation_data/s1"; printf "step,load\\n0,1.5\\n" > "$OPEVA_JOB_DIR/results/simulation_data/s1/b1.csv"'
    )
    job_id = launch(api, sh(script), target_host="second")
    assert wait_status(api, job_id, {"finished", "failed"}) == "finished"
    progress = api.get(f"/progress/{job_id}").json()
    assert progress["percent"] == progress["progress_pct"] == 10 and progress["status"] == "finished" and progress["simulator_status"] == "running"
    assert api.get(f"/result/{job_id}").json() == {"status": "pending", "message": "Result not ready yet.", "job_status": "finished"}  # the command wrote none
    index = api.post("/simulation-data/index", json={"job_id": job_id}).json()
    assert index["session"] == "s1" and index["files"] == ["b1.csv"] and index["file_details"] == [{"relative_path": "b1.csv", "size_bytes": 16}]
    data = api.post("/simulation-data/file", json={"job_id": job_id, "session": "s1", "relative_path": "b1.csv"})
    assert data.status_code == 200 and data.text == "step,load\n0,1.5\n"
    assert api.post("/simulation-data/file", json={"job_id": job_id, "session": "s1", "relative_path": "../../job_info.json"}).status_code == 400


def test_job_image_versions_offers_the_reference_simulator_on_a_fresh_platform(api):
    """tests/e2e/test_images.py has the rest; here: what the UI offers by default can run."""
    body = api.get("/job-images/versions", params={"limit": 100}).json()
    mine = next(t for t in body["tags"] if t["name"] == "reference")
    assert body["repository"] == "opeva-test/opeva-simulator" and mine["reference"] is True
    assert mine["host"] == "local" and mine["hosts"] == ["local"] and mine["digest"] and mine["last_updated"]


def test_saved_config_and_config_path(api, storage):
    r = api.post("/run-simulation", json={"config": experiment("saved", "s1"), "save_as": "saved-exp.yaml", "command": ["true"]})
    assert r.status_code == 200, r.text
    assert (storage.configs_dir / "saved-exp.yaml").is_file()
    job_id = r.json()["job_id"]
    wait_status(api, job_id, {"finished"})
    # The job runs its own copy (two jobs with one save_as never share a file); configs/ keeps the saved one,
    # and job_info.config_path names that file, the one the user chose (upstream §1).
    info = api.get(f"/job-info/{job_id}").json()
    assert info["config_path"] == "configs/saved-exp.yaml" and info["job_info"]["config_path"] == "configs/saved-exp.yaml"
    assert info["resolved_config_path"] == f"jobs/{job_id}/config.yaml"
    again = api.post("/run-simulation", json={"config_path": "configs/saved-exp.yaml", "command": ["true"], "target_host": "second"})
    assert again.status_code == 200 and again.json()["job_name"] == "saved-s1"


def test_run_simulation_accepts_resources_and_retries(api):
    r = api.post("/run-simulation", json={"config": experiment(), "command": ["true"], "resources": {"cpus": 0.5, "memory": "300m"}, "retries": 2})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    wait_status(api, job_id, {"finished"})
    info = api.get(f"/job-info/{job_id}").json()
    assert info["job_variables"]["mem_limit"] == "300m"
    assert info["job_variables"]["container_create_kwargs"] == {"nano_cpus": 500_000_000}
    assert info["retries"] == 2
    bad = api.post("/run-simulation", json={"config": experiment(), "resources": {"memory": "lots"}})
    assert bad.status_code == 422 and "memory" in bad.json()["detail"]
    assert api.post("/run-simulation", json={"config": experiment(), "retries": 99}).status_code == 422


def test_httpx_client_sees_plain_text_logs(api):
    job_id = launch(api, sh('echo "[INFO] one"'))
    wait_status(api, job_id, {"finished"})
    r = api.get(f"/logs/{job_id}")
    assert r.headers["content-type"].startswith("text/plain")
    assert isinstance(r, httpx.Response) and "[INFO] one" in r.text


def test_requeued_job_runs_again_as_a_linked_run(api):
    first = launch(api, sh('echo "[INFO] attempt"'), submitted_by="dave", resources={"memory": "300m"})
    assert wait_status(api, first, {"finished", "failed"}) == "finished"
    r = api.post(f"/ops/jobs/{first}/requeue", json={})
    assert r.status_code == 200, r.text
    again = r.json()["job_id"]
    assert wait_status(api, again, {"finished", "failed"}) == "finished"
    info = api.get(f"/job-info/{again}").json()
    assert info["requeued_from"] == first and info["submitted_by"] == "dave" and info["job_variables"]["mem_limit"] == "300m"
    assert "[INFO] attempt" in api.get(f"/logs/{again}").text
