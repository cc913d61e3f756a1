"""From a finished job to a served policy: the reference simulator's bundle stored, a platform
inference target (a real container of the inference image) switched to it by a deploy-bundle flow
run on the control pool, and ``/act`` answering with that bundle; a client calling ``/act`` during
a switch sees no failure; unknown target or bundle 404, a target that does not answer 502, a
served bundle cannot be deleted, and nothing changes on error (docs/inference.md)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from helpers import gateway_call, read_run, wait_for

from core.inference_targets import socket_path
from core.settings import PlatformSettings

pytestmark = pytest.mark.usefixtures("needs_docker")


@pytest.fixture(scope="module")
def targets(platform):
    """The control pool's worker and the hosts' platform targets, as ``make up`` starts them."""
    from deployments.control_pool import start_control_worker
    from deployments.inference_targets import start_inference_targets

    start_control_worker(platform)
    started = start_inference_targets(platform, PlatformSettings().runtime_image)
    assert [s.name for s in started] == ["inference-local"]
    return platform


def _job(api, algorithm: str, host: str) -> str:
    config = f"inf-{uuid.uuid4().hex[:6]}.yaml"
    text = f"experiment: {{name: inf, run_name: {algorithm}}}\nalgorithm: {algorithm}\nepisodes: 2\nsimulation: {{buildings: 3, days: 2}}\n"
    assert api.post("/experiment-config/create", json={"file_name": config, "yaml_content": text}).status_code == 200
    r = api.post("/run-simulation", json={"config_path": f"configs/{config}", "target_host": host, "job_name": f"inf-{algorithm}"})
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def _finished(api, job_id: str) -> None:
    status = wait_for(lambda: (s := api.get(f"/status/{job_id}").json().get("status")) in ("finished", "failed") and s, 300, what=job_id)
    assert status == "finished", api.get(f"/logs/{job_id}").text[-2000:]


def _target_client(platform) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(socket_path(platform.home, "local"))), base_url="http://inference", timeout=10)


def _observations(manifest_dims: list[int]) -> list[list[float]]:
    """One step of each agent: hour 18, a price, load above PV, 1 kWh stored, one EV needing 5 kWh."""
    return [[18, 0.3, 2.0, 0.5, 1.0, *([5.0, 2.0, 3.0] * ((n - 5) // 3))] for n in manifest_dims]


def test_bundle_from_job_served_switched_without_failures_and_refusals(targets, api, storage):
    platform = targets
    jobs = {"rule_based": _job(api, "rule_based", "local"), "q_learning": _job(api, "q_learning", "second")}
    listed = {t["id"]: t for t in api.get("/deploy/inferences").json()}
    assert listed["local"]["kind"] == "platform" and listed["local"]["base_url"] == f"unix:{socket_path(platform.home, 'local')}"
    assert listed["down"]["kind"] == "external" and listed["down"]["container_name"] is None
    health = api.get("/deploy/inferences/local/health").json()
    assert health["reachable"] and health["healthy"] and health["configured"] is False, "no bundle until a switch"
    assert api.get("/deploy/inferences/down/health").json()["reachable"] is False

    bundles = {}
    for algorithm, job_id in jobs.items():
        _finished(api, job_id)
        r = api.post(f"/deploy/bundles/from-job/{job_id}")
        assert r.status_code == 201, r.text
        bundles[algorithm] = r.json()["bundle"]["bundle_id"]
    a, b = bundles["rule_based"], bundles["q_learning"]

    r = api.post("/deploy/inferences/local/switch-bundle", json={"bundle_id": a}, timeout=150)
    assert r.status_code == 200, r.text
    switched = r.json()
    assert switched["status"] == "switched" and switched["target_id"] == "local" and switched["bundle_id"] == a
    assert switched["requested_manifest_path"] == f"/bundles/{a}/artifact_manifest.json"
    assert switched["health"]["configured"] and switched["health"]["active_bundle_id"] == a
    assert switched["load_response"]["status"] == "loaded" and switched["load_response"]["agents"] == 3
    run = read_run(switched["flow_run_id"])
    assert run.name == switched["flow_run_name"] and run.state.is_completed() and run.parameters == {"target_id": "local", "bundle_id": a}
    assert gateway_call(lambda g: g.client.read_deployment(run.deployment_id)).name == "control", "deploy-bundle/control"
    def switch_logged() -> bool:
        return any(f"target local serves bundle {a}" in x.message for x in gateway_call(lambda g: g.logs(str(run.id))))

    wait_for(switch_logged, 15, what="the switch's log line in Prefect")

    dims = switched["health"]["raw"]["observation_dimensions"]
    obs = _observations(dims)
    with _target_client(platform) as target:
        acted = target.post("/act", json={"observations": obs}).json()
        assert acted["bundle_id"] == a and len(acted["actions"]) == 3
        assert all(-1 <= x[0] <= 1 and all(0 <= e <= 1 for e in x[1:]) for x in acted["actions"])

        answers: list[tuple[int, str | None]] = []
        stop = threading.Event()

        def client_at_20_per_second() -> None:
            with _target_client(platform) as c:
                while not stop.is_set():
                    try:
                        r = c.post("/act", json={"observations": obs})
                        answers.append((r.status_code, r.json().get("bundle_id")))
                    except httpx.HTTPError as exc:
                        answers.append((0, repr(exc)))
                    time.sleep(0.05)

        thread = threading.Thread(target=client_at_20_per_second)
        thread.start()
        time.sleep(0.5)
        r = api.post("/deploy/inferences/local/switch-bundle", json={"bundle_id": b}, timeout=150)
        time.sleep(0.5)
        stop.set()
        thread.join()
        assert r.status_code == 200 and r.json()["health"]["active_bundle_id"] == b, r.text
        assert len(answers) > 10 and {s for s, _ in answers} == {200}, [x for x in answers if x[0] != 200][:3]
        assert {x[1] for x in answers} == {a, b} and answers[-1][1] == b

        # refusals: 404 and 502 name the cause, make no change, and the target keeps serving b
        r = api.post("/deploy/inferences/nope/switch-bundle", json={"bundle_id": a})
        assert r.status_code == 404 and "nope" in r.json()["detail"]
        r = api.post("/deploy/inferences/local/switch-bundle", json={"bundle_id": "0123456789abcdef"})
        assert r.status_code == 404 and "0123456789abcdef" in r.json()["detail"]
        assert api.get("/deploy/inferences/nope/health").status_code == 404
        r = api.post("/deploy/inferences/down/switch-bundle", json={"bundle_id": a}, timeout=150)
        assert r.status_code == 502 and r.json()["detail"].startswith("Inference load failed") and "down" in r.json()["detail"], r.text
        assert read_run(r.json()["flow_run_id"]).state.is_failed()
        assert target.post("/act", json={"observations": obs}).json()["bundle_id"] == b

    r = api.delete(f"/deploy/bundles/{b}")
    assert r.status_code == 409 and "local" in r.json()["detail"]
    assert b in {x["bundle_id"] for x in api.get("/deploy/bundles").json()}
    assert api.delete(f"/deploy/bundles/{a}").status_code == 200, "a bundle no target serves can go"

    since = (datetime.now(UTC) - timedelta(minutes=30)).isoformat()
    chunk = api.get("/deploy/inferences/local/logs/history/chunk", params={"since_ts": since, "search": "serving bundle"}).json()
    assert chunk["available"] and [line["text"].split("serving bundle ")[1].split()[0] for line in chunk["lines"]] == [a, b]
    r = api.get("/deploy/inferences/local/logs/history/chunk", params={"since_ts": "2026-01-01T10:00:00+02:00"})
    assert r.status_code == 400 and "UTC" in r.json()["detail"]
    with api.stream("GET", "/deploy/inferences/local/logs/stream", params={"tail": 50}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        first = next(r.iter_text())
    assert "listening on unix:" in first
    external = api.get("/deploy/inferences/down/logs/history/chunk", params={"since_ts": since}).json()
    assert external["available"] is False and external["lines"] == []


def test_a_target_that_dies_comes_back_serving_its_last_bundle(targets, api):
    """``make up``'s supervisor restarts a dead target with its own command; it reloads the last
    bundle it loaded before it answers (inference/service.py ``--remember``), so clients get the
    same policy back, not 409 "no bundle is loaded"."""
    import docker

    from deployments.supervisor import RestartPolicy, check_children

    platform = targets
    served = api.get("/deploy/inferences/local/health").json()
    if not served["configured"]:  # run alone: give it a bundle first
        job = _job(api, "rule_based", "local")
        _finished(api, job)
        bundle = api.post(f"/deploy/bundles/from-job/{job}").json()["bundle"]["bundle_id"]
        assert api.post("/deploy/inferences/local/switch-bundle", json={"bundle_id": bundle}, timeout=150).status_code == 200
        served = api.get("/deploy/inferences/local/health").json()
    bundle = served["active_bundle_id"]
    service = next(s for s in platform.services if s.name == "inference-local")
    container = api.get("/deploy/inferences").json()
    name = next(t["container_name"] for t in container if t["id"] == "local")
    docker.from_env().containers.get(name).kill()
    wait_for(lambda: service.proc.poll() is not None, 30, 0.2, what="the target's process to end")
    assert api.get("/deploy/inferences/local/health").json()["reachable"] is False
    policy = RestartPolicy()
    check_children(platform, policy, now=time.monotonic())  # the supervisor's pass: a restart scheduled
    check_children(platform, policy, now=time.monotonic() + policy.cap + 1)  # the next: restarted, ready
    health = api.get("/deploy/inferences/local/health").json()
    assert health["reachable"] and health["configured"] and health["active_bundle_id"] == bundle, health
    dims = health["raw"]["observation_dimensions"]
    with _target_client(platform) as target:
        assert target.post("/act", json={"observations": _observations(dims)}).json()["bundle_id"] == bundle
