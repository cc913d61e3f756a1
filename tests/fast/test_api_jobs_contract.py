"""The upstream job contract over HTTP, with jobs that stay queued (no worker in this tier).

Runs are moved to Running through Prefect's own API where a test needs a started job:
that is the state a worker would set, and the API reads it back from Prefect.
"""

from __future__ import annotations

import json
import uuid

from helpers import experiment, gateway_call

UPSTREAM_CONFIG = {"metadata": {"experiment_name": "ui", "run_name": "demo"}, "algorithm": {"name": "rule_based"}}


def submit(api, **body) -> dict:
    payload = {"config": experiment("fast", "q"), "command": ["true"], "target_host": "offline", **body}
    r = api.post("/run-simulation", json=payload)
    assert r.status_code == 200, r.text
    return r.json()


def set_running(job_id: str) -> None:
    from prefect.states import Running

    async def go(gateway):
        await gateway.client.set_flow_run_state(uuid.UUID(job_id), Running(), force=True)
        await gateway.client.update_flow_run_labels(uuid.UUID(job_id), {"opeva.phase": "running"})  # as the flow does once its simulator starts

    gateway_call(go)


def test_submit_answers_upstream_fields_names_and_records_options(api, storage):
    body = submit(api, config=UPSTREAM_CONFIG, image="calof/opeva_simulator:v0.2.5", submitted_by="alice",
                  deucalion_options={"partition": "normal-x86"})
    assert body["status"] == "queued" and body["host"] == "offline" and body["job_name"] == "ui-demo"
    assert body["image"] == "calof/opeva_simulator:v0.2.5" and body["image_tag"] is None and body["target_worker_profile"] is None
    info = api.get(f"/job-info/{body['job_id']}").json()
    assert info["parameters"]["image"] == "calof/opeva_simulator:v0.2.5"
    assert "image" not in (info["job_variables"] or {})  # the flow runs the image; the pool's image stays
    assert json.loads(info["labels"]["opeva.deucalion_options"]) == {"partition": "normal-x86"}
    assert info["job_info"]["submitted_by"] == "alice" and info["job_info"]["job_name"] == "ui-demo"
    old_style = submit(api, config=experiment("old", "style"))
    assert old_style["job_name"] == "old-style"
    # target_worker_profile goes with automatic host selection (no target_host): recorded as a label
    auto = submit(api, config=UPSTREAM_CONFIG, target_host=None, target_worker_profile="CPU")
    # the first CPU host with a worker online or an active job (other tests of this tier leave jobs
    # active on either), else the first CPU host; never the GPU or the unreachable one
    assert auto["target_worker_profile"] == "cpu" and auto["host"] in ("local", "second"), auto
    assert api.get(f"/job-info/{auto['job_id']}").json()["labels"]["opeva.target_worker_profile"] == "cpu"
    api.post(f"/stop/{auto['job_id']}")
    bad = api.post("/run-simulation", json={"config": UPSTREAM_CONFIG, "target_worker_profile": "tpu"})
    assert bad.status_code == 400 and bad.json() == {"detail": "target_worker_profile must be 'cpu' or 'gpu'"}


def test_config_path_may_be_a_bare_file_name(api, storage):
    r = api.post("/experiment-config/create", json={"file_name": "ui_demo.yaml", "yaml_content": "metadata:\n  experiment_name: bare\n  run_name: name\n"})
    assert r.status_code == 200, r.text
    body = submit(api, config=None, config_path="ui_demo.yaml")
    assert body["job_name"] == "bare-name"
    info = api.get(f"/job-info/{body['job_id']}").json()
    assert info["parameters"]["config_path"] == "configs/ui_demo.yaml"
    assert submit(api, config=None, config_path="configs/ui_demo.yaml")["job_name"] == "bare-name"
    assert api.post("/run-simulation", json={"config_path": "nope.yaml", "command": ["true"]}).status_code == 404


def test_save_as_creates_once_and_409_names_a_different_file(api, storage):
    first = submit(api, save_as="exclusive.yaml")
    assert (storage.configs_dir / "exclusive.yaml").is_file()
    same = submit(api, save_as="exclusive.yaml")  # same content: fine
    assert same["job_id"] != first["job_id"]
    other = api.post("/run-simulation", json={"config": experiment("other", "x"), "save_as": "exclusive.yaml", "command": ["true"], "target_host": "offline"})
    assert other.status_code == 409 and "configs/exclusive.yaml" in other.json()["detail"]
    assert "name: fast" in (storage.configs_dir / "exclusive.yaml").read_text()


def test_idempotency_key_answers_the_same_job(api):
    key = f"key-{uuid.uuid4()}"
    payload = {"config": experiment("idem", "1"), "command": ["true"], "target_host": "offline"}
    a = api.post("/run-simulation", json=payload, headers={"Idempotency-Key": key})
    b = api.post("/run-simulation", json=payload, headers={"Idempotency-Key": key})
    c = api.post("/run-simulation", json=payload, headers={"Idempotency-Key": key + "-other"})
    assert a.status_code == b.status_code == c.status_code == 200
    assert a.json()["job_id"] == b.json()["job_id"] != c.json()["job_id"]
    assert "Idempotency-Key" in b.json()["message"]


def test_jobs_is_a_bare_array_with_total_header_and_filters(api):
    a, b = submit(api, job_name="list-a"), submit(api, job_name="list-b")
    r = api.get("/jobs")
    assert r.status_code == 200 and isinstance(r.json(), list)
    total = int(r.headers["X-Total-Count"])
    assert total == len(r.json()) >= 2  # every job by default
    item = next(j for j in r.json() if j["job_id"] == b["job_id"])
    assert item["job_info"]["job_name"] == "list-b" and item["status"] == "queued" and item["host"] == "offline"
    assert item["submitted_at"] and item["started_at"] is None and item["finished_at"] is None
    assert item["queue_wait_seconds"] >= 0 and item["run_duration_seconds"] is None
    page = api.get("/jobs", params={"limit": 1, "offset": 0})
    assert len(page.json()) == 1 and int(page.headers["X-Total-Count"]) == total
    queued = api.get("/jobs", params={"status": "queued", "host": "offline"}).json()
    assert {a["job_id"], b["job_id"]} <= {j["job_id"] for j in queued}
    assert all(j["status"] == "queued" and j["host"] == "offline" for j in queued)
    assert api.get("/jobs", params={"status": "bogus"}).status_code == 422


def test_stop_answers_200_in_every_state(api):
    queued = submit(api)["job_id"]
    r = api.post(f"/stop/{queued}")
    assert r.status_code == 200 and r.json() == {"message": "Job canceled from queue", "job_id": queued, "status": "canceled"}
    again = api.post(f"/stop/{queued}")
    assert again.status_code == 200 and again.json()["message"] == "Job already finished (canceled)"

    running = submit(api)["job_id"]
    set_running(running)
    r = api.post(f"/stop/{running}")
    assert r.status_code == 200 and r.json()["message"] == "Stop requested; worker should terminate the job"
    assert api.get(f"/status/{running}").json()["status"] == "stop_requested"
    assert api.post(f"/stop/{running}").json()["message"] == "Stop already requested"
    assert api.post(f"/stop/{uuid.uuid4()}").status_code == 404


def test_progress_and_result_answer_placeholders_then_the_files(api, storage):
    job_id = submit(api)["job_id"]
    p = api.get(f"/progress/{job_id}")
    assert p.status_code == 200 and p.json()["progress"] == "No updates yet." and p.json()["percent"] == 0 and p.json()["status"] == "queued"
    r = api.get(f"/result/{job_id}")
    assert r.status_code == 200 and r.json()["status"] == "pending" and r.json()["message"] == "Result not ready yet."

    job = storage.job(job_id).create()
    job.progress_file.write_text(json.dumps({"progress_pct": 42.5, "status": "training", "episode": 2, "global_step": 300}))
    p = api.get(f"/progress/{job_id}").json()
    assert p["percent"] == p["progress_pct"] == 42.5 and p["episode"] == 2 and p["global_step"] == 300
    assert p["status"] == "queued" and p["simulator_status"] == "training"  # the job's status is Prefect's
    job.result_file.write_text(json.dumps({"status": "completed", "kpis": {"cost": None}}))
    assert api.get(f"/result/{job_id}").json() == {"status": "completed", "kpis": {"cost": None}}  # as the job wrote it


def test_logs_once_file_logs_and_chunks(api, storage):
    job_id = submit(api)["job_id"]
    for path in (f"/logs/{job_id}", f"/file-logs/{job_id}", f"/logs/file/{job_id}"):
        r = api.get(path)
        assert r.status_code == 200 and r.text == f"No logs yet: job {job_id} is queued.\n", path
        assert r.headers["content-type"].startswith("text/plain")
    empty = api.get(f"/logs-chunk/{job_id}").json()
    assert empty == {"job_id": job_id, "text": "", "next_offset": 0, "truncated": False, "available": False, "message": f"No logs yet: job {job_id} is queued."}

    job = storage.job(job_id).create()
    job.log_file.write_text("[INFO] a platform line, not the simulator's\n")  # the merged log is not what /file-logs serves
    job.simulator_log_file.write_bytes(b"line one\nline two\nline three\n")
    assert api.get(f"/file-logs/{job_id}").text == "line one\nline two\nline three\n"
    job.simulator_log_file.write_bytes(b"caf\xc3\xa9 \xff raw\n")  # byte for byte, even bytes that are not UTF-8
    assert api.get(f"/file-logs/{job_id}").content == b"caf\xc3\xa9 \xff raw\n"
    job.simulator_log_file.write_bytes(b"line one\nline two\nline three\n")
    first = api.get(f"/logs-chunk/{job_id}", params={"max_bytes": 9}).json()
    assert first["text"] == "line one\n" and first["next_offset"] == 9 and first["truncated"] is True and first["available"] is True
    rest = api.get(f"/logs-chunk/{job_id}", params={"offset": first["next_offset"]}).json()
    assert rest["text"] == "line two\nline three\n" and rest["truncated"] is False
    tail = api.get(f"/logs-chunk/{job_id}", params={"tail_lines": 1}).json()
    assert tail["text"] == "line three\n" and tail["next_offset"] == 29
    assert api.get(f"/logs-chunk/{job_id}", params={"max_bytes": 0}).status_code == 422
    # following a queued job's file log would wait for ever: once is the default, so this answers
    assert api.get(f"/file-logs/{job_id}", params={"follow": "false"}).status_code == 200
    # over 16 MiB: the first 16 MiB byte for byte (sent a chunk at a time), then where the rest is
    with open(job.simulator_log_file, "r+b") as f:
        f.truncate((16 << 20) + 1000)  # sparse: costs no disk
        f.seek(16 << 20)
        f.write(b"past the cap\n")
    big = api.get(f"/file-logs/{job_id}")
    assert big.status_code == 200 and big.headers["content-type"].startswith("text/plain")
    assert big.content[:29] == b"line one\nline two\nline three\n" and big.content[16 << 20:].decode() == \
        f"\n[... 1000 more bytes: read them with /logs-chunk/<job_id>?offset={16 << 20}]\n"


def test_resolved_config_is_the_config_handed_to_the_job(api, storage):
    job_id = submit(api, config=UPSTREAM_CONFIG)["job_id"]
    r = api.get(f"/job-resolved-config/{job_id}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/yaml")
    import yaml

    assert yaml.safe_load(r.text) == UPSTREAM_CONFIG
    job = storage.job(job_id).create()
    (job.dir / "config.resolved.yaml").write_text("resolved: true\n")
    assert api.get(f"/job-resolved-config/{job_id}").text == "resolved: true\n"
    assert api.get(f"/job-resolved-config/{uuid.uuid4()}").status_code == 404


def test_queue_lists_scheduled_simulation_runs(api):
    job = submit(api, submitted_by="bob")
    queue = api.get("/queue").json()
    mine = next(q for q in queue if q["job_id"] == job["job_id"])
    assert mine["preferred_host"] == "offline" and mine["require_host"] is True and mine["submitted_by"] == "bob" and mine["enqueued_at"]
    api.post(f"/stop/{job['job_id']}")
    assert job["job_id"] not in {q["job_id"] for q in api.get("/queue").json()}


def test_delete_job_message_and_409_while_active(api, storage):
    running = submit(api)["job_id"]
    set_running(running)
    busy = api.delete(f"/job/{running}")
    assert busy.status_code == 409 and busy.json()["status"] == "running" and "stop it" in busy.json()["detail"]
    # As upstream: a queued job, or one whose stop is under way, is deleted at once.
    assert api.post(f"/stop/{running}").json()["status"] == "stop_requested"
    queued = submit(api)["job_id"]
    for job_id in (running, queued):
        storage.job(job_id).create()
        r = api.delete(f"/job/{job_id}")
        assert r.status_code == 200 and r.json() == {"message": f"Job {job_id} deleted successfully"}, r.text
        assert not storage.job(job_id).dir.exists()
        assert api.get(f"/status/{job_id}").status_code == 404
