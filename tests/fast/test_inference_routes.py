"""/deploy/inferences* without Docker: targets listed from the hosts file, probed over real HTTP
(an inference service of this process on a loopback port, declared as an external target), the
DELETE guard of a bundle a reachable target serves, refusals before any flow run, log paging."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import httpx
import pytest
from helpers import experiment, gateway_call

from core import bundle_store, inference_logs
from deployments.platform import free_port
from inference.service import Serving, make_server
from simulator.agents import make_controller
from simulator.bundle import export_bundle
from simulator.config import validate_config
from simulator.sample import sample_dataset


def _stored_bundle(api, storage) -> str:
    r = api.post("/run-simulation", json={"config": experiment("inference", "t"), "command": ["true"], "target_host": "offline"})
    job = r.json()["job_id"]
    from prefect.states import Completed

    async def done(gateway):
        await gateway.client.set_flow_run_state(uuid.UUID(job), Completed(), force=True)

    gateway_call(done)
    config = validate_config({"experiment": {"name": "x", "run_name": str(uuid.uuid4())}, "algorithm": "rule_based",
                              "simulation": {"buildings": 2, "days": 1}})
    data = sample_dataset(2, 1, 0)
    export_bundle(storage.job(job).dir, config, data, make_controller("rule_based", data, config.params, 0))
    r = api.post(f"/deploy/bundles/from-job/{job}")
    assert r.status_code == 201, r.text
    return r.json()["bundle"]["bundle_id"]


@pytest.fixture
def external_target(platform, storage):
    """An inference service on a loopback port, added to the hosts file as target ``ext``."""
    hosts_file = Path(platform.home) / "hosts.yaml"
    before = hosts_file.read_text()
    port = free_port()
    root = bundle_store.store_dir(storage.root)
    root.mkdir(parents=True, exist_ok=True)
    server = make_server(f"127.0.0.1:{port}", Serving(root))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    hosts_file.write_text(before.replace(
        "      - {id: down,", f'      - {{id: ext, base_url: "http://127.0.0.1:{port}", bundle_mount_path: "{root}"}}\n      - {{id: down,'))
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        hosts_file.write_text(before)
        server.shutdown()
        server.server_close()


def test_targets_listed_and_probed(api, platform):
    listed = {t["id"]: t for t in api.get("/deploy/inferences").json()}
    assert listed["local"]["kind"] == "platform" and listed["local"]["container_name"].startswith("opeva-inference-local-")
    assert listed["local"]["base_url"].startswith("unix:") and listed["local"]["bundle_mount_path"] == "/bundles"
    assert listed["down"] == {"id": "down", "name": "Nobody answers", "base_url": "http://127.0.0.1:9", "container_name": None,
                              "bundle_mount_path": "/bundles", "host": "local", "kind": "external"}
    for target in ("down", "local"):  # nobody listens; no container in this tier
        health = api.get(f"/deploy/inferences/{target}/health").json()
        assert health["reachable"] is False and health["configured"] is False and health["error"], health
    r = api.get("/deploy/inferences/nope/health")
    assert r.status_code == 404 and "nope" in r.json()["detail"]


def test_switch_refusals_come_before_any_flow_run(api, storage):
    bundle = _stored_bundle(api, storage)
    r = api.post("/deploy/inferences/nope/switch-bundle", json={"bundle_id": bundle})
    assert r.status_code == 404 and "nope" in r.json()["detail"] and "flow_run_id" not in r.json()
    r = api.post("/deploy/inferences/local/switch-bundle", json={"bundle_id": "ffffffffffffffff"})
    assert r.status_code == 404 and "ffffffffffffffff" in r.json()["detail"]
    assert api.post("/deploy/inferences/local/switch-bundle", json={}).status_code == 422
    assert api.post("/deploy/inferences/local/switch-bundle", json={"bundle_id": bundle, "x": 1}).status_code == 422


def test_delete_refused_while_a_reachable_target_serves_the_bundle(api, storage, external_target):
    url, server = external_target
    bundle = _stored_bundle(api, storage)
    assert api.get("/deploy/inferences/ext/health").json()["configured"] is False
    root = bundle_store.store_dir(storage.root)
    r = httpx.post(f"{url}/admin/load", json={"manifest_path": str(root / bundle / "artifact_manifest.json"), "bundle_id": bundle})
    assert r.status_code == 200, r.text
    health = api.get("/deploy/inferences/ext/health").json()
    assert health["reachable"] and health["configured"] and health["active_bundle_id"] == bundle
    assert health["active_manifest_path"] == str(root / bundle / "artifact_manifest.json")
    r = api.delete(f"/deploy/bundles/{bundle}")
    assert r.status_code == 409 and "ext" in r.json()["detail"] and r.json()["targets"] == ["ext"]
    assert (root / bundle).is_dir() and bundle in {b["bundle_id"] for b in api.get("/deploy/bundles").json()}, "nothing changed"
    server.shutdown()  # a target that does not answer serves nothing: the delete goes through
    assert api.delete(f"/deploy/bundles/{bundle}").status_code == 200
    assert api.delete(f"/deploy/bundles/{bundle}").status_code == 404


def test_log_history_refusals_and_external_targets(api):
    since = "2026-01-01T00:00:00Z"
    r = api.get("/deploy/inferences/down/logs/history/chunk", params={"since_ts": since})
    assert r.status_code == 200 and r.json()["available"] is False and r.json()["lines"] == []
    r = api.get("/deploy/inferences/local/logs/history/chunk", params={"since_ts": since})
    assert r.status_code == 200 and r.json()["available"] is False and "not running" in r.json()["message"]
    for bad in ("2026-01-01T00:00:00", "2026-01-01T02:00:00+02:00", "yesterday"):
        r = api.get("/deploy/inferences/local/logs/history/chunk", params={"since_ts": bad})
        assert r.status_code == 400 and "since_ts" in r.json()["detail"], bad
    assert api.get("/deploy/inferences/local/logs/history/chunk").status_code == 422, "since_ts is required (as upstream)"
    assert api.get("/deploy/inferences/local/logs/history/chunk", params={"since_ts": since, "limit_lines": 2001}).status_code == 422
    assert api.get("/deploy/inferences/down/logs/stream").status_code == 409
    assert api.get("/deploy/inferences/nope/logs/stream").status_code == 404


def test_log_paging_follows_upstreams_cursors():
    lines = [{"ts": f"t{i:02d}", "text": str(i), "source": "s"} for i in range(10)]
    last = inference_logs.page(lines, None, 4)
    assert [x["text"] for x in last["lines"]] == ["6", "7", "8", "9"] and last["has_more_before"] and not last["has_more_after"]
    before = inference_logs.page(lines, last["next_cursor"], 4)
    assert [x["text"] for x in before["lines"]] == ["2", "3", "4", "5"] and before["prev_cursor"] == "6"
    first = inference_logs.page(lines, before["next_cursor"], 4)
    assert [x["text"] for x in first["lines"]] == ["0", "1", "2", "3"] and first["next_cursor"] is None
    with pytest.raises(inference_logs.LogError):
        inference_logs.page(lines, "x", 4)
