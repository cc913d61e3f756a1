"""How long the platform takes to recover from a fault, with `make up`'s supervisor
(deployments/supervisor.py) restarting what dies, on SQLite and PostgreSQL:

- worker kill -> a worker polling again (a heartbeat newer than the kill),
- Prefect server kill -> the API answering a Prefect-backed request (GET /jobs),
- a job's container killed -> the job `failed` on GET /status,
- the Docker engine restarted under a running job (once per backend, last) -> the job
  `failed`, and -> a new job `finished`.

Usage: python bench/fault_recovery.py [--repeat 3] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import threading
import time
from datetime import datetime, timezone

import httpx

from _platform import pct, running_platform
from deployments.platform import PROJECT_ROOT

LONG_JOB = {"config": {"experiment": {"name": "faults", "run_name": "r"}}, "command": ["sh", "-c", "sleep 120"], "target_host": "local"}


def until(predicate, timeout: float = 180, interval: float = 0.1) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            if predicate():
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    raise TimeoutError("no recovery within %.0f s" % timeout)


def supervised(platform) -> threading.Event:
    """`make up`'s supervision loop, in a thread, until the returned event is set."""
    from deployments.supervisor import RestartPolicy, check_children

    stop = threading.Event()
    policy = RestartPolicy(max_deaths=100)

    def loop() -> None:
        while not stop.is_set():
            check_children(platform, policy)
            time.sleep(0.1)

    threading.Thread(target=loop, daemon=True).start()
    return stop


def heartbeat_after(api_url: str, since: datetime) -> bool:
    auth = tuple(os.environ["PREFECT_API_AUTH_STRING"].split(":", 1))  # the bench platforms' server credentials
    r = httpx.post(f"{api_url}/work_pools/local/workers/filter", json={}, timeout=5, auth=auth)
    return any(w["last_heartbeat_time"] and datetime.fromisoformat(w["last_heartbeat_time"]) > since for w in r.json())


def kill_worker(platform) -> float:
    worker = next(s for s in platform.services if s.name.startswith("worker-local"))
    since = datetime.now(timezone.utc)
    os.kill(worker.proc.pid, signal.SIGKILL)
    return until(lambda: heartbeat_after(platform.prefect_api_url, since))


def kill_server(platform, api: httpx.Client) -> float:
    server = next(s for s in platform.services if s.name == "prefect-server")
    os.killpg(server.proc.pid, signal.SIGKILL)
    time.sleep(0.2)  # the API notices only from now on
    return until(lambda: api.get("/jobs", params={"limit": 1}).status_code == 200, 300) + 0.2


def kill_container(api: httpx.Client) -> float:
    import docker

    job_id = api.post("/run-simulation", json=LONG_JOB).json()["job_id"]
    until(lambda: api.get(f"/status/{job_id}").json()["status"] == "running", 180)
    engine = docker.from_env()
    found = []
    until(lambda: found.extend(engine.containers.list(ignore_removed=True, filters={"label": f"io.prefect.flow-run-id={job_id}"})) or found, 60)
    found[0].kill()
    return until(lambda: api.get(f"/status/{job_id}").json()["status"] == "failed", 180)


def restart_engine(api: httpx.Client) -> tuple[float, float]:
    job_id = api.post("/run-simulation", json=LONG_JOB).json()["job_id"]
    until(lambda: api.get(f"/status/{job_id}").json()["status"] == "running", 180)
    t0 = time.perf_counter()
    subprocess.run(["bash", str(PROJECT_ROOT / "deployments" / "docker_engine.sh"), "--restart"], check=True, timeout=300)
    until(lambda: api.get(f"/status/{job_id}").json()["status"] == "failed", 300)
    failed = time.perf_counter() - t0
    new = api.post("/run-simulation", json={**LONG_JOB, "command": ["true"]}).json()["job_id"]
    until(lambda: api.get(f"/status/{new}").json()["status"] == "finished", 300)
    return failed, time.perf_counter() - t0


def one_backend(database: str, repeat: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"worker kill -> worker polling again": [], "server kill -> API answering": [], "container kill -> job failed": [],
                                   "engine restart -> running job failed": [], "engine restart -> a new job finished": []}
    with running_platform({"local": True}, api=True, database=database) as platform, httpx.Client(base_url=platform.api_url, timeout=10) as api:
        stop = supervised(platform)
        try:
            for _ in range(repeat):
                out["worker kill -> worker polling again"].append(kill_worker(platform))
                out["server kill -> API answering"].append(kill_server(platform, api))
                until(lambda: platform.services and all(s.proc.poll() is None for s in platform.services), 120)
                out["container kill -> job failed"].append(kill_container(api))
            failed, next_job = restart_engine(api)
            out["engine restart -> running job failed"].append(failed)
            out["engine restart -> a new job finished"].append(next_job)
        finally:
            stop.set()
    return out


def main(repeat: int, backends: list[str]) -> None:
    results = {db: one_backend(db, repeat) for db in backends}
    measures = list(next(iter(results.values())))
    width = max(len(m) for m in measures)
    head = "".join(f" | {db + ' p50':>12} | {db + ' max':>12}" for db in backends)
    print(f"\nFault recovery, {repeat} times each, seconds (supervisor restarts with back-off 1 s first)\n")
    print(f"| {'fault -> recovered':<{width}}{head} |")
    print(f"|{'-' * (width + 2)}" + "|--------------|--------------" * len(backends) + "|")
    for m in measures:
        cells = "".join(f" | {pct(results[db][m], .5):>12.2f} | {max(results[db][m]):>12.2f}" for db in backends)
        print(f"| {m:<{width}}{cells} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    main(args.repeat, args.backends.split(","))
