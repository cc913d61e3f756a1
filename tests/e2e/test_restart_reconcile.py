"""`make up` stopped while jobs run, then started again: every job is final or live, never both,
no container stays without a live run, and a late report cannot resurrect a final state.

Not ``disruptive``: it runs its own ``python -m deployments.up`` on its own free ports and
OPEVA_HOME, and touches only the containers of its own runs (the engine is shared).

Two jobs run when `make up` gets SIGTERM. While it is down, one job's supervisor container is
killed (a job that died with the platform away: nothing will ever report it); the other keeps
running. At the next start the dead one must be Crashed with error_code host_lost and its
containers gone, the live one re-attached (Running with a running container, then Completed by
its own report) and its container removed once its run is final (deployments/reconcile.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker
import httpx
import pytest

from deployments.platform import PROJECT_ROOT, free_port
from helpers import experiment, sh, wait_for

pytestmark = [pytest.mark.usefixtures("docker_ready")]

LIVE_SECONDS = 150  # outlasts a restart of make up (about 70 s on the shared 2-core machine)


def _containers(engine: docker.DockerClient, run_id: str) -> list:
    """Every container of one run: its supervisor (prefect-docker's label) and its simulator (ours)."""
    found = {c.id: c for key in ("io.prefect.flow-run-id", "opeva.job_id")
             for c in engine.containers.list(ignore_removed=True, all=True, filters={"label": f"{key}={run_id}"})}
    return list(found.values())


class MakeUp:
    """One `python -m deployments.up` on its own home and ports, started and stopped like a user does."""

    def __init__(self, home: Path, out_dir: Path) -> None:
        self.home, self.out_dir = home, out_dir
        ports = {k: str(free_port()) for k in ("OPEVA_PREFECT_PORT", "OPEVA_API_PORT", "OPEVA_MONGO_PORT", "OPEVA_MLFLOW_PORT")}
        data = home / "data"
        (home / "hosts.yaml").write_text(f"hosts:\n  - name: local\n    concurrency_limit: 2\n    volumes: ['{data}:{data}']\n    start_worker: true\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OPEVA_", "MONGO_URI"))}
        env.update(ports, OPEVA_HOME=str(home), OPEVA_HOSTS_FILE=str(home / "hosts.yaml"), OPEVA_DATA_DIR=str(data),
                   OPEVA_MLFLOW="0", OPEVA_IMAGE=os.environ.get("OPEVA_IMAGE", ""), PYTHONPATH=str(PROJECT_ROOT))
        self.env = env
        self.api_url = f"http://127.0.0.1:{ports['OPEVA_API_PORT']}"
        self.prefect_url = f"http://127.0.0.1:{ports['OPEVA_PREFECT_PORT']}/api"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def out(self) -> Path:
        return self.out_dir / f"make-up-{self.starts}.out"

    def printed(self) -> str:
        return self.out.read_text()

    def start(self) -> float:
        """Start and wait for the banner; returns the monotonic time it appeared."""
        self.starts += 1
        with open(self.out, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "deployments.up"], env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=PROJECT_ROOT, start_new_session=True)
        wait_for(lambda: "OPEVA platform is up" in self.printed() or self.proc.poll() is not None, 300, what="make up to start")
        assert self.proc.poll() is None, self.printed()
        return time.monotonic()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            assert self.proc.wait(timeout=120) == 0, self.printed()

    def prefect(self) -> httpx.Client:
        user, password = (self.home / "prefect" / "auth_string").read_text().strip().split(":", 1)
        return httpx.Client(base_url=self.prefect_url, auth=(user, password), timeout=30)


def _submit(api: httpx.Client, seconds: int) -> str:
    r = api.post("/run-simulation", json={"config": experiment("restart", uuid.uuid4().hex[:6]), "target_host": "local",
                                          "command": sh(f'for i in $(seq 1 {seconds}); do echo "[INFO] step $i"; sleep 1; done')})
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def _state(prefect: httpx.Client, run_id: str) -> dict:
    return prefect.get(f"/flow_runs/{run_id}").json()["state"]


def _agrees(api: httpx.Client, prefect: httpx.Client, run_id: str) -> tuple[str, str, str | None]:
    """(Prefect state type, /status, /job-info's error_code) once /status, /job-info and Prefect say the same."""
    def read() -> tuple[str, dict, dict] | None:
        state = _state(prefect, run_id)["type"]
        status, info = api.get(f"/status/{run_id}").json(), api.get(f"/job-info/{run_id}").json()
        same = status["prefect_state"]["type"] == state == _state(prefect, run_id)["type"] and status["status"] == info["status"]
        return (state, status, info) if same else None
    state, status, info = wait_for(read, 10, what=f"/status, /job-info and Prefect to agree on {run_id}")
    return state, status["status"], info.get("error_code")


def test_restart_reattaches_live_jobs_crashes_dead_ones_and_removes_their_containers(tmp_path):
    engine = docker.from_env()
    home = Path(tempfile.mkdtemp(prefix="opeva-restart-"))
    up = MakeUp(home, tmp_path)
    jobs: list[str] = []
    try:
        up.start()
        with httpx.Client(base_url=up.api_url, timeout=30) as api:
            live, dead = _submit(api, LIVE_SECONDS), _submit(api, LIVE_SECONDS)
            jobs += [live, dead]
            wait_for(lambda: all(api.get(f"/status/{j}").json()["status"] == "running" for j in jobs), 240, what="both jobs to run")
        up.stop()

        # Stopping make up left both jobs running: Running in Prefect, containers up (the measured "before").
        for job in jobs:
            assert any(c.status == "running" for c in _containers(engine, job)), job
        dead_supervisor = next(c for c in _containers(engine, dead) if c.labels.get("opeva.role") == "supervisor")
        dead_supervisor.kill()  # the job dies while the platform is away: nothing will ever report it
        wait_for(lambda: not any(c.status == "running" for c in _containers(engine, dead)), 30, what="the killed job's containers to end")

        up_at = up.start()
        assert "Jobs left by the last run: 1 running job(s) re-attached, 1 without a container made final" in up.printed(), up.printed()
        with httpx.Client(base_url=up.api_url, timeout=30) as api, up.prefect() as prefect:
            # The dead job: final at once, host_lost, no container; the live one: Running with its container.
            state, status, code = _agrees(api, prefect, dead)
            assert (state, status, code) == ("CRASHED", "failed", "host_lost"), (state, status, code, _state(prefect, dead))
            assert _containers(engine, dead) == []
            state, status, _ = _agrees(api, prefect, live)
            assert (state, status) == ("RUNNING", "running")
            assert [c.status for c in _containers(engine, live) if c.labels.get("opeva.role") == "supervisor"] == ["running"]

            # A late report cannot resurrect the crashed run (deployments/keep_final.py).
            for late in ("COMPLETED", "RUNNING"):
                r = prefect.post(f"/flow_runs/{dead}/set_state", json={"state": {"type": late, "name": late.title()}})
                assert r.status_code == 200 and r.json()["status"] == "REJECT", r.text
                assert _state(prefect, dead)["type"] == "CRASHED"
            assert api.get(f"/status/{dead}").json()["status"] == "failed"

            # The re-attached job reports its own end; then its container goes (it had no worker to remove it).
            wait_for(lambda: _state(prefect, live)["type"] in ("COMPLETED", "FAILED", "CRASHED"), LIVE_SECONDS + 120, what="the re-attached job to end")
            final_at = time.monotonic()
            # Its own Completed, or (when the restart outlasted the zombie automation's 90 s) Crashed: final either way
            assert _agrees(api, prefect, live) in (("COMPLETED", "finished", None), ("CRASHED", "failed", "host_lost"))
            wait_for(lambda: _containers(engine, live) == [], 90, what="the re-attached job's container to be removed")
            print(f"\nlive job ended {_state(prefect, live)['type']}; restart -> dead job final: before the banner; live job final -> its container gone: "
                  f"{time.monotonic() - final_at:.1f} s; banner -> all consistent: {time.monotonic() - up_at:.1f} s")
            assert "reconcile: " in up.printed()
        up.stop()
    finally:
        up.stop()
        for job in jobs:  # only this test's own containers
            for c in _containers(engine, job):
                c.remove(force=True)
        shutil.rmtree(home, ignore_errors=True)
