"""A host that loses its worker (issue 22 item 4): how fast the platform notices and moves the
host's automatic queued jobs, against the same job on a healthy host in the same run.

Two hosts (``a``, ``b``, 2 slots each) with Docker workers, the control pool's worker, and the
automation ``make setup`` makes. Each round: a fills with 2 pinned long jobs; b's worker is
SIGKILLed; an automatic job is submitted at once (Prefect still calls b online, so it lands on
b); then the times from the kill to: b offline in ``/hosts``, the job moved (its run Cancelled
"moved to host a"), the moved job finished (a's pinned jobs are stopped once it moved); and
from b's worker restart to b online in ``/hosts``. Baseline: submit → finished of the same
automatic job on healthy hosts, measured first.

Targets (issue 22 "Numbers"): offline ≤ 35 s; back online ≤ 15 s.

Usage: python bench/lost_host.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import time

import httpx

from _platform import HEADER, row, running_platform
from deployments.control_pool import start_control_worker

SLEEP = ["sh", "-c", "sleep 300"]
QUICK = ["sh", "-c", "echo placed"]


def job(command: list[str], host: str | None = None) -> dict:
    body = {"config": {"experiment": {"name": "lost-bench", "run_name": "r"}}, "command": command}
    return {**body, "target_host": host} if host else body


def until(predicate, timeout: float = 240, interval: float = 0.25) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(interval)
    raise TimeoutError(f"not within {timeout:.0f} s")


def status(api: httpx.Client, job_id: str) -> str:
    return api.get(f"/status/{job_id}").json()["status"]


def online(api: httpx.Client, host: str) -> bool:
    return bool(api.get("/hosts").json()["hosts"][host]["online"])


def round_trip(api: httpx.Client, platform, worker) -> dict[str, float]:
    pinned = [api.post("/run-simulation", json=job(SLEEP, "a")).json()["job_id"] for _ in range(2)]
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(10)
    killed = time.monotonic()
    submitted = api.post("/run-simulation", json=job(QUICK)).json()
    assert submitted["host"] == "b", submitted
    auto = submitted["job_id"]
    out: dict[str, float] = {}
    try:
        until(lambda: not online(api, "b"))
        out["offline"] = time.monotonic() - killed
        until(lambda: status(api, auto) == "canceled")
        out["moved"] = time.monotonic() - killed
        info = api.get(f"/job-info/{auto}").json()
        new_id = (info.get("prefect_state") or {}).get("message", "").rsplit("as job ", 1)[-1].strip()
        for j in pinned:
            api.post(f"/stop/{j}")
        until(lambda: status(api, new_id) in ("finished", "failed"))
        assert status(api, new_id) == "finished", new_id
        out["moved job finished"] = time.monotonic() - killed
    finally:
        for j in pinned:
            api.post(f"/stop/{j}")
        back = time.monotonic()
        platform.spawn(worker, wait=False)
        until(lambda: online(api, "b"))
        out["back online"] = time.monotonic() - back
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with running_platform({"a": True, "b": True}, api=True, concurrency=2) as platform:
        start_control_worker(platform)
        worker = next(s for s in platform.services if s.name.startswith("worker-b"))
        results: dict[str, list[float]] = {}
        with httpx.Client(base_url=platform.api_url, timeout=60) as api:
            for _ in range(args.rounds):  # baseline: the same automatic job, hosts healthy
                t0 = time.monotonic()
                jid = api.post("/run-simulation", json=job(QUICK)).json()["job_id"]
                until(lambda: status(api, jid) in ("finished", "failed"))
                results.setdefault("baseline: submit -> finished (healthy)", []).append(time.monotonic() - t0)
            for _ in range(args.rounds):
                for key, value in round_trip(api, platform, worker).items():
                    results.setdefault(f"kill -> {key}" if key != "back online" else "restart -> back online", []).append(value)
    print(HEADER)
    for name, values in results.items():
        print(row(name, values))
    print("\ntargets: kill -> offline <= 35 s; restart -> back online <= 15 s")


if __name__ == "__main__":
    main()
