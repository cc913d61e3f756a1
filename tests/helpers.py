"""Helpers shared by both test tiers (imported as ``from helpers import ...``).

Nothing here runs at import time: the platform is started by the tiers' fixtures.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.settings import PlatformSettings
from deployments.mlflow_server import start_mlflow, start_relay
from deployments.platform import Platform, free_port, prefect_cli
from tools.polling import wait_until as wait_for  # noqa: F401  (the tests' name for it)

API_TOKEN = "test-token-123"


def hosts_yaml(data_dir: Path) -> str:
    """Three hosts: two with a worker (``local``, ``second``), one without (``offline``)."""
    return f"""
hosts:
  - name: local
    concurrency_limit: 4
    volumes: ["{data_dir}:{data_dir}"]
    start_worker: true
    simulator_image: opeva-test/opeva-simulator
    allowed_images: [opeva-test/opeva-simulator, opeva-test/missing]
    inference_targets:   # started only where a test asks (tests/e2e/test_inference.py)
      - {{id: local, name: Local inference}}
      - {{id: down, name: Nobody answers, base_url: "http://127.0.0.1:9"}}
  - name: second
    concurrency_limit: 2
    volumes: ["{data_dir}:{data_dir}"]
    start_worker: true
  - name: offline
    concurrency_limit: 1
    volumes: ["{data_dir}:{data_dir}"]
    simulator_image: calof/opeva_simulator   # no worker here: its engine is out of reach, only the allow-list is checked
"""


@contextmanager
def running_platform(prefix: str, *, docker: bool, workers: tuple[str, ...] = (), mlflow: bool = False, control: bool = False) -> Iterator[Platform]:
    """A platform of the three test hosts on free ports, this process pointed at it.

    ``docker`` picks Docker or process pools; ``workers`` names the hosts that get a
    worker (none: jobs stay queued, which the fast tier relies on). ``mlflow`` adds the
    platform's MLflow server and, with Docker, its relay on a jobs network of this platform's own.
    ``control`` starts the control pool's worker (sweeps' parents run there).
    """
    home = Path(tempfile.mkdtemp(prefix=prefix))
    platform = new_platform(home)
    if mlflow:
        platform.mlflow_port = free_port()
    hosts_file = home / "hosts.yaml"
    hosts_file.write_text(hosts_yaml(platform.data_dir))
    with pointed_at(platform, hosts_file):
        # a platform without MLflow must not find another one on the default port; one with MLflow
        # gets a jobs network of its own (two relays answering as opeva-mlflow on one network would mix)
        # (said both ways: a platform started inside another's session inherits its OPEVA_MLFLOW)
        os.environ.update({"OPEVA_MLFLOW": "0"} if not mlflow else {"OPEVA_MLFLOW": "1", "OPEVA_JOBS_NETWORK": f"opeva-jobs-test-{platform.mlflow_port}"})
        try:
            server = start_mlflow(platform) if mlflow else None
            platform.start_prefect_server()
            platform.start_mongo()
            if server is not None:
                platform.wait_ready(server)
                if docker:
                    start_relay(platform, PlatformSettings().runtime_image)
            types = platform.setup_pools(hosts_file, docker=docker)
            platform.pool_types = types  # type: ignore[attr-defined]
            for host in workers:
                platform.start_worker(host, types[host])
            if control:
                from deployments.control_pool import start_control_worker

                start_control_worker(platform)
            platform.start_api(OPEVA_HOSTS_FILE=str(hosts_file))
            yield platform
        finally:
            platform.stop()
            if mlflow and docker:
                _remove_jobs_network()


def _remove_jobs_network() -> None:
    import docker as docker_sdk

    from flows.job_network import network_name, remove_network

    client = docker_sdk.from_env()
    try:
        remove_network(client, network_name())
    finally:
        client.close()


@contextmanager
def slurm_platform(hosts_text: str, workers: tuple[str, ...], prefix: str = "opeva-slurm-tests-") -> Iterator[Platform]:
    """A platform whose hosts are ``hosts_text`` (``{python}`` replaced by the compute nodes' Python
    for runtime none), process-pool workers for ``workers``, pointed at the Slurm cluster of
    SLURM_CONF: what the Slurm test modules share. Its home and data root are readable by uid 65534,
    the uid the jobs run as on the nodes."""
    from deployments.slurm_cluster import simulator_venv

    home = Path(tempfile.mkdtemp(prefix=prefix))
    home.chmod(0o755)
    platform = new_platform(home)
    hosts_file = home / "hosts.yaml"
    hosts_file.write_text(hosts_text.replace("{python}", simulator_venv()).replace("{data}", str(platform.data_dir)))
    with pointed_at(platform, hosts_file):
        os.environ["OPEVA_MLFLOW"] = "0"
        try:
            platform.start_prefect_server()
            platform.start_mongo()
            types = platform.setup_pools(hosts_file, docker=False)
            for host in workers:
                assert types[host] == "process", types
                platform.start_worker(host, "process")
            platform.start_api(OPEVA_HOSTS_FILE=str(hosts_file))
            for d in (platform.data_dir, platform.data_dir / "jobs"):
                d.chmod(0o755)
            yield platform
        finally:
            platform.stop()


def new_platform(home: Path) -> Platform:
    return Platform(home=home, prefect_port=free_port(), mongo_port=free_port(), api_port=free_port(), data_dir=home / "data")


@contextmanager
def pointed_at(platform: Platform, hosts_file: Path) -> Iterator[None]:
    """Point this test process (its Prefect client and settings) at ``platform`` for a session.

    Prefect's root settings context is made when Prefect is first imported, so the
    environment alone is not enough: a temporary settings context is entered too.
    """
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    saved = dict(os.environ)
    os.environ.update(platform.env())
    os.environ["MONGO_URI"] = platform.mongo_uri
    os.environ["OPEVA_HOSTS_FILE"] = str(hosts_file)
    try:
        with temporary_settings(updates={PREFECT_API_URL: platform.prefect_api_url, PREFECT_API_AUTH_STRING: platform.prefect_auth_string}):
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def lab_started(platform: Platform, lab: Any, hosts_file: Path, *, control: bool = False, local: bool = False,
                prefect_servers: int = 1) -> Iterator[None]:
    """A lab's platform (tests/e2e/test_lab.py, test_lab_load.py, test_data_local.py, bench/lab.py):
    Prefect (the scaled layout, PostgreSQL + Redis + N API servers behind haproxy, when
    ``prefect_servers`` >= 2), Mongo, the pools of ``hosts_file``, the worker of its ``local`` host
    and the control worker when asked, the lab's relay and workers, then the API; no MLflow. The
    caller stops the platform and closes the lab."""
    from deployments.scaled import Layout, ScaleSettings, start_platform_front

    with pointed_at(platform, hosts_file):
        os.environ["OPEVA_MLFLOW"] = "0"
        scale = ScaleSettings(prefect_servers=prefect_servers)
        if scale.scaled:
            start_platform_front(platform, scale, Layout.plan(scale))
        else:
            platform.start_prefect_server()
        platform.start_mongo()
        types = platform.setup_pools(hosts_file, docker=True)
        if local:
            platform.start_worker("local", types["local"])
        if control:
            from deployments.control_pool import start_control_worker

            start_control_worker(platform)
        lab.start_relay(platform)
        lab.start_workers(platform)
        platform.start_api(OPEVA_HOSTS_FILE=str(hosts_file))
        yield


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _with_gateway(fn: Callable[..., Any]) -> Any:
    from prefect.client.orchestration import get_client

    from api.gateway import PrefectGateway

    async with get_client() as client:
        return await fn(PrefectGateway(client))


def gateway_call(fn: Callable[..., Any]) -> Any:
    """Run ``await fn(gateway)`` against the test Prefect server."""
    return asyncio.run(_with_gateway(fn))


def read_run(job_id: str):
    return gateway_call(lambda g: g.read_run(job_id))


def wait_final(job_id: str, timeout: float = 180):
    def done():
        fr = read_run(job_id)
        return fr if fr.state and fr.state.is_final() else None

    return wait_for(done, timeout, what=f"job {job_id} to finish")


def watcher_pids(job_id: str) -> list[int]:
    """The flow processes following a job on a Slurm host (Prefect gives each its run id in
    PREFECT__FLOW_RUN_ID): the Slurm tests kill them to check the re-attach."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and f"PREFECT__FLOW_RUN_ID={job_id}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def final_status(api, job_id: str, timeout: float = 120) -> dict:
    """The job's /status once it is final (finished, failed, stopped or canceled)."""

    def done():
        s = api.get(f"/status/{job_id}").json()
        return s if s["status"] in ("finished", "failed", "stopped", "canceled") else None

    return wait_for(done, timeout, what=f"job {job_id} to end")


def experiment(name: str = "test", run_name: str = "run") -> dict:
    return {"experiment": {"name": name, "run_name": run_name}}


def stored_bundle(api, storage, name: str = "inference") -> str:
    """A bundle in the store from a job made Completed by hand, exported with the reference
    simulator's own exporter (no simulation: seconds, not minutes); its bundle id."""
    import uuid

    from prefect.states import Completed

    from simulator.agents import make_controller
    from simulator.bundle import export_bundle
    from simulator.config import validate_config
    from simulator.sample import sample_dataset

    job = api.post("/run-simulation", json={"config": experiment(name, "t"), "command": ["true"], "target_host": "offline"}).json()["job_id"]

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


def prefect_cmd(*args: str) -> list[str]:
    """The ``prefect`` CLI, talking to the test server (PREFECT_API_URL is in the environment)."""
    return prefect_cli() + list(args)


def sh(script: str) -> list[str]:
    """A simulator command: a shell script using the contract's environment."""
    return ["sh", "-c", script]


KPI_HEADER = "KPI,R-H-01,District\n"


def job_with_kpis(api, storage, district_cost: str, tag: str = "q") -> str:
    """A job on the host without a worker, given a KPI table as a finished job's results hold it."""
    r = api.post("/run-simulation", json={"config": experiment("compare", tag), "command": ["true"], "target_host": "offline"})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    folder = storage.job(job_id).dir / "results" / "simulation_data" / "s1"
    folder.mkdir(parents=True)
    (folder / "exported_kpis.csv").write_text(KPI_HEADER + f"district_cost_total_control_eur,1,{district_cost}\n")
    return job_id
