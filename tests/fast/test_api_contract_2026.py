"""Today's contract at the root (orchestrator d110b5f, OPEVA_UPSTREAM §1-§2) and the 2025 shapes
under /ai-manager-ui, over HTTP against the fast tier's real API (jobs stay queued: no worker)."""

from __future__ import annotations

import uuid

import pytest

from helpers import experiment, gateway_call

GPU_CONFIG = {"metadata": {"experiment_name": "gpu", "run_name": "r"}, "algorithm": {"name": "ppo", "device": "cuda:0"}}


def launch(api, **body):
    return api.post("/run-simulation", json={"config": experiment("c26", "q"), "command": ["true"], "target_host": "offline", **body})


def set_state(job_id: str, *, running: bool, phase: str | None = None) -> None:
    from prefect.states import Running

    async def go(gateway):
        if running:
            await gateway.client.set_flow_run_state(uuid.UUID(job_id), Running(), force=True)
        if phase:
            await gateway.client.update_flow_run_labels(uuid.UUID(job_id), {"opeva.phase": phase})

    gateway_call(go)


@pytest.mark.parametrize("body,detail", [
    ({"target_worker_profile": "gpu"}, "target_worker_profile is only allowed with automatic host selection"),
    ({"image_tag": "calof/opeva_simulator:v1"}, "Image tag must not contain '/', ':' or '@'"),
    ({"image_tag": "v1@sha256"}, "Image tag must not contain '/', ':' or '@'"),
    ({"image_tag": ".hidden"}, "Invalid image tag format"),
    ({"image_tag": "v 1"}, "Invalid image tag"),
    ({"image_tag": "v" * 129}, "Image tag is too long"),
    ({"config": GPU_CONFIG, "target_host": None, "target_worker_profile": "cpu"}, "Config requires GPU; choose Any GPU or a GPU-capable host"),
    ({"config": GPU_CONFIG}, "Config requires GPU, but host 'offline' is not GPU-capable"),
    ({"config": GPU_CONFIG, "target_host": None, "target_worker_profile": "gpu"}, "no GPU-capable host is configured for target_worker_profile 'gpu'; hosts: local, second, offline"),
])
def test_run_simulation_400s_use_upstream_texts_and_queue_nothing(api, body, detail):
    before = len(api.get("/jobs").json())
    r = launch(api, **body)
    assert r.status_code == 400 and r.json() == {"detail": detail}, r.text
    assert len(api.get("/jobs").json()) == before


def test_run_simulation_answer_and_tag_rules(api):
    ok = launch(api, image_tag="v0.2.5_rc-1.x", job_name=None, config={"metadata": {"experiment_name": "exp", "run_name": "run"}})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert {"job_id", "status", "host", "job_name", "image", "image_tag", "target_worker_profile"} <= set(body)
    assert body["status"] == "queued" and body["host"] == "offline" and body["job_name"] == "exp-run" and body["image_tag"] == "v0.2.5_rc-1.x"
    empty = launch(api, image_tag="")  # empty means the host's default, as upstream
    assert empty.status_code == 200 and empty.json()["image_tag"] is None
    for job in (body["job_id"], empty.json()["job_id"]):
        api.post(f"/stop/{job}")


def test_status_has_upstream_fields_and_the_setup_state(api):
    job = launch(api, config=experiment("st", "a")).json()["job_id"]
    queued = api.get(f"/status/{job}").json()
    assert {"job_id", "status", "worker_id", "target_worker_profile", "dispatched_image", "dispatched_image_tag", "status_updated_at", "last_status_at"} <= set(queued)
    assert queued["status"] == "queued" and queued["worker_id"] is None and queued["status_updated_at"] and queued["last_status_at"] == queued["status_updated_at"]
    set_state(job, running=True)  # no label written: the API made the run in setup, so Running never reads running early
    setup = api.get(f"/status/{job}").json()
    assert setup["status"] == "setup" and setup["worker_id"] == "offline" and setup["status_updated_at"] >= queued["status_updated_at"]
    assert job in {j["job_id"] for j in api.get("/jobs", params={"status": "setup"}).json()}
    assert job not in {j["job_id"] for j in api.get("/jobs", params={"status": "running"}).json()}
    host = api.get("/hosts").json()["hosts"]["offline"]
    assert host["info"]["provisioning_job_count"] >= 1 and any(j["job_id"] == job and j["phase"] == "provisioning" for j in host["info"]["active_jobs"])
    set_state(job, running=False, phase="running")  # the container started
    assert api.get(f"/status/{job}").json()["status"] == "running"
    assert job in {j["job_id"] for j in api.get("/jobs", params={"status": "running"}).json()}
    assert api.post(f"/stop/{job}").json()["status"] == "stop_requested"
    assert api.get(f"/status/{uuid.uuid4()}").status_code == 404


def test_jobs_and_queue_fields(api, storage):
    api.post("/experiment-config/create", json={"file_name": "chosen.yaml", "yaml_content": "metadata:\n  experiment_name: ch\n  run_name: one\n", "overwrite": True})
    job = launch(api, config=None, config_path="chosen.yaml", submitted_by="carol", image_tag="v9").json()["job_id"]
    item = next(j for j in api.get("/jobs").json() if j["job_id"] == job)
    assert item["job_info"] == {"job_name": "ch-one", "submitted_by": "carol", "config_path": "configs/chosen.yaml", "target_host": "offline",
                                "image": None, "image_tag": "v9"}
    assert {"submitted_at", "started_at", "finished_at", "queue_wait_seconds", "run_duration_seconds", "queued_start_estimate"} <= set(item)
    queue = next(q for q in api.get("/queue").json() if q["job_id"] == job)
    assert {"job_id", "preferred_host", "require_host", "enqueued_at", "submitted_by", "target_worker_profile", "queued_start_estimate"} <= set(queue)
    assert queue["preferred_host"] == "offline" and queue["submitted_by"] == "carol" and queue["require_host"] is True
    info = api.get(f"/job-info/{job}").json()
    assert info["config_path"] == "configs/chosen.yaml"  # the user's file, not the job's copy
    api.post(f"/stop/{job}")


def test_both_mounts_publish_their_own_truthful_openapi(api):
    root, legacy = api.get("/openapi.json").json(), api.get("/ai-manager-ui/openapi.json").json()
    hosts_ref = root["paths"]["/hosts"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert root["components"]["schemas"][hosts_ref.rsplit("/", 1)[1]]["properties"]["available_hosts"]["items"] == {"type": "string"}
    legacy_ref = legacy["paths"]["/hosts"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert legacy_ref.endswith("/HostsOut2025")
    assert list(root["paths"]["/experiment-config/{file}"]["get"]["responses"]["200"]["content"]) == ["text/yaml"]
    assert "application/json" in legacy["paths"]["/experiment-config/{file}"]["get"]["responses"]["200"]["content"]
    assert set(root["paths"]) == set(legacy["paths"])  # the same routes, re-shaped: not a second API
    assert not any(p.startswith("/ai-manager-ui") for p in root["paths"])
    for path, item in root["paths"].items():
        for method, op in item.items():
            assert {"200", "201", "202", "204"} & set(op["responses"]), (method, path)


def test_ai_manager_ui_mount_runs_the_same_use_cases(api):
    """Not a second API: a job launched under the prefix is the root's job, and the same rules answer."""
    r = api.post("/ai-manager-ui/run-simulation", json={"config": experiment("amui", "1"), "command": ["true"], "target_host": "offline"})
    assert r.status_code == 200, r.text
    job = r.json()["job_id"]
    assert api.get(f"/status/{job}").json()["status"] == api.get(f"/ai-manager-ui/status/{job}").json()["status"] == "queued"
    assert job in {j["job_id"] for j in api.get("/ai-manager-ui/jobs").json()}
    bad = api.post("/ai-manager-ui/run-simulation", json={"config": experiment("amui", "2"), "target_host": "offline", "image_tag": "a:b"})
    assert bad.status_code == 400 and bad.json() == {"detail": "Image tag must not contain '/', ':' or '@'"}
    assert api.post(f"/ai-manager-ui/stop/{job}").json()["status"] == "canceled"
    assert api.get(f"/ai-manager-ui/status/{uuid.uuid4()}").status_code == 404


# The Postman suite's two launches (opeva_backend_api_training 99eb82e), bodies verbatim. Upstream
# answers them 422 (`image` is no field of its JobLaunchRequest, extra="forbid"); we accept
# `image` from older clients and check it at submit: a repository the host does not allow is a
# 400 naming image and host, and nothing is queued (docs/clients.md, "Postman"). The client
# harness prepares the image and its allow-list entry, as the suite assumes, and then gets 200.
POSTMAN_INLINE = {"config": {"experiment": {"name": "inline_postman_test", "run_name": "inline-run-01"}},
                  "save_as": "postman_test_inline.yaml", "image": "calof/algorithms:v0.2.5"}


@pytest.mark.parametrize("host", ["offline", "local"])
def test_postman_launch_with_an_image_the_host_does_not_allow_is_a_400_naming_it(api, host):
    before = len(api.get("/jobs").json())
    r = api.post("/run-simulation", json={**POSTMAN_INLINE, "target_host": host})
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert "'calof/algorithms:v0.2.5' is not allowed on host" in detail and repr(host) in detail, detail
    assert len(api.get("/jobs").json()) == before
