"""Faults with real components: `make up` restarting its children, a worker killed
mid-run, the API restarted mid-follow, MongoDB down under a dataset build, a full
data disk. The Prefect server restart is tests/e2e/test_server_restart.py.

Tests that stop shared services are marked ``disruptive`` (they run last) and put
each service back before they end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from uuid import UUID
from pathlib import Path

import httpx
import pytest

from deployments.platform import PROJECT_ROOT, free_port, kill_group, worker_online
from helpers import experiment, gateway_call, read_run, sh, wait_final, wait_for

pytestmark = [pytest.mark.usefixtures("needs_docker"), pytest.mark.disruptive]


def service(platform, prefix: str):
    return next(s for s in platform.services if s.name.startswith(prefix) and s.proc.poll() is None)


def submit(api, command: list[str], host: str = "local", **body) -> str:
    r = api.post("/run-simulation", json={"config": experiment("faults", uuid.uuid4().hex[:6]), "command": command, "target_host": host, **body})
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def state_names(job_id: str) -> list[str]:
    return [s.name for s in gateway_call(lambda g: g.client.read_flow_run_states(UUID(job_id)))]


# -- make up itself --------------------------------------------------------------


def test_make_up_restarts_a_killed_worker_and_api_and_stops_on_sigterm(tmp_path):
    home = Path(tempfile.mkdtemp(prefix="opeva-makeup-"))
    ports = {k: str(free_port()) for k in ("OPEVA_PREFECT_PORT", "OPEVA_API_PORT", "OPEVA_MONGO_PORT")}
    data = home / "data"
    (home / "hosts.yaml").write_text(f"hosts:\n  - name: local\n    concurrency_limit: 2\n    volumes: ['{data}:{data}']\n    start_worker: true\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OPEVA_", "MONGO_URI"))}
    env.update(ports, OPEVA_HOME=str(home), OPEVA_HOSTS_FILE=str(home / "hosts.yaml"), OPEVA_DATA_DIR=str(data),
               OPEVA_IMAGE=os.environ.get("OPEVA_IMAGE", ""), PYTHONPATH=str(PROJECT_ROOT))
    out = open(tmp_path / "make-up.out", "w+")
    up = subprocess.Popen([sys.executable, "-m", "deployments.up"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, start_new_session=True)
    api_url = f"http://127.0.0.1:{ports['OPEVA_API_PORT']}"
    prefect_url = f"http://127.0.0.1:{ports['OPEVA_PREFECT_PORT']}/api"
    printed = lambda: (tmp_path / "make-up.out").read_text()  # noqa: E731
    try:
        wait_for(lambda: "OPEVA platform is up" in printed() or up.poll() is not None, 300, what="make up to start")
        assert up.poll() is None, printed()
        children = json.loads((home / "children.json").read_text())
        worker = next(name for name in children if name.startswith("worker-local"))

        os.kill(children[worker], signal.SIGKILL)
        wait_for(lambda: f"{worker} restarted" in printed(), 120, what="the worker's restart")
        assert f"{worker} exited with code -9; restarting" in printed()
        assert json.loads((home / "children.json").read_text())[worker] != children[worker]
        assert worker_online(prefect_url, "local", auth=(home / "prefect" / "auth_string").read_text().strip())  # that platform's own credentials
        with httpx.Client(base_url=api_url, timeout=30) as api:
            job_id = submit(api, sh("echo after-restart"))
            wait_for(lambda: api.get(f"/status/{job_id}").json()["status"] == "finished", 180, what="a job on the restarted worker")

        os.kill(children["api"], signal.SIGKILL)
        wait_for(lambda: "api restarted" in printed(), 120, what="the API's restart")
        assert httpx.get(f"{api_url}/health", timeout=10).status_code == 200
        assert up.poll() is None, "one dead child must not stop the platform"

        os.killpg(up.pid, signal.SIGTERM)
        assert up.wait(timeout=90) == 0, printed()
        for pid in json.loads((home / "children.json").read_text()).values():
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower(), pid
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGTERM)
            up.wait(timeout=90)


# -- a worker killed mid-run ---------------------------------------------------------


def test_worker_killed_mid_run_job_keeps_its_state_host_offline_new_worker_takes_jobs(api, platform):
    # Long enough to outlast the offline detection (3 missed 10 s heartbeats plus the server's
    # check interval, up to 90 s below): a 40 s job sometimes finished first (a CI run caught it).
    job_id = submit(api, sh('for i in $(seq 1 150); do echo "[INFO] step $i"; sleep 1; done'), host="second")
    wait_for(lambda: read_run(job_id).state.is_running(), 300, what="the job to run")
    worker = service(platform, "worker-second")
    os.kill(worker.proc.pid, signal.SIGKILL)
    kill_group(worker.proc)

    # Prefect marks a worker OFFLINE after 3 missed heartbeats (10 s each here). /hosts says so
    # (its workers and message) and the host is offline although its job still runs: a worker
    # Prefect judged lost overrides upstream's "a host with a started job counts as online".
    def worker_offline() -> bool:
        host = api.get("/hosts").json()["hosts"]["second"]
        return bool(host["workers"]) and all(w["status"] == "OFFLINE" for w in host["workers"]) and "no worker online" in (host["message"] or "")
    wait_for(worker_offline, 90, what="host 'second' to show its worker offline")
    assert api.get("/hosts").json()["hosts"]["second"]["online"] is False
    assert api.get(f"/status/{job_id}").json()["status"] == "running"
    run = wait_final(job_id, 300)  # the container reports to the server by itself
    assert run.state.is_completed(), run.state
    assert "Crashed" not in state_names(job_id)

    platform.spawn(worker)  # what the supervisor does
    assert api.get("/hosts").json()["hosts"]["second"]["online"] is True
    new_job = submit(api, sh("echo new-worker"), host="second")
    assert wait_final(new_job, 240).state.is_completed()


# -- the API restarted while a client follows a job's log -----------------------------


def test_api_restarted_mid_follow_then_follow_again_gets_every_line(api, platform):
    job_id = submit(api, sh('for i in $(seq 1 30); do echo "[INFO] line $i"; sleep 1; done; echo "[INFO] last line"'))
    api_service = service(platform, "api")
    wait_for(lambda: read_run(job_id).state.is_running(), 300, what="the job to run")
    seen: list[str] = []
    try:
        with pytest.raises(httpx.HTTPError):
            with httpx.stream("GET", f"{platform.api_url}/logs/{job_id}", params={"follow": True}, timeout=None) as stream:
                for line in stream.iter_lines():
                    seen.append(line)
                    if "line 3" in line and api_service.proc.poll() is None:
                        kill_group(api_service.proc)
    finally:
        platform.spawn(api_service)  # what the supervisor does
    assert any("line 3" in s for s in seen)
    assert read_run(job_id).state.is_running(), "the API going away must not touch the job"

    with httpx.stream("GET", f"{platform.api_url}/logs/{job_id}", params={"follow": True}, timeout=300) as stream:
        lines = list(stream.iter_lines())
    for i in range(1, 31):
        assert sum(f"line {i}" == s.split("] ", 1)[-1] for s in lines) == 1, (i, lines)
    assert any("last line" in s for s in lines)
    assert read_run(job_id).state.is_completed()


# -- MongoDB down while a dataset build runs ----------------------------------------------


def test_dataset_build_with_mongodb_down_fails_with_a_message_and_its_retry_succeeds(api, platform, mongo, storage):
    from test_datasets import END
    from tools.seed_site import seed_ev_site

    site = f"faults_{uuid.uuid4().hex[:6]}"
    seed_ev_site(mongo, site=site, days=2, seed=7, end=END)
    name = f"ds-{site}"
    params = {"site_id": site, "name": name, "from_ts": None, "until_ts": None, "description": "fault test",
              "citylearn_configs": {}}
    mongo_service = service(platform, "mongo")
    os.killpg(mongo_service.proc.pid, signal.SIGTERM)  # stopped, not crashed: its files stay whole
    mongo_service.proc.wait(timeout=30)
    try:
        run = gateway_call(lambda g: g.submit("build-dataset", "local", params, name=name, retries=1, retry_delay_seconds=20))
        wait_for(lambda: "AwaitingRetry" in state_names(str(run.id)) or read_run(str(run.id)).state.is_final(), 180, what="the first attempt to fail")
    finally:
        platform.spawn(mongo_service)
    assert site in mongo.list_database_names()
    final = wait_final(str(run.id), 300)
    history = gateway_call(lambda g: g.client.read_flow_run_states(run.id))
    assert "AwaitingRetry" in [s.name for s in history], [(s.name, s.message) for s in history]
    said = " ".join(s.message or "" for s in history) + api.get(f"/logs/{run.id}", params={"follow": False}).text
    assert any(w in said for w in ("ServerSelectionTimeoutError", "Connection refused", "MongoDB")), said[-3000:]
    assert final.state.is_completed(), final.state
    assert storage.dataset_dir(name).is_dir()


# -- a full disk on the data root -------------------------------------------------------------


def test_full_data_disk_fails_the_job_clearly_and_damages_nothing_else(api, platform, storage):
    if os.geteuid() != 0:
        pytest.fail("needs root to mount a small tmpfs (CI runs as root)")
    before = submit(api, sh("echo kept > \"$OPEVA_JOB_DIR/kept.txt\"; echo before"))
    assert wait_final(before, 300).state.is_completed()
    jobs = storage.root / "jobs"
    kept = {p: p.read_bytes() for p in (jobs / before).rglob("*") if p.is_file()}
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "opeva-full-disk", str(jobs)], check=True)
    try:
        job_id = submit(api, sh('head -c 2000000 /dev/zero > "$OPEVA_JOB_DIR/big.bin" && echo unreachable'))
        run = wait_final(job_id, 300)
        assert run.state.type.value in ("FAILED", "CRASHED"), run.state
        message = (run.state.message or "") + api.get(f"/logs/{job_id}", params={"follow": False}).text
        assert "No space left on device" in message, message  # the platform's words, not the command's
        assert api.get(f"/status/{job_id}").json()["status"] == "failed"
    finally:
        subprocess.run(["umount", str(jobs)], check=True)
    assert {p: p.read_bytes() for p in (jobs / before).rglob("*") if p.is_file()} == kept
    after = submit(api, sh("echo after"))
    assert wait_final(after, 300).state.is_completed()
    assert api.get("/health").status_code == 200


# -- the Docker engine restarted under a running job ---------------------------------------


def test_docker_engine_restarted_mid_run_fails_the_job_readably_and_new_jobs_run(api, platform):
    job_id = submit(api, sh('for i in $(seq 1 300); do echo "[INFO] tick $i"; sleep 1; done'))
    wait_for(lambda: read_run(job_id).state.is_running(), 300, what="the job to run")
    wait_for(lambda: "tick 2" in api.get(f"/logs/{job_id}", params={"follow": False}).text, 60, what="the job's first lines")
    worker = service(platform, "worker-local")

    subprocess.run(["bash", str(PROJECT_ROOT / "deployments" / "docker_engine.sh"), "--restart"], check=True, timeout=300)

    # The engine took the job's containers down with it: the job must end, not stay "running".
    final = wait_final(job_id, 240)
    assert final.state.type.value in ("FAILED", "CRASHED"), final.state
    status = api.get(f"/status/{job_id}").json()
    assert status["status"] == "failed" and status["prefect_state"]["message"], status
    assert "tick 2" in api.get(f"/logs/{job_id}", params={"follow": False}).text, "a failed job keeps its logs"
    assert worker.proc.poll() is None, "the worker outlives the engine's restart"

    after = submit(api, sh("echo after-engine-restart"))
    assert wait_final(after, 300).state.is_completed()
    assert "after-engine-restart" in api.get(f"/logs/{after}", params={"follow": False}).text
