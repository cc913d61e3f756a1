"""Ops actions, experiment configs (singular paths), hosts, image tags and simulation data, over HTTP.

Traversal tests send raw request targets (``%2e%2e`` is not normalised away by the client),
so they reach the app and its handlers.
"""

from __future__ import annotations

import os
import time
import uuid

import httpx
import pytest

from helpers import experiment


def submit(api, **body) -> str:
    r = api.post("/run-simulation", json={"config": experiment("ops", "o"), "command": ["true"], "target_host": "offline", **body})
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def raw_get(api, target: str) -> httpx.Response:
    """GET with the request target sent exactly as written."""
    request = api.build_request("GET", api.base_url.join("/"))
    request.url = request.url.copy_with(raw_path=target.encode())
    return api.send(request)


def test_requeue_makes_a_linked_run(api):
    old = submit(api, submitted_by="carol", retries=2, job_name="carol-job")
    active = api.post(f"/ops/jobs/{old}/requeue", json={})
    assert active.status_code == 409 and active.json()["status"] == "queued" and "force" in active.json()["detail"]
    api.post(f"/stop/{old}")
    r = api.post(f"/ops/jobs/{old}/requeue", json={"force": False})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["previous_job_id"] == old and body["job_id"] != old and body["status"] == "queued" and body["host"] == "offline"
    new_info = api.get(f"/job-info/{body['job_id']}").json()
    assert new_info["requeued_from"] == old and new_info["parameters"]["submitted_by"] == "carol"
    assert new_info["job_name"] == "carol-job" and new_info["retries"] == 2  # its name and retry policy carried over
    assert new_info["labels"]["opeva.phase"] == "setup"  # a new run starts in setup (core/states.py fresh_labels)
    assert f"requeued-as:{body['job_id']}" in api.get(f"/job-info/{old}").json()["tags"]
    moved = api.post(f"/ops/jobs/{body['job_id']}/requeue", json={"force": True, "preferred_host": "second"})
    assert moved.status_code == 200 and moved.json()["host"] == "second"
    assert api.get(f"/status/{body['job_id']}").json()["status"] == "canceled"  # force cancelled the active one first
    assert api.post(f"/ops/jobs/{old}/requeue", json={"preferred_host": "mars"}).status_code == 404
    assert api.post(f"/ops/jobs/{uuid.uuid4()}/requeue").status_code == 404


def test_fail_cancel_and_stop_record_the_reason(api):
    job = submit(api)
    r = api.post(f"/ops/jobs/{job}/fail", json={"reason": "host lost"})
    assert r.status_code == 200 and r.json() == {"message": "Job marked failed", "job_id": job, "status": "failed"}
    status = api.get(f"/status/{job}").json()
    assert status["status"] == "failed" and "host lost" in status["prefect_state"]["message"]
    again = api.post(f"/ops/jobs/{job}/fail", json={"reason": "twice"})
    assert again.status_code == 409 and again.json()["status"] == "failed"
    assert api.post(f"/ops/jobs/{job}/fail", json={"reason": "twice", "force": True}).status_code == 200

    refused = api.post(f"/ops/jobs/{job}/cancel", json={"reason": "x"})
    assert refused.status_code == 409
    queued = submit(api)
    c = api.post(f"/ops/jobs/{queued}/cancel", json={"reason": "not needed"})
    assert c.status_code == 200 and c.json()["message"] == "Job canceled from queue" and c.json()["status"] == "canceled"
    assert "not needed" in api.get(f"/status/{queued}").json()["prefect_state"]["message"]

    other = submit(api)
    s = api.post(f"/ops/jobs/{other}/stop", json={"reason": "operator"})
    assert s.status_code == 200 and s.json()["message"] == "Job canceled from queue"
    assert "operator" in api.get(f"/status/{other}").json()["prefect_state"]["message"]
    assert api.post(f"/ops/jobs/{other}/stop").json()["message"] == "Job already finished (canceled)"
    assert api.post(f"/ops/jobs/{uuid.uuid4()}/fail", json={}).status_code == 404


def test_cleanups_delete_finished_jobs_and_files_never_active_ones(api, storage):
    done, active = submit(api), submit(api)
    api.post(f"/stop/{done}")
    storage.job(done).create()
    storage.job(active).create()
    r = api.post("/ops/jobs/cleanup", json={"only": [done, active, str(uuid.uuid4())]})
    assert r.status_code == 200 and r.json()["removed"] == [done] and r.json()["count"] == 1 and r.json()["kept_active"] == [active]
    assert not storage.job(done).dir.exists() and storage.job(active).dir.exists()
    assert api.get(f"/status/{done}").status_code == 404
    kept = api.post("/ops/jobs/cleanup", json={"only": [active], "keep": [active]}).json()
    assert kept["count"] == 0

    q = api.post("/ops/queue/cleanup", json={})
    assert q.status_code == 200 and active not in q.json()["removed"]  # it can start: it stays
    forced = api.post("/ops/queue/cleanup", json={"force": True}).json()
    assert active in forced["removed"] and forced["count"] == len(forced["removed"])
    assert api.get(f"/status/{active}").json()["status"] == "canceled"


def test_experiment_config_singular_routes_with_upstream_messages(api, storage):
    text = "# a comment\nmetadata:\n  experiment_name: cfg\n  run_name: r1\n"
    r = api.post("/experiment-config/create", json={"file_name": "sing.yaml", "yaml_content": text})
    assert r.status_code == 200 and r.json()["message"] == "Config saved" and r.json()["file"] == "sing.yaml"
    assert (storage.configs_dir / "sing.yaml").read_text() == text  # kept as sent, comments too
    assert "sing.yaml" in api.get("/experiment-configs").json()
    # root (today's contract): the file as stored, raw, whatever the Accept header says
    for raw in (api.get("/experiment-config/sing.yaml", headers={"Accept": "*/*"}), api.get("/experiment-config/sing.yaml", headers={"Accept": "application/json"})):
        assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/yaml") and raw.text == text
    # /ai-manager-ui (2025): JSON by default, raw YAML when asked
    view = api.get("/ai-manager-ui/experiment-config/sing.yaml", headers={"Accept": "*/*"})
    assert view.json()["config"] == {"metadata": {"experiment_name": "cfg", "run_name": "r1"}} and view.json()["yaml"] == text
    for raw in (api.get("/ai-manager-ui/experiment-config/sing.yaml", headers={"Accept": "text/yaml"}), api.get("/ai-manager-ui/experiment-config/sing.yaml?format=yaml")):
        assert raw.headers["content-type"].startswith("text/yaml") and raw.text == text
    assert api.get("/experiment-configs/sing.yaml").json()["file_name"] == "sing.yaml"  # plural alias (the seeds' view)

    bad = api.post("/experiment-config/create", json={"file_name": "bad.yaml", "yaml_content": "a: 1\nb: [unclosed\n"})
    assert bad.status_code == 422 and "Invalid YAML" in bad.json()["detail"] and "line 3" in bad.json()["detail"]
    assert bad.json()["line"] == 3 and isinstance(bad.json()["column"], int) and not (storage.configs_dir / "bad.yaml").exists()
    put = api.put("/experiment-config/sing.yaml", json={"config": {"metadata": {"experiment_name": "cfg", "run_name": "r2"}}})
    assert put.status_code == 200 and put.json()["message"] == "Config updated" and put.json()["file"] == "sing.yaml"
    assert api.get("/ai-manager-ui/experiment-config/sing.yaml").json()["config"]["metadata"]["run_name"] == "r2"
    assert api.put("/experiment-config/absent.yaml", json={"yaml_content": "a: 1\n"}).status_code == 404
    d = api.delete("/experiment-config/sing.yaml")
    assert d.status_code == 200 and d.json() == {"message": "Config sing.yaml deleted successfully"}
    assert api.delete("/experiment-config/sing.yaml").status_code == 404
    assert api.get("/experiment-config/sing.yaml").status_code == 404 and api.get("/ai-manager-ui/experiment-config/sing.yaml").status_code == 404


def test_energaize_edit_round_trip_stores_exactly_the_text(api, storage):
    """energaize_ui reads the raw YAML, edits it as text and PUTs it back: the file is that text,
    byte for byte (no JSON wrapper, no added newline), and a job launched from it runs it."""
    api.post("/experiment-config/create", json={"file_name": "edit.yaml", "yaml_content": "metadata:\n  experiment_name: ed\n  run_name: r1\n", "overwrite": True})
    shown = api.get("/experiment-config/edit.yaml").text
    edited = shown.replace("r1", "r2") + "# tuned by hand\nseed: 3"  # no final newline
    r = api.put("/experiment-config/edit.yaml", json={"yaml_content": edited})
    assert r.json() == {"message": "Config updated", "file": "edit.yaml", "file_name": "edit.yaml", "config_path": "configs/edit.yaml"}
    assert (storage.configs_dir / "edit.yaml").read_bytes() == edited.encode() and api.get("/experiment-config/edit.yaml").text == edited
    job = submit(api, config=None, config_path="configs/edit.yaml")
    info = api.get(f"/job-info/{job}").json()
    assert info["job_name"] == "ed-r2" and info["config_path"] == "configs/edit.yaml" and info["job_info"]["config_path"] == "configs/edit.yaml"
    api.post(f"/stop/{job}")


@pytest.mark.parametrize("target", ["/experiment-config/%2e%2e", "/experiment-config/%2e%2e%2fsecret.yaml", "/experiment-config/..%2Fsecret.yaml",
                                    "/experiment-config/%2Fetc%2Fpasswd", "/experiment-configs/.secret.yaml", "/config/%2e%2e%2f%2e%2e%2fsecret.yaml"])
def test_config_traversal_raw_paths_never_serve_a_file(api, storage, target):
    (storage.root / "secret.yaml").write_text("secret: 1\n")
    (storage.configs_dir / ".secret.yaml").write_text("secret: 1\n")
    r = raw_get(api, target)
    assert r.status_code in (404, 422), (target, r.status_code, r.text)
    assert "secret" not in r.text.replace(target, "").replace("secret.yaml", "") and "detail" in r.json()


def test_hosts_answer_names_at_the_root_objects_under_ai_manager_ui(api):
    job = submit(api)
    body = api.get("/hosts").json()
    assert body["available_hosts"] == list(body["hosts"]) and all(isinstance(n, str) for n in body["available_hosts"])
    assert {"local", "second", "offline"} <= set(body["available_hosts"])
    off = body["hosts"]["offline"]
    # no worker in this tier: a host counts as online only while it holds a started job (upstream's rule)
    assert off["online"] is (off["running"] > 0) and off["last_seen"] is None and off["queued"] >= 1 and off["pool"] == "offline"
    assert job in off["active_job_ids"] and "no worker online" in off["message"]
    assert (off["current_job_id"] is None) == (off["running"] == 0) and off["current_job_status"] in (None, "dispatched", "setup", "running", "stop_requested")
    info = off["info"]
    assert info["executor"] == "process" and info["gpu_enabled"] is False and info["max_active_jobs"] == 1 and info["worker_version"] is None
    assert info["active_job_count"] == len(off["active_job_ids"]) and job in info["active_job_ids"]
    assert info["running_job_count"] + info["provisioning_job_count"] == off["running"]
    entry = next(j for j in info["active_jobs"] if j["job_id"] == job)
    assert entry["status"] == "queued" and entry["phase"] == "queued" and entry["queue_pos"] >= 1 and entry["ahead"] == entry["queue_pos"] - 1
    assert {"slurm_job_id", "slurm_state", "updated_at", "job_name"} <= set(entry)
    legacy = api.get("/ai-manager-ui/hosts").json()
    assert {"name": "offline", "host": "offline"} in legacy["available_hosts"]
    assert [h["name"] for h in legacy["available_hosts"]] == list(legacy["hosts"]) == body["available_hosts"]
    api.post(f"/stop/{job}")
    after = api.get("/hosts").json()["hosts"]["offline"]["info"]
    assert after["last_job_id"] is not None and after["last_terminal_status"] in ("canceled", "stopped", "finished", "failed") and after["last_status_at"]


def test_job_image_versions(api):
    """The shape and the refusals; what an engine holds is read in tests/e2e/test_images.py."""
    assert api.get("/job-images/versions", params={"repository": "Not A Repo"}).status_code == 422
    assert api.get("/job-images/versions", params={"limit": 0}).status_code == 422
    default = api.get("/job-images/versions", params={"limit": 5})
    assert default.status_code == 200, default.text
    body = default.json()
    assert body["repository"] == "opeva-test/opeva-simulator" and body["sif_repository"] == "opeva-test/opeva-simulator_sif"  # local's simulator_image
    assert body["count"] == len(body["tags"]) <= 5 and body["hosts"] == ["local"]
    offline = api.get("/job-images/versions", params={"repository": "calof/opeva_simulator"}).json()
    assert offline["tags"] == [] and "'offline'" in offline["reason"] and "not reachable" in offline["reason"]
    none = api.get("/job-images/versions", params={"repository": f"no-such-repo-{uuid.uuid4().hex[:8]}"}).json()
    assert none["tags"] == [] and none["count"] == 0 and "no host may run" in none["reason"]


def test_simulation_data_index_and_files(api, storage):
    job = submit(api)
    assert api.post("/simulation-data/index", json={"job_id": job}).status_code == 404  # nothing exported yet
    base = storage.job(job).dir / "results" / "simulation_data"
    (base / "s1").mkdir(parents=True)
    (base / "s1" / "old.csv").write_text("a\n1\n")
    time.sleep(0.05)
    (base / "s2" / "day_2026-11-23").mkdir(parents=True)
    (base / "s2" / "day_2026-11-23" / "building_1.csv").write_text("time_step,load\n0,1.5\n")
    os.utime(base / "s2", None)
    idx = api.post("/simulation-data/index", json={"job_id": job, "session": "latest"}).json()
    assert idx["session"] == "s2" and idx["sessions"] == ["s1", "s2"] and idx["available_days"] == ["2026-11-23"]
    assert idx["files"] == ["day_2026-11-23/building_1.csv"]  # strings, as upstream (the maintainers' collector drops anything else)
    assert idx["file_details"] == [{"relative_path": "day_2026-11-23/building_1.csv", "size_bytes": 21}]
    assert idx["root_path"] == f"jobs/{job}/results/simulation_data/s2"
    f = api.post("/simulation-data/file", json={"job_id": job, "session": "s2", "relative_path": "day_2026-11-23/building_1.csv"})
    assert f.status_code == 200 and f.text == "time_step,load\n0,1.5\n" and f.headers["content-type"].startswith("text/csv")
    for rel in ("../s1/old.csv", "day_2026-11-23/../../s1/old.csv", "/etc/passwd", ".."):
        r = api.post("/simulation-data/file", json={"job_id": job, "session": "s2", "relative_path": rel})
        assert r.status_code == 400 and "detail" in r.json(), rel
    assert api.post("/simulation-data/index", json={"job_id": job, "session": "../s1"}).status_code == 400
    assert api.post("/simulation-data/file", json={"job_id": job, "session": "s2", "relative_path": "missing.csv"}).status_code == 404
    assert api.post("/simulation-data/index", json={"job_id": str(uuid.uuid4())}).status_code == 404
    api.post(f"/stop/{job}")


def test_openapi_declares_models_examples_and_no_security_when_auth_is_off(api, secured_api_url):
    spec = api.get("/openapi.json").json()
    assert "securitySchemes" not in spec.get("components", {})
    mine = ("/run-simulation", "/status", "/jobs", "/job-info", "/stop", "/job/", "/queue", "/progress", "/result", "/logs", "/file-logs",
            "/job-resolved-config", "/simulation-data", "/experiment-config", "/hosts", "/job-images", "/ops", "/health")
    schemas = spec["components"]["schemas"]
    for path, ops in spec["paths"].items():
        if not path.startswith(mine):
            continue
        for method, op in ops.items():
            assert "security" not in op, (method, path)
            ok = op["responses"]["200"]["content"]
            media = next(iter(ok.values()))
            ref = media.get("schema", {}).get("$ref") or media.get("schema", {}).get("items", {}).get("$ref")
            assert ref or media.get("example") or media.get("schema", {}).get("type") in ("string", "array"), (method, path)
            if ref:
                assert schemas[ref.rsplit("/", 1)[-1]].get("examples") or path in ("/experiment-configs",), (method, path, ref)
            if path != "/health":
                assert op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("ValidationErrorBody")
            if "{job_id}" in path:
                assert "404" in op["responses"], (method, path)
    secured = httpx.get(f"{secured_api_url}/openapi.json").json()
    assert "bearerAuth" in secured["components"]["securitySchemes"]
    assert "401" in secured["paths"]["/jobs"]["get"]["responses"]
