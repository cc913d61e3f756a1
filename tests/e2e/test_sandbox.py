"""The job sandbox: user code tries each way out, and every one is refused.

The probing job is the upstream-style image of test_sim_images (no Prefect in it);
it records what it could reach from inside its container, and these tests read that
record. The Prefect-side checks run from the test process itself (with and without
the platform's credentials), since a job without credentials gets no further.
"""

from __future__ import annotations

import json

import httpx
import pytest
from prefect.exceptions import PrefectHTTPStatusError

from helpers import gateway_call
from test_sim_images import containers_of, status, submit, upstream_config, upstream_image, wait_status  # noqa: F401

pytestmark = pytest.mark.usefixtures("needs_docker")


def test_a_job_cannot_escape_its_container(api, storage, platform, upstream_image):  # noqa: F811
    job_id = submit(api, upstream_config(storage, "escape", steps=1, probe=True, prefect_api=platform.prefect_api_url),
                    image=upstream_image)
    final = wait_status(api, job_id, {"finished", "failed", "stopped"})
    assert final["status"] == "finished", final
    probe = json.loads((storage.job(job_id).dir / "probe.json").read_text())

    assert probe["uid"] == 65534 and probe["gid"] == 65534  # not root
    assert probe["capabilities"] == "0000000000000000" and probe["no_new_privs"] == "1"
    assert probe["docker_socket_exists"] is False and probe["docker_socket"].startswith("refused")
    # PID 1 is the supervisor (shared PID namespace): its environment holds Prefect's
    # credentials, and a uid-65534 process without capabilities may not read it.
    assert probe["pid1_environ"].startswith("refused: PermissionError"), probe["pid1_environ"]
    # not even a 401: the job's network has no way to Prefect (docs/sandbox-network.md)
    assert probe["prefect_api"].startswith("refused: URLError"), probe["prefect_api"]
    assert probe["secret_env"] == [] and not [k for k in probe["env_keys"] if "PREFECT" in k]
    for where in ("write_configs", "write_root", "write_other_job"):
        assert "Read-only file system" in probe[where], (where, probe[where])
    assert probe["write_own_job"] == "allowed"
    for outside in ("configs/written-by-a-job.yaml", "written-by-a-job.txt", "jobs/written-by-a-job.txt"):
        assert not (storage.root / outside).exists(), outside


@pytest.mark.parametrize(
    "variables",
    [
        {"privileged": True},
        {"volumes": ["/:/host"]},
        {"network_mode": "bridge"},
        {"env": {"PREFECT_API_URL": "http://evil"}},
        {"command": "sh -c id"},
        {"image": "opeva-test/opeva-simulator:1.0"},
        {"container_create_kwargs": {"privileged": True}},
        {"container_create_kwargs": {"binds": ["/:/host"]}},
        {"mem_limit": "1g; rm -rf /"},
    ],
    ids=lambda v: next(iter(v)) + ("." + next(iter(v["container_create_kwargs"])) if "container_create_kwargs" in v else ""),
)
def test_work_pool_refuses_escape_hatch_job_variables(platform, variables):
    """Even with the platform's credentials, a flow run may set only the simulator's resources."""

    async def create(g):
        return await g.client.create_flow_run_from_deployment(await g.deployment_id("run-simulation", "offline"), job_variables=variables)

    with pytest.raises(PrefectHTTPStatusError) as err:
        gateway_call(create)
    assert err.value.response.status_code == 422


def test_work_pool_accepts_the_resources_a_job_may_set(platform):
    async def create_and_delete(g):
        run = await g.client.create_flow_run_from_deployment(
            await g.deployment_id("run-simulation", "offline"),
            job_variables={"mem_limit": "256m", "container_create_kwargs": {"nano_cpus": 500_000_000}},
        )
        await g.client.delete_flow_run(run.id)
        return run

    assert gateway_call(create_and_delete).job_variables["mem_limit"] == "256m"


def test_prefect_server_requires_credentials_also_on_its_websockets(platform):
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    url = platform.prefect_api_url
    assert httpx.post(f"{url}/flow_runs/filter", json={}).status_code == 401
    assert httpx.post(f"{url}/flow_runs/filter", json={}, auth=("opeva", "wrong")).status_code == 401
    user, password = platform.prefect_auth_string.split(":", 1)
    assert httpx.post(f"{url}/flow_runs/filter", json={"limit": 1}, auth=(user, password)).status_code == 200
    assert httpx.get(f"{url}/health").status_code == 200  # probes stay open

    ws = url.replace("http://", "ws://") + "/events/in"
    refused = (ConnectionClosed, InvalidStatus)
    with pytest.raises(refused):  # no 'prefect' subprotocol: refused when auth is on (Prefect #17687: not in 3.2)
        with connect(ws, open_timeout=5) as sock:
            sock.recv(timeout=5)
    for token in (None, "opeva:wrong"):
        with connect(ws, subprotocols=["prefect"], open_timeout=5) as sock:
            sock.send(json.dumps({"type": "auth", "token": token}))
            with pytest.raises(refused):
                sock.recv(timeout=5)
    with connect(ws, subprotocols=["prefect"], open_timeout=5) as sock:
        sock.send(json.dumps({"type": "auth", "token": platform.prefect_auth_string}))
        assert json.loads(sock.recv(timeout=5)) == {"type": "auth_success"}
