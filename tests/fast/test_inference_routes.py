"""/deploy/inferences* without Docker: targets listed from the hosts file, probed over real HTTP
(an inference service of this process on a loopback port, declared as an external target), the
DELETE guard of a bundle a reachable target serves, refusals before any flow run, log paging."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest
from helpers import stored_bundle

from core import bundle_store, inference_logs
from deployments.platform import free_port
from inference.service import Serving, make_server


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
    bundle = stored_bundle(api, storage)
    r = api.post("/deploy/inferences/nope/switch-bundle", json={"bundle_id": bundle})
    assert r.status_code == 404 and "nope" in r.json()["detail"] and "flow_run_id" not in r.json()
    r = api.post("/deploy/inferences/local/switch-bundle", json={"bundle_id": "ffffffffffffffff"})
    assert r.status_code == 404 and "ffffffffffffffff" in r.json()["detail"]
    assert api.post("/deploy/inferences/local/switch-bundle", json={}).status_code == 422
    assert api.post("/deploy/inferences/local/switch-bundle", json={"bundle_id": bundle, "x": 1}).status_code == 422


def test_delete_refused_while_a_reachable_target_serves_the_bundle(api, storage, external_target):
    url, server = external_target
    bundle = stored_bundle(api, storage)
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


def test_bundle_file_content_as_upstream(api, storage):
    bundle = stored_bundle(api, storage)
    r = api.get(f"/deploy/bundles/{bundle}/files/content", params={"path": "artifact_manifest.json"})
    body = r.json()
    assert r.status_code == 200 and body["is_text"] and not body["truncated"] and body["bundle_id"] == bundle
    assert json.loads(body["content"])["manifest_version"] == 1 and body["size_bytes"] == len(body["content"].encode())
    folder = bundle_store.store_dir(storage.root) / bundle
    (folder / "big.txt").write_text("é" * 150_000)  # 300 kB of 2-byte characters
    (folder / "weights.bin").write_bytes(bytes(range(256)) * 4)
    big = api.get(f"/deploy/bundles/{bundle}/files/content", params={"path": "big.txt"}).json()
    assert big["truncated"] and big["is_text"] and big["size_bytes"] == 300_000 and big["content"] == "é" * 100_000
    binary = api.get(f"/deploy/bundles/{bundle}/files/content", params={"path": "weights.bin"}).json()
    assert binary["is_text"] is False and binary["content"] is None and binary["size_bytes"] == 1024
    (folder / "link.json").symlink_to("/etc/passwd")
    for path, status in [("../index.json", 400), ("/etc/passwd", 400), ("a/../../x", 400), ("nope.json", 404), ("link.json", 404)]:
        r = api.get(f"/deploy/bundles/{bundle}/files/content", params={"path": path})
        assert r.status_code == status and "detail" in r.json(), (path, r.text)
    assert api.get("/deploy/bundles/ffffffffffffffff/files/content", params={"path": "artifact_manifest.json"}).status_code == 404


def _folder_upload(folder: Path, top: str = "mybundle") -> tuple[list, dict]:
    files = [("files", (f"{top}/{p.relative_to(folder).as_posix()}", p.read_bytes(), "application/octet-stream"))
             for p in sorted(folder.rglob("*")) if p.is_file()]
    return files, {"relative_paths": [name for _, (name, _, _) in files]}


def test_upload_folder_as_the_ui_sends_it(api, storage, tmp_path):
    bundle = stored_bundle(api, storage)
    folder = bundle_store.store_dir(storage.root) / bundle
    files, form = _folder_upload(folder)
    r = api.post("/deploy/bundles/upload-folder", files=files, data=form)
    assert r.status_code == 200 and r.json() == {"created": False, "bundle": r.json()["bundle"]} and r.json()["bundle"]["bundle_id"] == bundle, \
        "the same content is the same bundle, whoever sent it"
    (tmp_path / "b").mkdir()
    for name, content, _ in (f for _, f in files):
        (tmp_path / "b" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "b" / name).write_bytes(content)
    (tmp_path / "b" / "mybundle" / "notes.txt").write_text("uploaded by hand")
    files, form = _folder_upload(tmp_path / "b" / "mybundle", top="outer/mybundle")  # one folder down
    r = api.post("/deploy/bundles/upload-folder", files=files, data=form)
    assert r.status_code == 201, r.text
    entry = r.json()["bundle"]
    assert r.json()["created"] and entry["name"] == "outer" and entry["file_count"] == len(files) and entry["source_job_id"] is None
    listed = {f["path"] for f in api.get(f"/deploy/bundles/{entry['bundle_id']}/files").json()["files"]}
    assert "artifact_manifest.json" in listed and "notes.txt" in listed, listed
    before = api.get("/deploy/bundles").json()
    bad = [
        ([("files", ("x/policy.json", b"{}", "application/json"))], {"relative_paths": ["x/policy.json"]}, "no artifact_manifest.json"),
        ([("files", ("artifact_manifest.json", b"[1]", "application/json"))], {"relative_paths": ["artifact_manifest.json"]}, "not a JSON object"),
        ([("files", ("a", b"{}", "application/json"))] * 2, {"relative_paths": ["artifact_manifest.json", "../escape.json"]}, "stay inside"),
        ([("files", ("a", b"{}", "application/json"))] * 2, {"relative_paths": ["artifact_manifest.json", "/etc/x"]}, "stay inside"),
        ([("files", ("a", b"{}", "application/json"))] * 2, {"relative_paths": ["artifact_manifest.json"]}, "1 relative_paths"),
        ([("files", ("a", b"{}", "application/json"))] * 2, {"relative_paths": ["artifact_manifest.json"] * 2}, "twice"),
    ]
    for files, form, words in bad:
        r = api.post("/deploy/bundles/upload-folder", files=files, data=form)
        assert r.status_code == 400 and words in r.json()["detail"], (form, r.text)
    assert api.get("/deploy/bundles").json() == before, "a refused upload stores nothing"
    assert not [p for p in bundle_store.store_dir(storage.root).iterdir() if p.name.startswith(".upload-")]


def test_unknown_targets_and_bundles_are_404_on_every_route_and_change_nothing(api, storage):
    """What the Deploy page can ask about a target or bundle that is not there: a 404 naming it."""
    bundle = stored_bundle(api, storage)
    before = api.get("/deploy/bundles").json()
    since = {"since_ts": "2026-01-01T00:00:00Z"}
    for method, path, kw in [
        ("GET", "/deploy/inferences/nope/health", {}),
        ("POST", "/deploy/inferences/nope/switch-bundle", {"json": {"bundle_id": bundle}}),
        ("GET", "/deploy/inferences/nope/logs/stream", {}),
        ("GET", "/deploy/inferences/nope/logs/history/chunk", {"params": since}),
    ]:
        r = api.request(method, path, **kw)
        assert r.status_code == 404 and "nope" in r.json()["detail"], (path, r.text)
    for method, path, kw in [
        ("GET", "/deploy/bundles/0123456789abcdef/files", {}),
        ("GET", "/deploy/bundles/0123456789abcdef/files/content", {"params": {"path": "artifact_manifest.json"}}),
        ("DELETE", "/deploy/bundles/0123456789abcdef", {}),
        ("POST", "/deploy/inferences/local/switch-bundle", {"json": {"bundle_id": "0123456789abcdef"}}),
    ]:
        r = api.request(method, path, **kw)
        assert r.status_code == 404 and "0123456789abcdef" in r.json()["detail"], (path, r.text)
    for odd in ("..", "%2e%2e", "index.json", ".upload-x"):  # names that are not bundle ids never reach the disk
        r = api.get(f"/deploy/bundles/{odd}/files")
        assert r.status_code in (404, 422) and "detail" in r.json(), (odd, r.text)
    assert api.get("/deploy/bundles").json() == before


def test_a_target_that_does_not_answer(api):
    """No container for local in this tier, nobody on down's port: health says so in its body (the
    page shows "offline"), the followed log is a 502 naming the container, and nothing hangs."""
    for target in ("local", "down"):
        health = api.get(f"/deploy/inferences/{target}/health")
        assert health.status_code == 200 and health.json()["reachable"] is False and health.json()["error"], health.text
    r = api.get("/deploy/inferences/local/logs/stream", params={"tail": 10})
    assert r.status_code == 502 and "opeva-inference-local-" in r.json()["detail"], r.text


def test_more_bad_uploads_are_400_and_store_nothing(api, storage):
    before = api.get("/deploy/bundles").json()
    bad = [
        ([("files", ("b/artifact_manifest.json", b"not json {", "application/json"))], {"relative_paths": ["b/artifact_manifest.json"]}, "JSON"),
        ([("files", ("b/artifact_manifest.json", b"{}", "application/json"))], {"relative_paths": ["b/c/d/artifact_manifest.json"]}, "artifact_manifest.json"),
        ([("files", ("a", b"{}", "application/json"))] * 2, {"relative_paths": ["artifact_manifest.json", "./artifact_manifest.json"]}, "twice"),
    ]
    for files, form, words in bad:
        r = api.post("/deploy/bundles/upload-folder", files=files, data=form)
        assert r.status_code == 400 and words in r.json()["detail"], (form, r.text)
    r = api.post("/deploy/bundles/upload-folder", data={"name": "nothing"})
    assert 400 <= r.status_code < 500 and "detail" in r.json(), r.text
    assert api.get("/deploy/bundles").json() == before


@pytest.fixture(scope="module")
def ui_api(platform):
    """An API with an Origin allow-list, as run_all.sh starts it for energaize_ui."""
    from deployments.platform import Platform

    api = Platform(home=platform.home, prefect_port=platform.prefect_port, mongo_port=platform.mongo_port,
                   api_port=free_port(), data_dir=platform.data_dir)
    api.start_api(OPEVA_CORS_ORIGINS="http://ui.example:5173", OPEVA_HOSTS_FILE=str(platform.home / "hosts.yaml"))
    yield api.api_url
    api.stop()


def test_deploy_state_changes_from_a_foreign_origin_are_refused(api, storage, ui_api):
    """A folder upload is multipart, a 'simple' request a browser sends with no preflight: the server
    itself refuses it from an origin not allowed (and a switch or delete too); the UI's origin gets through."""
    bundle = stored_bundle(api, storage)
    folder = bundle_store.store_dir(storage.root) / bundle
    files, form = _folder_upload(folder, top="foreign")
    before = api.get("/deploy/bundles").json()
    evil = {"Origin": "http://evil.example"}
    r = httpx.post(f"{ui_api}/deploy/bundles/upload-folder", files=files, data=form, headers=evil)
    assert r.status_code == 403 and "evil.example" in r.json()["detail"] and "access-control-allow-origin" not in r.headers
    assert httpx.delete(f"{ui_api}/deploy/bundles/{bundle}", headers=evil).status_code == 403
    assert httpx.post(f"{ui_api}/deploy/inferences/local/switch-bundle", json={"bundle_id": bundle}, headers=evil).status_code == 403
    assert api.get("/deploy/bundles").json() == before and (folder / "artifact_manifest.json").is_file()
    ok = httpx.post(f"{ui_api}/deploy/bundles/upload-folder", files=files, data=form, headers={"Origin": "http://ui.example:5173"})
    assert ok.status_code == 200 and ok.json()["bundle"]["bundle_id"] == bundle, ok.text
    assert ok.headers["access-control-allow-origin"] == "http://ui.example:5173"
