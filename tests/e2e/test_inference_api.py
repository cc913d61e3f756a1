"""Inference targets created through the API, started and stopped by ``make up``'s own loop: a
target posted over HTTP gets a real sandboxed container of the inference image (the supervisor
loop's tick, deployments/inference_sync.py), answers ``/health``, switches to a stored bundle by a
deploy-bundle run; deleting it removes its container. Bad inputs are refused and create nothing
(docs/inference.md, "Targets created through the API")."""

from __future__ import annotations

import subprocess
import threading

import pytest
from helpers import stored_bundle, wait_for

from core.inference_registry import registry_path
from core.settings import PlatformSettings

pytestmark = pytest.mark.usefixtures("needs_docker")
TARGET = "e2e-made"


@pytest.fixture
def make_up_loop(platform):
    """``make up``'s supervisor loop (deployments/supervisor.py) with the tick deployments/up.py gives it."""
    from deployments.inference_sync import TargetSync
    from deployments.supervisor import supervise

    sync = TargetSync(platform, PlatformSettings().runtime_image, pass_seconds=0.5)
    stop = threading.Event()
    loop = threading.Thread(target=supervise, args=(platform,), kwargs={"tick": sync.tick, "until": stop.is_set, "interval": 0.2})
    loop.start()
    try:
        yield sync
    finally:
        stop.set()
        loop.join(timeout=90)
        for target_id in list(sync.mine):  # a failed test must not leave a container behind
            sync.stop(target_id)


def _containers(name: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-a", "--filter", f"name=^{name}$", "--format", "{{.Names}}"], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_a_target_made_through_the_api_is_run_switched_and_removed(make_up_loop, api, storage, platform):
    bundle = stored_bundle(api, storage, "inf-api")
    r = api.post("/deploy/inferences", json={"id": TARGET, "name": "Made through the API", "host": "local", "memory": "128m", "pids": 32})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["kind"] == "platform" and made["host"] == "local" and TARGET in {t["id"] for t in api.get("/deploy/inferences").json()}

    health = wait_for(lambda: (h := api.get(f"/deploy/inferences/{TARGET}/health").json())["reachable"] and h, 60, what="the new target's /health")
    assert health["healthy"] and health["configured"] is False, "no bundle until a switch"
    inspected = subprocess.run(["docker", "inspect", "--format", "{{.HostConfig.NetworkMode}} {{.Config.User}} {{.HostConfig.Memory}} "
                                "{{.HostConfig.PidsLimit}} {{.HostConfig.ReadonlyRootfs}}", made["container_name"]],
                               capture_output=True, text=True, check=True).stdout.split()
    assert inspected == ["none", "65534:65534", str(128 << 20), "32", "true"], "the hosts.yaml targets' sandbox, with its own limits"

    r = api.post(f"/deploy/inferences/{TARGET}/switch-bundle", json={"bundle_id": bundle}, timeout=150)
    assert r.status_code == 200, r.text
    assert r.json()["health"]["active_bundle_id"] == bundle and r.json()["load_response"]["status"] == "loaded"

    # refusals while it exists: each a clear 4xx, nothing recorded, no container started
    registry_before = registry_path(platform.home).read_bytes()
    for body, status, why in (({"id": TARGET, "host": "local"}, 409, "already exists"), ({"id": "../x", "host": "local"}, 422, "pattern"),
                              ({"id": "other", "host": "nowhere"}, 400, "unknown host")):
        r = api.post("/deploy/inferences", json=body)
        assert r.status_code == status and why in r.text, (body, r.text)
    r = api.delete("/deploy/inferences/local")
    assert r.status_code == 409 and "hosts.yaml" in r.json()["detail"]
    assert registry_path(platform.home).read_bytes() == registry_before
    assert not _containers(made["container_name"].replace(TARGET, "other"))

    r = api.delete(f"/deploy/inferences/{TARGET}")
    assert r.status_code == 200 and r.json()["id"] == TARGET
    assert TARGET not in {t["id"] for t in api.get("/deploy/inferences").json()}
    wait_for(lambda: not _containers(made["container_name"]), 30, what="the removed target's container to go")
    assert f"inference-{TARGET}" not in {s.name for s in platform.services}, "no longer supervised (not restarted)"
    assert api.get(f"/deploy/inferences/{TARGET}/health").status_code == 404
    assert make_up_loop.mine == set()
