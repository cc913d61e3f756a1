"""A simulator image as upstream OPEVA builds it (own ENTRYPOINT, no Prefect) runs unchanged
through the REST API, in a sibling container supervised by the flow: finished, progress,
result with nulls, its log lines at their levels, a stop that leaves no container, and
containers that die are always seen."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import docker
import pytest

from helpers import gateway_call, wait_for

pytestmark = pytest.mark.usefixtures("needs_docker")

IMAGE_DIR = Path(__file__).resolve().parent / "upstream_sim"
REPOSITORY = "opeva-test/opeva-simulator"
IMAGE = f"{REPOSITORY}:1.0"


@pytest.fixture(scope="module")
def upstream_image() -> str:
    """Built locally FROM the Debian base (python3 only): nothing of the platform inside."""
    subprocess.run(["docker", "build", "-q", "-t", IMAGE, str(IMAGE_DIR)], check=True, capture_output=True)
    return IMAGE


def upstream_config(storage, name: str, **simulator) -> str:
    """An upstream-style config (``metadata``), stored as JSON, which is also YAML."""
    config = {
        "metadata": {"experiment_name": "upstream", "run_name": name},
        "experiment": {"name": "upstream", "run_name": name},  # what today's API still checks
        "simulator": simulator,
    }
    storage.configs_dir.mkdir(parents=True, exist_ok=True)
    (storage.configs_dir / f"{name}.yaml").write_text(json.dumps(config))
    return f"configs/{name}.yaml"


def submit(api, config_path: str, **fields) -> str:
    r = api.post("/run-simulation", json={"config_path": config_path, "target_host": "local", **fields})
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def status(api, job_id: str) -> dict:
    return api.get(f"/status/{job_id}").json()


def wait_status(api, job_id: str, wanted: set[str], timeout: float = 120) -> dict:
    return wait_for(lambda: (s := status(api, job_id))["status"] in wanted and s, timeout, what=f"{job_id} to be {wanted}")


def containers_of(job_id: str, all_: bool = True) -> list:
    return docker.from_env().containers.list(ignore_removed=True, all=all_, filters={"label": [f"opeva.job_id={job_id}"]})


def prefect_logs(job_id: str) -> list:
    async def collect(g):
        return [entry async for entry in g.follow_logs(job_id, follow=False)]

    return gateway_call(collect)


def test_upstream_image_runs_unchanged_through_the_api(api, storage, upstream_image):
    job_id = submit(api, upstream_config(storage, "happy", steps=4), image_tag="1.0")  # host's simulator_image + tag
    final = wait_status(api, job_id, {"finished", "failed", "stopped"})
    assert final["status"] == "finished", final

    progress = api.get(f"/progress/{job_id}").json()
    assert progress["progress_pct"] == 100.0
    result = api.get(f"/result/{job_id}").json()
    assert result["status"] == "completed" and result["kpis"] == {"cost": 1.25, "emissions": None}

    logs = prefect_logs(job_id)
    lines = [e.message for e in logs]
    assert any("| INFO     | __main__:run_experiment:1 - step 4/4" in m for m in lines), lines
    errors = [e for e in logs if "logged at ERROR" in e.message]
    assert len(errors) == 1 and errors[0].level == 40  # once (stderr and its file are one line), at ERROR
    assert "Experiment complete: done" in api.get(f"/logs/{job_id}", params={"follow": "false"}).text
    file_log = api.get(f"/file-logs/{job_id}", params={"follow": "false"}).text
    assert "step 4/4" in file_log and "logged at ERROR" in file_log

    job = storage.job(job_id)
    own_log = job.simulator_log_file.read_text()  # the simulator's own file, untouched by the platform
    assert own_log.count("\n") == sum(1 for m in lines if " | __main__:run_experiment:" in m)
    assert "[INFO] Job" not in own_log
    assert (job.simulation_data_dir / "session-1" / "building_1.csv").read_text().startswith("step,net_load")
    assert json.loads(job.resolved_config_file.read_text())["resolved"] is True
    info = json.loads(job.job_info_file.read_text())
    assert info["image"] == upstream_image and info["simulator"] == "upstream-style"  # it merged its keys
    assert containers_of(job_id) == []  # the simulator's container is removed


# A missing or refused image is now a 400 at submit: tests/e2e/test_images.py.


def _running_sim(api, storage, name: str, **simulator) -> tuple[str, object]:
    job_id = submit(api, upstream_config(storage, name, steps=600, sleep=0.5, **simulator), image=IMAGE)
    wait_for(lambda: status(api, job_id)["status"] == "running" and containers_of(job_id, all_=False), 240, what="the simulator to run")
    wait_for(lambda: storage.job(job_id).progress_file.exists(), 120, what="progress")
    sim = [c for c in containers_of(job_id, all_=False) if c.labels.get("opeva.role") == "simulator"]
    assert len(sim) == 1
    return job_id, sim[0]


@pytest.mark.parametrize("ignore_sigterm", [False, True], ids=["plain", "ignores-sigterm"])
def test_stop_ends_stopped_and_leaves_no_container(api, storage, upstream_image, ignore_sigterm):
    job_id, _sim = _running_sim(api, storage, f"stop-{int(ignore_sigterm)}", ignore_sigterm=ignore_sigterm)
    assert api.post(f"/stop/{job_id}").status_code == 200
    wait_status(api, job_id, {"stopped", "failed", "finished"}, timeout=60)
    time.sleep(4)  # it stays stopped: no late Crashed or Failed from the engine
    states = gateway_call(lambda g: g.client.read_flow_run_states(g_id(job_id)))
    assert status(api, job_id)["status"] == "stopped", [(s.type.value, (s.message or "")[:300]) for s in states][4:]
    assert "CRASHED" not in [s.type.value for s in states] and "FAILED" not in [s.type.value for s in states]
    wait_for(lambda: not [c for c in containers_of(job_id) if c.labels.get("opeva.role") == "simulator"], 20,
             what="the simulator container to be removed")


def g_id(job_id: str):
    from uuid import UUID

    return UUID(job_id)


def test_killed_simulator_container_fails_the_job_with_its_exit_code(api, storage, upstream_image):
    job_id, sim = _running_sim(api, storage, "killed-sim")
    sim.kill()
    started = time.monotonic()
    final = wait_status(api, job_id, {"failed", "finished", "stopped"}, timeout=30)
    assert final["status"] == "failed" and "exited with code 137" in final["prefect_state"]["message"], final
    assert time.monotonic() - started < 10


def test_killed_supervisor_fails_the_job_and_takes_the_simulator_with_it(api, storage, upstream_image):
    job_id, sim = _running_sim(api, storage, "killed-supervisor")
    supervisor = docker.from_env().containers.get(sim.labels["opeva.supervisor"])
    supervisor.kill()
    started = time.monotonic()
    final = wait_status(api, job_id, {"failed", "finished", "stopped"}, timeout=30)
    assert final["status"] == "failed" and "137" in final["prefect_state"]["message"], final
    assert time.monotonic() - started < 10
    # the kernel ended the simulator with its supervisor's PID namespace: nothing left running
    wait_for(lambda: not containers_of(job_id, all_=False), 10, what="no container of the job left running")


def test_an_operator_failing_a_running_job_leaves_none_of_its_containers(api, storage, upstream_image):
    """/ops fail kills the supervisor at once; the simulator beside it must go too (a killed
    supervisor cannot remove it, and it would run on, unseen, using the host)."""
    job_id, _sim = _running_sim(api, storage, "ops-fail")
    r = api.post(f"/ops/jobs/{job_id}/fail", json={"reason": "operator test"})
    assert r.status_code == 200, r.text
    assert status(api, job_id)["status"] == "failed"
    wait_for(lambda: not containers_of(job_id, all_=False), 30, what="the job's containers to stop")
    wait_for(lambda: not [c for c in containers_of(job_id) if c.labels.get("opeva.role") == "simulator"], 30,
             what="the simulator container to be removed")
    assert "operator test" in (status(api, job_id)["prefect_state"]["message"] or "")
