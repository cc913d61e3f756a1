"""The platform's MLflow server and the jobs network, end to end (docs/mlflow.md, docs/sandbox-network.md).

A platform of its own (module scope) with a real ``mlflow server`` (its own venv) and the relay
on a jobs network of this platform's own. Jobs are the upstream-style stand-in image and the
reference simulator, in real containers: their runs land FINISHED in the server, ``/job-info``
links them, a job reaches MLflow and nothing else of the platform, ``network: none`` reaches
nothing, and what upstream writes under ``<base>/mlflow`` stays in each job's own folder.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest

from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey

from core.dataset_lineage import artifact_key
from flows.job_network import ensure_network, network_name
from simulator.sample import write_sample_dataset
from helpers import gateway_call, running_platform
from test_sim_images import status, submit, upstream_config, upstream_image, wait_status  # noqa: F401

pytestmark = pytest.mark.usefixtures("needs_docker")


@pytest.fixture(scope="module")
def platform(docker_ready: bool) -> Iterator:
    """Overrides the session platform for this module: the same, plus MLflow and its relay."""
    with running_platform("opeva-mlflow-tests-", docker=docker_ready, workers=("local",), mlflow=True) as p:
        yield p


@pytest.fixture(scope="module")
def storage(platform):
    """This module's data root (the session's ``storage`` belongs to the session's platform)."""
    from core.layout import DataRoot

    return DataRoot(platform.data_dir)


def mlflow(platform, path: str, body: dict | None = None, **params) -> dict:
    url = f"http://127.0.0.1:{platform.mlflow_port}/api/2.0/mlflow/{path}"
    r = httpx.post(url, json=body, timeout=10) if body is not None else httpx.get(url, params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def runs_of(platform, job_id: str) -> list[dict]:
    ids = [e["experiment_id"] for e in mlflow(platform, "experiments/search", {"max_results": 1000})["experiments"]]
    return mlflow(platform, "runs/search", {"experiment_ids": ids, "filter": f"tags.`opeva.job_id` = '{job_id}'"}).get("runs", [])


def finished(api, job_id: str) -> dict:
    final = wait_status(api, job_id, {"finished", "failed", "stopped"}, timeout=420)  # a loaded 2-core machine queues
    assert final["status"] == "finished", (final, api.get(f"/logs/{job_id}").text[-3000:])
    return final


def test_stand_in_run_lands_finished_in_mlflow_and_job_info_links_it(api, storage, platform, upstream_image):  # noqa: F811
    job_id = submit(api, upstream_config(storage, "tracked", steps=2), image=upstream_image)
    finished(api, job_id)

    runs = runs_of(platform, job_id)
    assert len(runs) == 1, runs
    run = runs[0]
    assert run["info"]["status"] == "FINISHED"
    assert {p["key"]: p["value"] for p in run["data"]["params"]} == {"steps": "2", "algorithm": "stand-in"}
    assert {m["key"]: m["value"] for m in run["data"]["metrics"]} == {"reward": 1.0}  # the last step's (steps * 0.5)

    info = api.get(f"/job-info/{job_id}").json()
    link = info["mlflow"]
    assert link["available"] is True and link["run_id"] == run["info"]["run_id"] and link["status"] == "FINISHED", link
    assert link["url"] == f"http://127.0.0.1:{platform.mlflow_port}/#/experiments/{run['info']['experiment_id']}/runs/{run['info']['run_id']}"
    assert info["mlflow_run_id"] == run["info"]["run_id"] and info["mlflow_run_url"] == link["url"]
    # upstream always makes <base>/mlflow/mlruns: in the job's own folder, the shared root's stays empty
    assert (storage.job(job_id).dir / "mlflow" / "mlruns").is_dir()
    assert list((storage.root / "mlflow").iterdir()) == []


def test_reference_simulator_logs_params_metrics_and_artifacts(api, platform):
    config = {"experiment": {"name": "mlflow-reference", "run_name": "r1"}, "algorithm": "rule_based", "simulation": {"buildings": 3, "days": 14}}
    r = api.post("/run-simulation", json={"config": config})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    finished(api, job_id)

    [run] = runs_of(platform, job_id)
    assert run["info"]["status"] == "FINISHED" and run["info"]["run_name"] == job_id
    assert len(run["data"]["params"]) >= 3 and len(run["data"]["metrics"]) >= 3, run["data"]
    files = mlflow(platform, "artifacts/list", run_id=run["info"]["run_id"]).get("files", [])
    assert [f["path"] for f in files] == ["result.json"]
    assert api.get(f"/job-info/{job_id}").json()["mlflow"]["run_id"] == run["info"]["run_id"]
    assert api.get(f"/result/{job_id}").json()["mlflow_run_id"] == run["info"]["run_id"]


def test_a_job_on_a_dataset_logs_its_version_to_mlflow_and_to_a_lineage_artifact(api, storage, platform):
    """Issue 25 §5: the dataset version a job ran on is an input of its MLflow run (the full sha256
    in ``source``), and Prefect shows the dataset's lineage as a markdown artifact keyed by it."""
    name = f"mlin-{uuid.uuid4().hex[:6]}"
    write_sample_dataset(storage.dataset_dir(name), buildings=2, days=3)
    config = {"experiment": {"name": "mlflow-lineage", "run_name": "r1"}, "algorithm": "rule_based", "dataset": name}
    r = api.post("/run-simulation", json={"config": config})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    finished(api, job_id)
    digest = api.get(f"/job-info/{job_id}").json()["dataset"]["digest"]

    [run] = runs_of(platform, job_id)
    inputs = [d["dataset"] for d in run.get("inputs", {}).get("dataset_inputs", [])]
    assert [(d["name"], d["digest"], json.loads(d["source"])["sha256"]) for d in inputs] == [(name, digest[:12], digest)], run.get("inputs")
    latest = gateway_call(lambda g: g.client.read_latest_artifacts(
        artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[artifact_key(name)]))))
    assert len(latest) == 1 and job_id in latest[0].data and digest[:12] in latest[0].data


@pytest.fixture
def listener_on_every_address() -> Iterator[int]:
    """A TCP service on 0.0.0.0 (more exposed than any platform service, which binds 127.0.0.1)."""
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.5)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                server.accept()[0].close()
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    stop.set()
    server.close()


def _host_addresses() -> list[str]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent: this picks the address of the default route
        return [s.getsockname()[0]]


def test_a_job_reaches_mlflow_and_nothing_else_of_the_platform(api, storage, platform, upstream_image, listener_on_every_address):  # noqa: F811
    import docker

    gateway = ensure_network(docker.from_env(), network_name()).attrs["IPAM"]["Config"][0]["Gateway"]
    port = listener_on_every_address
    ports = {"prefect": platform.prefect_port, "api": platform.api_port, "mongo": platform.mongo_port, "mlflow": platform.mlflow_port}
    targets = ["opeva-mlflow:5000"] + [f"127.0.0.1:{p}" for p in ports.values()]
    targets += [f"{a}:{p}" for a in [gateway, *_host_addresses()] for p in [port, *ports.values()]]
    job_id = submit(api, upstream_config(storage, "reach", steps=1, reach=targets), image=upstream_image)
    finished(api, job_id)

    reach = json.loads((storage.job(job_id).dir / "reach.json").read_text())
    assert reach.pop("opeva-mlflow:5000") == "allowed"
    assert all(v.startswith("refused") for v in reach.values()), reach
    assert len(runs_of(platform, job_id)) == 1  # and its MLflow run went through the relay


def _submit_no_network(storage, name: str, image: str) -> str:
    async def create(g):
        run = await g.client.create_flow_run_from_deployment(
            await g.deployment_id("run-simulation", "local"),
            parameters={"config_path": upstream_config(storage, name, steps=1, reach=["opeva-mlflow:5000", "1.1.1.1:53"]),
                        "target_host": "local", "image": image},
            job_variables={"job_network": "none"},
        )
        return str(run.id)

    return gateway_call(create)


def test_network_none_reaches_nothing_and_jobs_keep_their_mlflow_folders_apart(api, storage, platform, upstream_image):  # noqa: F811
    first, second = (_submit_no_network(storage, n, upstream_image) for n in ("alone-1", "alone-2"))
    for job_id in (first, second):
        finished(api, job_id)
        reach = json.loads((storage.job(job_id).dir / "reach.json").read_text())
        assert all(v.startswith("refused") for v in reach.values()), reach
        assert runs_of(platform, job_id) == []  # no tracking URI without a network: upstream's file store
        assert "network none" in api.get(f"/logs/{job_id}").text
    # each job's file store is its own; the shared root's mlflow/ (a mount point) is untouched
    for job_id, other in ((first, second), (second, first)):
        store = storage.job(job_id).dir / "mlflow" / "mlruns"
        assert store.is_dir() and any(store.iterdir()), store  # the job's own file store (upstream's layout)
        assert not (storage.job(other).dir / "mlflow").samefile(store.parent)
    assert list((storage.root / "mlflow").iterdir()) == []


def test_a_job_may_narrow_its_network_but_not_widen_it():
    from core.hosts import Host, simulator_limits

    closed = Host(name="closed", job_network="none")
    assert simulator_limits(closed, {"job_network": "internal"})["network"] == "none"
    assert simulator_limits(Host(name="open"), {"job_network": "none"})["network"] == "none"
    assert simulator_limits(Host(name="open"), None)["network"] == "internal"
