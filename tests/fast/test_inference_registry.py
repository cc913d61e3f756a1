"""Inference targets created through the API: the registry file (atomic, read safely, validated),
its targets listed beside hosts.yaml's, and ``POST``/``DELETE /deploy/inferences`` over real HTTP
with their refusals (each a clear 4xx that records nothing). Starting the containers is ``make up``'s
(tests/e2e/test_inference_api.py)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.errors import ApiError
from api.models_inference import InferenceTargetIn
from api.security import ANONYMOUS
from api.usecases import inferences as usecase
from core import inference_registry as registry
from core.hosts import HostsFile
from core.inference_targets import targets

HOSTS = HostsFile.model_validate({"hosts": [
    {"name": "local", "inference_targets": [{"id": "yaml-one"}]},
    {"name": "remote", "docker_url": "ssh://ops@10.0.0.9"},
]})


def _entry(target_id: str, **fields) -> registry.RegisteredTarget:
    return registry.RegisteredTarget(id=target_id, host="local", **fields)


def test_registry_round_trip_is_atomic_private_and_listed_beside_hosts_yaml(tmp_path):
    assert registry.read(tmp_path) == []
    registry.add(tmp_path, _entry("api-one", memory="128m"), taken={"yaml-one"})
    registry.add(tmp_path, _entry("api-ext", base_url="http://10.0.0.5:8080"), taken=set())
    path = registry.registry_path(tmp_path)
    assert oct(path.stat().st_mode & 0o777) == "0o600" and not list(tmp_path.glob(".inference-targets.json.*")), "no temp file left"
    assert [e.id for e in registry.read(tmp_path)] == ["api-one", "api-ext"]
    listed = {t.id: t for t in targets(HOSTS, tmp_path)}
    assert [t.id for t in listed.values()] == ["yaml-one", "api-one", "api-ext"]
    assert listed["yaml-one"].declared == "hosts.yaml" and listed["api-one"].declared == "api"
    assert listed["api-one"].public()["kind"] == "platform" and listed["api-one"].spec.memory == "128m"
    assert listed["api-one"].base_url == f"unix:{tmp_path}/run/inference/api-one/inference.sock"
    assert listed["api-ext"].public()["kind"] == "external" and listed["api-ext"].container_name is None
    assert registry.remove(tmp_path, "api-one").id == "api-one"
    assert registry.remove(tmp_path, "api-one") is None
    assert [e.id for e in registry.read(tmp_path)] == ["api-ext"]


def test_taken_ids_and_the_bound_are_refused_and_change_nothing(tmp_path):
    registry.add(tmp_path, _entry("a"), taken=set())
    for entry, taken, why in ((_entry("a"), set(), "created through the API"), (_entry("b"), {"b"}, "declared in hosts.yaml")):
        with pytest.raises(registry.RegistryError) as refused:
            registry.add(tmp_path, entry, taken)
        assert refused.value.status == 409 and why in refused.value.detail
    for n in range(registry.MAX_TARGETS - 1):
        registry.add(tmp_path, _entry(f"t{n}"), taken=set())
    with pytest.raises(registry.RegistryError, match="at most"):
        registry.add(tmp_path, _entry("one-more"), taken=set())
    assert len(registry.read(tmp_path)) == registry.MAX_TARGETS


@pytest.mark.parametrize("content", [b"{not json", b'{"version": 1, "targets": [{"id": "../x", "host": "local"}]}',
                                     b'{"version": 2, "targets": []}', b'{"version": 1, "targets": [{"id": "a", "host": "local", "x": 1}]}',
                                     b'{"version": 1, "targets": [{"id": "a", "host": "local"}, {"id": "a", "host": "local"}]}',
                                     b" " * (registry.MAX_BYTES + 1)])
def test_a_file_that_is_not_a_registry_is_refused_not_overwritten_and_hosts_yaml_targets_still_listed(tmp_path, content):
    path = registry.registry_path(tmp_path)
    path.write_bytes(content)
    with pytest.raises(registry.RegistryError) as refused:
        registry.read(tmp_path)
    assert refused.value.status == 503 and str(path) in refused.value.detail
    with pytest.raises(registry.RegistryError):
        registry.add(tmp_path, _entry("a"), taken=set())
    assert path.read_bytes() == content, "left for the operator to fix"
    assert [t.id for t in targets(HOSTS, tmp_path)] == ["yaml-one"]


def test_a_link_in_place_of_the_registry_is_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"version": 1, "targets": [{"id": "evil", "host": "local"}]}))
    os.symlink(elsewhere, registry.registry_path(tmp_path))
    with pytest.raises(registry.RegistryError, match="cannot be read"):
        registry.read(tmp_path)


def test_an_api_target_whose_id_hosts_yaml_took_since_is_not_listed(tmp_path):
    registry.add(tmp_path, _entry("yaml-one"), taken=set())
    assert [(t.id, t.declared) for t in targets(HOSTS, tmp_path)] == [("yaml-one", "hosts.yaml")]


@pytest.mark.parametrize("body, why", [
    ({"id": "../x", "host": "local"}, "id"), ({"id": "A", "host": "local"}, "id"), ({"id": "x" * 41, "host": "local"}, "id"),
    ({"id": "a", "host": "local", "memory": "lots"}, "memory"), ({"id": "a", "host": "local", "pids": 1}, "pids"),
    ({"id": "a", "host": "local", "cpus": 0}, "cpus"), ({"id": "a", "host": "local", "base_url": "file:///etc/passwd"}, "base_url"),
    ({"id": "a", "host": "local", "base_url": "http://x", "memory": "1g"}, "external target"),
    ({"id": "a", "host": "local", "bundle_mount_path": "/etc"}, "/bundles"),
    ({"id": "a", "host": "local", "base_url": "http://x", "bundle_mount_path": "/a/../b"}, ".."),
    ({"id": "a", "host": "../local"}, "host"), ({"id": "a"}, "host"), ({"id": "a", "host": "local", "extra": 1}, "extra"),
])
def test_the_request_model_refuses_with_the_field_named(body, why):
    with pytest.raises(ValidationError, match=why.replace(".", r"\.").replace("/", r"\/")):
        InferenceTargetIn(**body)


def test_a_platform_target_on_another_machines_engine_is_refused_an_external_one_is_not(tmp_path):
    with pytest.raises(ApiError) as refused:
        asyncio.run(usecase.create(ANONYMOUS, HOSTS, tmp_path, InferenceTargetIn(id="far", host="remote")))
    assert refused.value.status_code == 400 and "base_url" in refused.value.detail and "remote" in refused.value.detail
    assert registry.read(tmp_path) == []
    made = asyncio.run(usecase.create(ANONYMOUS, HOSTS, tmp_path, InferenceTargetIn(id="far", host="remote", base_url="http://10.0.0.9:8080")))
    assert made.kind == "external" and made.host == "remote"


def test_create_list_delete_over_http_and_refusals(api, platform):
    home = Path(platform.home)
    before = registry.registry_path(home).read_bytes() if registry.registry_path(home).exists() else None
    try:
        r = api.post("/deploy/inferences", json={"id": "api-made", "name": "Made here", "host": "second", "memory": "128m", "cpus": 0.5})
        assert r.status_code == 201, r.text
        made = r.json()
        assert made == {"id": "api-made", "name": "Made here", "base_url": f"unix:{home}/run/inference/api-made/inference.sock",
                        "container_name": made["container_name"], "bundle_mount_path": "/bundles", "host": "second", "kind": "platform"}
        assert made["container_name"].startswith("opeva-inference-api-made-")
        listed = {t["id"]: t for t in api.get("/deploy/inferences").json()}
        assert listed["api-made"] == made and {"local", "down"} <= set(listed)
        health = api.get("/deploy/inferences/api-made/health").json()
        assert health["reachable"] is False and health["id"] == "api-made", "nobody runs it in this tier (make up does)"

        refusals = [
            ({"id": "api-made", "host": "local"}, 409, "already exists"), ({"id": "local", "host": "local"}, 409, "hosts.yaml"),
            ({"id": "../etc", "host": "local"}, 422, "pattern"), ({"id": "x", "host": "nowhere"}, 400, "unknown host"),
            ({"id": "x", "host": "local", "pids": 100000}, 422, "pids"),
        ]
        for body, status, why in refusals:
            r = api.post("/deploy/inferences", json=body)
            assert r.status_code == status and why in r.text, (body, r.status_code, r.text)
        assert [t["id"] for t in api.get("/deploy/inferences").json()].count("api-made") == 1 and "x" not in listed

        r = api.delete("/deploy/inferences/local")
        assert r.status_code == 409 and "declared in hosts.yaml" in r.json()["detail"]
        assert api.delete("/deploy/inferences/nope").status_code == 404
        r = api.delete("/deploy/inferences/api-made")
        assert r.status_code == 200 and r.json() == made
        assert "api-made" not in {t["id"] for t in api.get("/deploy/inferences").json()}
        assert api.get("/deploy/inferences/api-made/health").status_code == 404
        assert api.delete("/deploy/inferences/api-made").status_code == 404
    finally:
        if before is None:
            registry.registry_path(home).unlink(missing_ok=True)
        else:
            registry.registry_path(home).write_bytes(before)


def test_make_ups_pass_wants_the_apis_local_platform_targets_and_stops_nothing_on_a_bad_registry(platform, tmp_path):
    """deployments/inference_sync.py without an engine: which targets it would run, and a bad file."""
    from deployments.inference_sync import TargetSync
    from deployments.platform import Platform

    home = tmp_path / "home"
    registry.add(home, _entry("runs-here"), taken=set())
    registry.add(home, _entry("elsewhere", base_url="http://10.0.0.5:8080"), taken=set())
    registry.add(home, registry.RegisteredTarget(id="host-gone", host="was-removed"), taken=set())
    sync = TargetSync(Platform(home=home, prefect_port=1, mongo_port=1, api_port=1, data_dir=tmp_path / "data"), "opeva-runtime:x")
    assert list(sync.wanted()) == ["runs-here"], "hosts.yaml's (local) are make up's start's; external and unknown hosts are not run"
    sync.mine = {"runs-here"}
    registry.registry_path(home).write_text("{broken")
    with pytest.raises(registry.RegistryError):
        sync.sync()
    assert sync.mine == {"runs-here"}, "nothing stopped on a file the operator must fix"
    sync.tick()  # said, not raised: the supervisor loop goes on
    assert sync.next_pass > 0 and sync.mine == {"runs-here"}
