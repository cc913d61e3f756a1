"""energaize_ui's own requests, replayed cross-origin against the real API (issue 19).

``fixtures/energaize_requests.json`` is our recording of every request energaize_ui 3111ff7
sent during bench/clients/energaize_journeys.mjs (method, route, query keys, the headers CORS
looks at, the body's shape, and the preflight the browser sent first). CI cannot fetch or build
the UI, so this file replays each of them with the UI's ``Origin`` against an API started with
that origin allowed (``OPEVA_CORS_ORIGINS``), the way the browser would: the preflight first
where the browser sent one, then the request; and checks the answer has what the UI's source
reads (field names and types, from src/types/index.ts and src/api/trainingApi.ts at 3111ff7).

Written ahead of the CORS and contract work of issue 19 (helpers `contract`, `insight`,
`datasets`, `images`): it fails on main until those merge. Nothing here is skipped.
"""

from __future__ import annotations

import io
import json
import os
from datetime import datetime
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "energaize_requests.json").read_text())
REQUESTS = FIXTURE["requests"]
# Two Deploy-page calls need what this tier does not run (an inference container, the control
# worker): the switch and the followed log. Here their preflight and CORS headers are checked on
# answers that need neither (an unknown bundle: 404 before any flow run; no container: 502); what
# they do is judged by tests/e2e/test_inference.py and the Deploy journeys (bench/clients/).
CORS_ONLY = {("POST", "/deploy/inferences/{target}/switch-bundle"): 404, ("GET", "/deploy/inferences/{target}/logs/stream"): 502}
UI_ORIGIN = "http://energaize-ui.test:3000"
OWNER = "Tiago Fonseca"  # the UI sends its signed-in user's name as owner and submitted_by
SITE = "eui_site"
OFFLINE = "offline"  # the tier's host with no worker: jobs submitted there stay queued


# -- what the UI reads in each answer ---------------------------------------------------------
# A spec is a type name, a list [spec] (every item), or a dict {key: spec}; a key ending in "?"
# may be absent; a type name ending in "?" may be null. Types: str, num, bool, dict, any, and time:
# epoch seconds or an ISO 8601 string (the UI reads both: utils/time.ts formatDateTime, JobsPage toEpochMs).

ESTIMATE = {"available": "bool", "kind?": "str", "reason?": "str?", "estimated_start_at?": "any", "estimated_start_seconds?": "num?"}
ORGANIZATION = {"folder_id?": "str?", "archived": "bool", "archived_at?": "any", "archived_by?": "str?"}
JOB = {"job_id": "str", "status": "str",
       "job_info": {"job_name": "str", "submitted_by": "str?", "config_path": "str?", "target_host": "str?", "image_tag?": "str?"},
       "submitted_at": "time?", "queue_wait_seconds": "num?", "run_duration_seconds": "num?",
       "queued_start_estimate": "dict?", "estimated_start_at": "any", "estimated_start_seconds": "num?"}
HOST = {"online": "bool", "last_seen": "num?",
        "info": {"executor": "str", "max_active_jobs": "num", "active_job_count": "num", "gpu_enabled": "bool"}}
FOLDER = {"folder_id": "str", "name": "str", "owner": "str"}
ORGANIZED = {"message": "str", "job_id": "str", "organization": ORGANIZATION}
MESSAGE = {"message": "str"}
DATASET = {"name": "str", "description?": "str?", "format": "str", "type?": "str", "formats?": ["str"]}

SHAPES: dict[tuple[str, str], Any] = {
    ("GET", "/jobs"): [JOB],
    ("GET", "/queue"): [{"job_id": "str", "preferred_host": "str?", "require_host": "bool", "enqueued_at": "time?",
                         "submitted_by": "str?", "queued_start_estimate": ESTIMATE}],
    ("GET", "/hosts"): {"available_hosts": ["str"], "hosts": "dict"},
    ("GET", "/status/{job_id}"): {"job_id": "str", "status": "str"},
    ("GET", "/job-info/{job_id}"): {"job_id": "str", "job_name": "str", "config_path": "str", "submitted_by": "str?",
                                    "queued_at": "time?", "total_duration_seconds": "num?", "container_name": "str?",
                                    "organization?": ORGANIZATION,
                                    # JobDetailPage reads result_storage.transfer.bytes and .installed.bytes (it crashed without transfer)
                                    "result_storage?": {"transfer": {"bytes?": "num?"}, "installed": {"bytes": "num", "file_count": "num", "categories": "dict"}}},
    ("GET", "/progress/{job_id}"): "dict",
    ("GET", "/result/{job_id}"): "dict",
    ("GET", "/logs-chunk/{job_id}"): {"job_id": "str", "text": "str", "next_offset": "num", "truncated": "bool", "available": "bool"},
    ("GET", "/experiment-configs"): ["str"],
    ("POST", "/experiment-config/create"): {"message": "str", "file": "str"},
    ("PUT", "/experiment-config/{config}"): MESSAGE,
    ("DELETE", "/experiment-config/{config}"): MESSAGE,
    ("GET", "/datasets"): [DATASET],
    ("GET", "/dataset/sites"): {"sites": [{"site_id": "str", "buildings": ["str"]}]},
    ("GET", "/dataset/dates-available/{site}"): [{"installation": "str", "oldest_record": "str", "newest_record": "str"}],
    ("POST", "/dataset"): {"message": "str", "name": "str", "warnings": ["str"], "format?": "str"},
    ("POST", "/dataset/upload"): {"message": "str", "name": "str", "format": "str"},
    ("DELETE", "/dataset/{dataset}"): MESSAGE,
    ("GET", "/job-folders"): [FOLDER],
    ("POST", "/job-folders"): FOLDER,
    ("PUT", "/job-folders/{folder_id}"): FOLDER,
    ("DELETE", "/job-folders/{folder_id}"): MESSAGE,
    ("PUT", "/job/{job_id}/folder"): ORGANIZED,
    ("POST", "/job/{job_id}/archive"): ORGANIZED,
    ("POST", "/job/{job_id}/restore"): ORGANIZED,
    ("GET", "/job-images/versions"): {"repository": "str", "tags": [{"name": "str"}], "count": "num", "cached": "bool", "fetched_at": "time"},
    ("POST", "/run-simulation"): {"job_id": "str", "status": "str", "host": "str", "job_name": "str", "image": "str", "image_tag": "str?"},
    ("DELETE", "/job/{job_id}"): MESSAGE,
    ("POST", "/ops/jobs/{job_id}/stop"): MESSAGE,
    ("POST", "/ops/jobs/{job_id}/requeue"): MESSAGE,
    ("POST", "/ops/jobs/{job_id}/fail"): MESSAGE,
    ("POST", "/ops/jobs/{job_id}/cancel"): MESSAGE,
    ("POST", "/simulation-data/index"): {"session": "str?", "files": ["str"]},
    ("GET", "/deploy/inferences"): [{"id": "str", "name": "str", "base_url": "str"}],
    ("GET", "/deploy/bundles"): [{"bundle_id": "str", "name": "str"}],
    # src/api/deployApi.ts
    ("GET", "/deploy/inferences/{target}/health"): {"id": "str", "name": "str", "reachable": "bool", "configured": "bool", "healthy": "bool",
                                                   "active_manifest_path": "str?"},
    ("GET", "/deploy/bundles/{bundle}/files"): {"bundle_id": "str", "bundle_name": "str", "file_count": "num", "files": [{"path": "str", "size_bytes": "num"}]},
    ("GET", "/deploy/bundles/{bundle}/files/content"): {"bundle_id": "str", "path": "str", "is_text": "bool", "size_bytes": "num", "truncated": "bool",
                                                       "content": "str?"},
    ("POST", "/deploy/bundles/upload-folder"): {"created": "bool", "bundle": {"bundle_id": "str", "name": "str"}},
    ("DELETE", "/deploy/bundles/{bundle}"): {"status": "str", "bundle_id": "str"},
    ("GET", "/deploy/inferences/{target}/logs/history/chunk"): {
        "target_id": "str", "since_ts": "str", "until_ts": "str", "lines": [{"ts": "str?", "text": "str", "source": "str"}], "next_cursor": "str?",
        "prev_cursor": "str?", "has_more_before": "bool", "has_more_after": "bool", "available": "bool", "message": "str?"},
}
TEXT_ROUTES = {("GET", "/experiment-config/{config}"), ("GET", "/file-logs/{job_id}"), ("GET", "/logs/{job_id}"),
               ("GET", "/job-resolved-config/{job_id}")}


def check_shape(value: Any, spec: Any, where: str = "answer") -> list[str]:
    if isinstance(spec, list):
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {type(value).__name__}"]
        return [p for i, item in enumerate(value) for p in check_shape(item, spec[0], f"{where}[{i}]")]
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        problems = []
        for key, sub in spec.items():
            name = key.rstrip("?")
            if name not in value:
                if not key.endswith("?"):
                    problems.append(f"{where}.{name}: missing")
                continue
            problems += check_shape(value[name], sub, f"{where}.{name}")
        return problems
    nullable = spec.endswith("?")
    kind = spec.rstrip("?")
    if value is None:
        return [] if nullable or kind == "any" else [f"{where}: null, expected {kind}"]
    ok = {"str": isinstance(value, str), "num": isinstance(value, (int, float)) and not isinstance(value, bool),
          "bool": isinstance(value, bool), "dict": isinstance(value, dict), "any": True, "time": _is_time(value)}[kind]
    return [] if ok else [f"{where}: {type(value).__name__} {json.dumps(value)[:40]}, expected {kind}"]


def _is_time(value: Any) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    try:
        datetime.fromisoformat(str(value))
        return True
    except ValueError:
        return False


# -- the API under test, with the UI's origin allowed ------------------------------------------

@pytest.fixture(scope="module")
def cors_api(platform) -> Iterator[str]:
    """A second API process on the tier's platform, started as run_all.sh starts it for the UI."""
    from deployments.platform import Platform, free_port

    api = Platform(home=platform.home, prefect_port=platform.prefect_port, mongo_port=platform.mongo_port,
                   api_port=free_port(), data_dir=platform.data_dir)
    api.start_api(OPEVA_CORS_ORIGINS=UI_ORIGIN, OPEVA_HOSTS_FILE=str(platform.home / "hosts.yaml"))
    yield api.api_url
    api.stop()


@pytest.fixture(scope="module")
def http(cors_api) -> Iterator[Any]:
    import httpx

    with httpx.Client(base_url=cors_api, timeout=60) as client:
        yield client


CONFIG_TEXT = "metadata:\n  experiment_name: eui-contract\n  run_name: r1\nexperiment:\n  name: eui-contract\n  run_name: r1\nalgorithm:\n  name: rule_based\nsimulation:\n  buildings: 2\n  days: 2\n"


def _dataset_folder(storage, name: str) -> None:
    d = storage.dataset_dir(name)
    d.mkdir(parents=True, exist_ok=True)
    (d / "schema.json").write_text(json.dumps({"buildings": {"Building_1": {"include": True, "energy_simulation": "Building_1.csv"}}}))
    (d / "Building_1.csv").write_text("month,hour,minutes,seconds,day_type,non_shiftable_load\n1,1,0,0,1,0.5\n")


@pytest.fixture(scope="module")
def world(http, storage, mongo_module) -> dict[str, str]:
    """What the recorded journeys had made: a config, a dataset, a site with data, a job with
    simulation data exported, and the first runtime version the API offers."""
    import datetime as dt

    storage.config_file("eui_contract.yaml").write_text(CONFIG_TEXT)
    _dataset_folder(storage, "eui-contract-ds")
    db = mongo_module[SITE]
    db.drop_collection("schema")
    db["schema"].insert_one({"_id": "schema", "schema": {"buildings": {"R-H-01": {"include": True}}}})
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    db["building_R-H-01"].insert_many([{"timestamp": now - dt.timedelta(minutes=15 * i), "non_shiftable_load": 0.5} for i in range(8)])
    job = http.post("/run-simulation", json={"config_path": "eui_contract.yaml", "target_host": OFFLINE, "job_name": "eui-contract"})
    assert job.status_code == 200, job.text
    job_id = job.json()["job_id"]
    out = storage.job(job_id).simulation_data_dir / "s1"
    out.mkdir(parents=True, exist_ok=True)
    (out / "exported_kpis.csv").write_text("kpi,community\ncost_total,0.9\n")
    (out / "exported_data_building_1.csv").write_text("timestamp,net_electricity_consumption\n2026-01-01T00:00:00,1.0\n")
    # What the simulator leaves behind (jobs never run in this tier): its log and resolved config.
    paths = storage.job(job_id)
    paths.log_file.parent.mkdir(parents=True, exist_ok=True)
    paths.log_file.write_text("2026-01-01 00:00:00 | INFO | episode 1/1 done\n")
    paths.resolved_config_file.write_text(CONFIG_TEXT)
    return {"job_id": job_id, "config": "eui_contract.yaml", "dataset": "eui-contract-ds", "site": SITE,
            "image_tag": _offered_tag(http), "bundle": _fresh_bundle(http)}


def _offered_tag(http) -> str:
    """The tag the UI would pick: on a fresh engine (CI's) that is ``reference``, which
    ``make setup`` makes on Docker hosts and this tier's process pools do not: made here."""
    from core.hosts import load_hosts
    from core.settings import PlatformSettings
    from deployments.reference_image import ensure_reference_image

    made = ensure_reference_image(load_hosts().get("local"), PlatformSettings().runtime_image)
    if made:
        return made.rsplit(":", 1)[1]
    assert os.environ.get("OPEVA_REQUIRE_DOCKER") != "1", "OPEVA_REQUIRE_DOCKER=1 but the reference image could not be made"
    tags = http.get("/job-images/versions").json().get("tags") or [{"name": "latest"}]
    return tags[0]["name"] if isinstance(tags[0], dict) else str(tags[0])


@pytest.fixture(scope="module")
def mongo_module(platform) -> Iterator[Any]:
    import pymongo

    with pymongo.MongoClient(platform.mongo_uri, tz_aware=True) as client:
        yield client


# -- building each request as the UI sends it ------------------------------------------------------

_NOW = __import__("datetime").datetime.now(__import__("datetime").timezone.utc).replace(microsecond=0)
QUERY = {"owner": OWNER, "tail_lines": "400", "offset": "0", "max_bytes": "262144", "limit": "50",
         "repository": "", "session": "latest",
         # the Deploy page: its log window (toISOString(), UTC), a followed log's tail, a bundle file
         "since_ts": (_NOW - __import__("datetime").timedelta(hours=6)).isoformat().replace("+00:00", "Z"),
         "until_ts": _NOW.isoformat().replace("+00:00", "Z"), "limit_lines": "500", "tail": "200", "path": "artifact_manifest.json"}


def _bundle_form(note: str) -> dict:
    """A policy bundle folder as the page's "Add bundle folder" sends it: ``files`` and
    ``relative_paths`` once per file, under the picked folder's name (what the reference simulator exports)."""
    import tempfile

    from simulator.agents import make_controller
    from simulator.bundle import export_bundle
    from simulator.config import validate_config
    from simulator.sample import sample_dataset

    with tempfile.TemporaryDirectory() as tmp:
        config = validate_config({"experiment": {"name": "eui", "run_name": "contract"}, "algorithm": "rule_based",
                                  "simulation": {"buildings": 2, "days": 1}})
        data = sample_dataset(2, 1, 0)
        export_bundle(Path(tmp), config, data, make_controller("rule_based", data, config.params, 0))
        folder = Path(tmp) / "bundle"
        (folder / "notes.txt").write_text(note)
        files = [("files", (f"local-policy/{p.name}", p.read_bytes(), "application/octet-stream")) for p in sorted(folder.iterdir())]
    return {"files": files, "data": {"relative_paths": [name for _, (name, _, _) in files]}}


def _fresh_bundle(http) -> str:
    r = http.post("/deploy/bundles/upload-folder", headers={"Origin": UI_ORIGIN}, **_bundle_form(uuid.uuid4().hex))
    assert r.status_code == 201, f"setup: upload answered {r.status_code} {r.text[:200]}"
    return r.json()["bundle"]["bundle_id"]


def _fresh_job(http, **extra) -> str:
    r = http.post("/run-simulation", json={"config_path": "eui_contract.yaml", "target_host": OFFLINE,
                                           "job_name": f"eui-{uuid.uuid4().hex[:6]}", "submitted_by": OWNER, **extra})
    assert r.status_code == 200, f"setup: submit answered {r.status_code} {r.text[:200]}"
    return r.json()["job_id"]


def _fresh_folder(http) -> str:
    r = http.post("/job-folders", json={"owner": OWNER, "name": f"f-{uuid.uuid4().hex[:6]}"},
                  headers={"Origin": UI_ORIGIN, "Content-Type": "application/json"})
    return r.json().get("folder_id", "no-folder") if r.status_code == 200 else "no-folder"


def values_for(entry: dict, http, storage, world: dict) -> dict[str, str]:
    """Placeholders of the route: shared objects for reads, fresh ones for what the request changes."""
    method, route = entry["method"], entry["route"]
    v = dict(world)
    changes = method != "GET"
    if "{job_id}" in route and changes:
        v["job_id"] = _fresh_job(http)
        if route.endswith(("/archive", "/restore", "/requeue")):  # the UI offers these on terminal jobs only
            http.post(f"/ops/jobs/{v['job_id']}/cancel", json={"reason": "setup", "force": True})
        if route.endswith("/restore"):
            http.post(f"/job/{v['job_id']}/archive", json={"owner": OWNER}, headers={"Origin": UI_ORIGIN})
    if "{config}" in route and changes:
        v["config"] = f"eui_{uuid.uuid4().hex[:6]}.yaml"
        storage.config_file(v["config"]).write_text(CONFIG_TEXT)
    if "{dataset}" in route and changes:
        v["dataset"] = f"eui-{uuid.uuid4().hex[:6]}"
        _dataset_folder(storage, v["dataset"])
    if "{folder_id}" in route:
        v["folder_id"] = _fresh_folder(http)
    if "{bundle}" in route:
        v["bundle"] = _fresh_bundle(http) if changes or "bundle" not in world else world["bundle"]
    v.setdefault("worker", "local")
    v.setdefault("target", "local")  # the tier's hosts file declares it; no container runs in this tier
    return v


def body_for(entry: dict, v: dict) -> tuple[dict | None, dict | None]:
    """(json, multipart files+data) with the values the UI's forms send, in the recorded shape."""
    method, route, shape = entry["method"], entry["route"], entry["body_shape"]
    examples: dict[tuple[str, str], dict] = {
        ("POST", "/run-simulation"): {"config_path": v["config"], "target_host": "local", "job_name": "eui-contract-run",
                                      "submitted_by": OWNER, "image_tag": v["image_tag"], "target_worker_profile": None},
        ("POST", "/experiment-config/create"): {"file_name": f"eui_{uuid.uuid4().hex[:6]}.yaml", "yaml_content": CONFIG_TEXT},
        ("PUT", "/experiment-config/{config}"): {"yaml_content": CONFIG_TEXT + "# edited\n"},
        ("POST", "/dataset"): {"name": f"eui_{uuid.uuid4().hex[:6]}", "site_id": SITE, "description": "from the UI", "period": 60,
                               "citylearn_configs": {"selected_buildings": ["R-H-01"], "schema_overrides": {}, "building_overrides": {},
                                                     "defaults": {}, "validation": {"smoke_check": False}}},
        ("POST", "/job-folders"): {"owner": OWNER, "name": f"Research {uuid.uuid4().hex[:4]}"},
        ("PUT", "/job-folders/{folder_id}"): {"owner": OWNER, "name": f"Studies {uuid.uuid4().hex[:4]}"},
        ("PUT", "/job/{job_id}/folder"): {"owner": OWNER, "folder_id": None},
        ("POST", "/job/{job_id}/archive"): {"owner": OWNER},
        ("POST", "/job/{job_id}/restore"): {"owner": OWNER},
        ("POST", "/ops/jobs/{job_id}/stop"): {"reason": "ops_stop"},
        ("POST", "/ops/jobs/{job_id}/requeue"): {"force": False, "preferred_host": None, "require_host": None},
        ("POST", "/ops/jobs/{job_id}/fail"): {"reason": "ops_fail", "force": False},
        ("POST", "/ops/jobs/{job_id}/cancel"): {"reason": "ops_cancel", "force": False},
        ("POST", "/simulation-data/index"): {"job_id": v["job_id"], "session": "latest"},
        ("POST", "/simulation-data/file"): {"job_id": v["job_id"], "session": "s1", "relative_path": "exported_kpis.csv"},
        ("POST", "/deploy/inferences/{target}/switch-bundle"): {"bundle_id": "0123456789abcdef"},  # CORS_ONLY: unknown, 404
    }
    if isinstance(shape, dict) and "multipart" in shape and route == "/deploy/bundles/upload-folder":
        return None, _bundle_form(uuid.uuid4().hex)
    if isinstance(shape, dict) and "multipart" in shape:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("schema.json", json.dumps({"buildings": {}}))
            z.writestr("Building_1.csv", "month,hour\n1,1\n")
        return None, {"files": {"file": ("upload.zip", buf.getvalue(), "application/zip")},
                      "data": {"name": f"eui_up_{uuid.uuid4().hex[:6]}"}}
    if shape is None:
        return None, None
    body = examples.get((method, route))
    assert body is not None, f"no example body for {method} {route}: add one from the UI's source"
    for key in (shape if isinstance(shape, dict) else {}):
        body.setdefault(key, None)
    return {k: body[k] for k in (shape if isinstance(shape, dict) else body)}, None


def _ids(entry: dict) -> str:
    q = "?" + "&".join(entry["query_keys"]) if entry["query_keys"] else ""
    return f"{entry['method']} {entry['route']}{q}"


@pytest.mark.parametrize("entry", REQUESTS, ids=[_ids(e) for e in REQUESTS])
def test_ui_request_cross_origin(entry, http, storage, world):
    method, route = entry["method"], entry["route"]
    v = values_for(entry, http, storage, world)
    path = route.format(**v)
    params = {k: QUERY.get(k, "1") for k in entry["query_keys"]}
    params = {k: val for k, val in params.items() if val != ""}
    origin = {"Origin": UI_ORIGIN} if "origin" in entry["headers"] else {}
    problems: list[str] = []

    if entry["preflight"]:
        asked = entry["preflight"]["headers"]
        pre = http.options(path, params=params, headers={
            "Origin": UI_ORIGIN, "Access-Control-Request-Method": asked["access-control-request-method"],
            **({"Access-Control-Request-Headers": asked["access-control-request-headers"]} if "access-control-request-headers" in asked else {})})
        allow_methods = {m.strip().upper() for m in pre.headers.get("access-control-allow-methods", "").split(",")}
        allow_headers = {h.strip().lower() for h in pre.headers.get("access-control-allow-headers", "").split(",")}
        wanted = [h.strip().lower() for h in asked.get("access-control-request-headers", "").split(",") if h.strip()]
        if pre.status_code >= 300:
            problems.append(f"preflight answered {pre.status_code} {pre.text[:80]}")
        if pre.headers.get("access-control-allow-origin") not in (UI_ORIGIN, "*"):
            problems.append(f"preflight Access-Control-Allow-Origin: {pre.headers.get('access-control-allow-origin')}")
        if method not in allow_methods and "*" not in allow_methods:
            problems.append(f"preflight allows methods {sorted(allow_methods - {''})}, not {method}")
        missing = [h for h in wanted if h not in allow_headers and "*" not in allow_headers]
        if missing:
            problems.append(f"preflight does not allow headers {missing}")

    json_body, multipart = body_for(entry, v)
    headers = dict(origin)
    if entry["headers"].get("content-type") == "application/json":
        headers["Content-Type"] = "application/json"
    if multipart:
        r = http.request(method, path, params=params, headers=headers, **multipart)
    else:
        r = http.request(method, path, params=params, headers=headers,
                         content=None if json_body is None else json.dumps(json_body))
    if origin and r.headers.get("access-control-allow-origin") not in (UI_ORIGIN, "*"):
        problems.append(f"no Access-Control-Allow-Origin on the {r.status_code} answer: the browser hides it from the UI")
    if (method, route) in CORS_ONLY:
        if r.status_code != CORS_ONLY[(method, route)]:
            problems.append(f"answered {r.status_code}, expected {CORS_ONLY[(method, route)]} here: {r.text[:160]}")
    elif r.status_code >= 400:
        problems.append(f"answered {r.status_code}: {r.text[:160]}")
    elif (method, route) in TEXT_ROUTES:
        if r.headers.get("content-type", "").startswith("application/json"):
            problems.append(f"the UI reads this answer as text (YAML or log); got JSON {r.text[:80]}")
        if route == "/experiment-config/{config}" and r.text != CONFIG_TEXT:
            problems.append(f"not the stored file as is: {r.text[:80]!r}")
    elif route == "/dataset/download/{dataset}":
        if not r.content.startswith(b"PK"):
            problems.append("not a zip")
    elif (method, route) in SHAPES:
        try:
            problems += check_shape(r.json(), SHAPES[(method, route)])
        except ValueError:
            problems.append(f"not JSON: {r.text[:80]}")
        if (method, route) == ("GET", "/hosts") and not problems:
            problems += [p for name, h in r.json()["hosts"].items() for p in check_shape(h, HOST, f"hosts.{name}")]
        if (method, route) == ("POST", "/dataset") and not problems:
            problems += [f"warning about a key the UI always sends: {w}" for w in r.json()["warnings"] if "validation" in w]
    assert not problems, f"{method} {path}: " + "; ".join(problems)


def test_fixture_covers_the_ui_pages():
    """The recording is not a stub: it has the calls of every page the journeys open."""
    routes = {(e["method"], e["route"]) for e in REQUESTS}
    for must in [("GET", "/jobs"), ("GET", "/hosts"), ("GET", "/queue"), ("POST", "/run-simulation"), ("GET", "/job-info/{job_id}"),
                 ("GET", "/experiment-configs"), ("PUT", "/experiment-config/{config}"), ("GET", "/datasets"),
                 ("POST", "/dataset"), ("GET", "/job-folders")]:
        assert must in routes, f"{must} missing from the recording"
    assert any(e["preflight"] for e in REQUESTS), "no preflight recorded: the UI sends Content-Type: application/json on GETs"
    assert not [e["route"] for e in REQUESTS if e["route"].startswith("UNKNOWN")], "requests to routes the fixture script does not know"
