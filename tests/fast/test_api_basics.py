"""Job, host and health endpoints that need no worker: ids, choices, errors, the OpenAPI document."""

from __future__ import annotations

from helpers import experiment


def test_unknown_ids_hosts_and_config_choices(api):
    for path in ("/status/", "/progress/", "/result/", "/job-info/", "/logs/", "/file-logs/"):
        r = api.get(path + "00000000-0000-0000-0000-000000000000")
        assert r.status_code == 404 and r.json()["status"] == "not_found", path
    r = api.get("/status/not-a-uuid")
    assert r.status_code == 404 and r.json()["status"] == "not_found"
    assert api.post("/stop/00000000-0000-0000-0000-000000000000").status_code == 404
    assert api.delete("/job/00000000-0000-0000-0000-000000000000").status_code == 404

    r = api.post("/run-simulation", json={"config": experiment(), "target_host": "mars"})
    assert r.status_code == 404 and "local" in r.json()["detail"] and "mars" in r.json()["detail"]
    both = api.post("/run-simulation", json={"config": experiment(), "config_path": "configs/x.yaml"})
    neither = api.post("/run-simulation", json={"target_host": "local"})
    assert both.status_code == 422 and neither.status_code == 422
    assert "exactly one" in both.json()["detail"]
    missing = api.post("/run-simulation", json={"config_path": "configs/nope.yaml"})
    assert missing.status_code == 404 and "config_path" in missing.json()["detail"]
    escape = api.post("/run-simulation", json={"config_path": "../../etc/passwd"})
    assert escape.status_code == 400 and ".." in escape.json()["detail"]
    # Neither metadata nor experiment: fine for a simulator of one's own (Prefect names the job),
    # refused for the reference simulator, which needs experiment.name/run_name.
    own = api.post("/run-simulation", json={"config": {"algorithm": {}}, "command": ["true"], "target_host": "offline"})
    assert own.status_code == 200 and own.json()["job_name"], own.text
    api.post(f"/stop/{own.json()['job_id']}")
    reference = api.post("/run-simulation", json={"config": {"algorithm": {}}, "target_host": "offline"})
    assert reference.status_code == 422 and "experiment" in reference.json()["detail"]


def test_health_reports_each_component(api):
    body = api.get("/health").json()
    assert body["components"]["prefect"]["status"] == "ok"
    assert body["components"]["storage"]["status"] == "ok"
    assert body["components"]["mongodb"]["status"] == "ok"
    assert body["status"] == "ok"


def test_openapi_has_an_example_for_every_request_body(api):
    spec = api.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            ref = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
            if ref:
                name = ref.rsplit("/", 1)[-1]
                assert schemas[name].get("examples"), f"{method.upper()} {path}: {name} has no example"
    assert api.get("/docs").status_code == 200
