"""Short jobs at a steady rate over a lab's hosts, sampled every second (issue 22 "Numbers"): shared by
bench/lab.py (1,000 jobs, prints a table) and tests/e2e/test_lab_load.py (CI's 200 jobs, asserts).

What is measured is what a user of a busy platform cares about: every job reaches a final state (none
lost), none runs twice (Prefect's run_count > 1, or two simulator containers seen for one job), and no
pool ever holds more Pending + Running runs than its concurrency limit (Prefect's own count, the one
its limit governs), with the simulators actually running on each lab engine beside it.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import docker
import httpx

from core import containers

FINAL = ("finished", "failed", "stopped", "canceled")
STALL_SECONDS = 240.0  # short jobs on 4 hosts: a few minutes with none going final means they are stuck
WAIT_PASS_SECONDS = 2.0  # between two passes over the jobs not yet final
PROBE_AHEAD = 12  # per pass, jobs read past the oldest not final ones (more than 4 hosts x limit 2 can be running)


def job(host: str, script: str, tag: str) -> dict:
    return {"config": {"experiment": {"name": "lab-bench", "run_name": tag}}, "command": ["sh", "-c", script], "target_host": host}


def status(api: httpx.Client, job_id: str) -> str:
    return status_of(api, job_id).get("status", "?")


def status_of(api: httpx.Client, job_id: str) -> dict:
    """``GET /status/<job>``'s answer, or {} when it could not be read (asked again at the next pass)."""
    try:
        answer = api.get(f"/status/{job_id}").json()
    except (httpx.HTTPError, ValueError):
        return {}
    return answer if isinstance(answer, dict) else {}


def server_time(stamp: str | None) -> float:
    """Seconds since the epoch of a state's timestamp as the API gives it (ISO 8601), 0 if absent."""
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp() if stamp else 0.0
    except ValueError:
        return 0.0


class Sampler(threading.Thread):
    """Every second, per lab host: Prefect's own count of the pool's Pending + Running runs (what its
    concurrency limit governs), the simulator containers running, and runs with any container running
    (a supervisor still exiting after its run went final counts there: the count of bench runs before
    this one, which read 3-4 against a limit of 2); and every simulator container seen per job."""

    def __init__(self, lab: Any, names: list[str], prefect: Any, limit: int = 2) -> None:
        super().__init__(daemon=True)
        self.limit = limit
        self.over: list[str] = []  # the first samples in which a pool held more than ``limit``
        self.engines = {n: docker.DockerClient(base_url=lab.spec.docker_url(n), timeout=20) for n in names}
        self.prefect = prefect
        self.max_prefect = dict.fromkeys(names, 0)
        self.max_simulators = dict.fromkeys(names, 0)
        self.max_containers = dict.fromkeys(names, 0)
        self.samples = 0
        self.seen: dict[str, set[str]] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(1.0):
            self.samples += 1
            self._prefect()
            for name, engine in self.engines.items():
                try:
                    # sparse: the list answer alone (labels, state), not one inspect per container: the
                    # sampler runs on the 2 cores it measures (4 engines, a few containers each, every second)
                    found = engine.containers.list(all=True, filters={"label": containers.ROLE}, sparse=True)
                except Exception:  # noqa: BLE001  (a cut or busy engine: the next sample)
                    continue
                runs, simulators = set(), 0
                for c in found:
                    labels = c.attrs.get("Labels") or {}
                    simulator = labels.get(containers.ROLE) == containers.SIMULATOR_ROLE
                    if simulator:
                        self.seen.setdefault(labels.get(containers.FLOW_RUN_ID, "?"), set()).add(c.id)
                    if c.attrs.get("State") == "running":
                        runs.add(labels.get(containers.FLOW_RUN_ID, c.id))
                        simulators += simulator
                self.max_containers[name] = max(self.max_containers[name], len(runs))
                self.max_simulators[name] = max(self.max_simulators[name], simulators)

    def _prefect(self) -> None:
        """Every lab pool's Pending + Running runs from one read (one request a second, not one per pool:
        the sampler's own load on the server stays small beside what it measures)."""
        body = {"flow_runs": {"state": {"type": {"any_": ["PENDING", "RUNNING"]}}}, "work_pools": {"name": {"any_": list(self.max_prefect)}},
                "limit": 200}
        try:
            r = self.prefect.http.post("/flow_runs/filter", json=body)
            r.raise_for_status()
        except httpx.HTTPError:
            return
        runs = r.json()
        counts = Counter(run.get("work_pool_name") for run in runs)
        for pool in self.max_prefect:
            self.max_prefect[pool] = max(self.max_prefect[pool], counts.get(pool, 0))
            if counts.get(pool, 0) > self.limit and len(self.over) < 20:  # what was over: for the failure message
                self.over.append(f"{pool}: " + ", ".join(f"{run['id'][:8]} {run['state_name']} since {run['state']['timestamp'][11:23]}"
                                                         for run in runs if run.get("work_pool_name") == pool))

    def stop(self) -> None:
        self.halt.set()
        self.join(10)
        for engine in self.engines.values():
            engine.close()
        self.prefect.close()


@dataclass
class LoadResult:
    """One load run: what was submitted and how each job ended, and the sampler's peaks per host."""

    ids: list[str]
    refused: list[str]  # "<status code> <body>" of each submit that was not accepted
    states: dict[str, str]  # job id -> its status when the wait ended
    twice: list[str]
    max_prefect: dict[str, int]
    max_simulators: dict[str, int]
    max_containers: dict[str, int]
    samples: int
    submit_seconds: float
    elapsed: float
    lost: list[str] = field(default_factory=list)  # not final when the wait ended
    post_seconds: list[float] = field(default_factory=list)  # each POST /run-simulation's answer time, in order
    over: list[str] = field(default_factory=list)  # samples with a pool above the limit: its runs, states and since when

    @property
    def final(self) -> list[str]:
        return [j for j in self.ids if j not in self.lost]

    @property
    def jobs_per_second(self) -> float:
        return len(self.final) / self.elapsed if self.elapsed else 0.0


def run_load(api: httpx.Client, platform: Any, lab: Any, jobs: int, rate: float, script: str = "echo x", limit: int = 2) -> LoadResult:
    """``jobs`` jobs of ``script``, ``target_host`` round robin over the lab hosts at ``rate`` a second,
    until every job is final (or none has gone final for ``STALL_SECONDS``), sampled throughout."""
    from core.prefect_rest import PrefectRest

    names = lab.spec.names
    sampler = Sampler(lab, names, PrefectRest(platform.prefect_api_url, platform.prefect_auth_string), limit)
    sampler.start()
    ids: list[str] = []
    refused: list[str] = []
    answered: list[float] = []
    t0, started = time.monotonic(), time.time()
    for i in range(jobs):
        time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        sent = time.monotonic()
        r = api.post("/run-simulation", json=job(names[i % len(names)], script, f"load-{i}"))
        answered.append(time.monotonic() - sent)
        if r.status_code == 200:
            ids.append(r.json()["job_id"])
        else:
            refused.append(f"{r.status_code} {r.text[:200]}")
    submitted = time.monotonic() - t0
    pending, last_final = _wait_final(api, ids)
    # first submit -> the server's time of the last final state: not biased by how often the wait reads
    elapsed = last_final - started if last_final else time.monotonic() - t0
    time.sleep(2.0)  # a last sample after the last job went final
    sampler.stop()
    states = {j: status(api, j) for j in ids}
    twice = [j for j in ids if api.get(f"/job-info/{j}").json().get("run_count", 0) > 1 or len(sampler.seen.get(j, ())) > 1]
    return LoadResult(ids=ids, refused=refused, states=states, twice=twice, max_prefect=sampler.max_prefect,
                      max_simulators=sampler.max_simulators, max_containers=sampler.max_containers, samples=sampler.samples,
                      submit_seconds=submitted, elapsed=elapsed, lost=sorted(pending), post_seconds=answered, over=sampler.over)


def _wait_final(api: httpx.Client, ids: list[str]) -> tuple[list[str], float]:
    """Wait until every job is final, or none has gone final for STALL_SECONDS (a slower machine is not
    a lost job); returns the jobs still not final and the server time of the last final state seen.

    Each pass reads the jobs in submit order and stops PROBE_AHEAD jobs past the oldest ones not yet
    final (a pool runs its jobs in order, a few at a time): a dozen reads every 2 s, where reading every
    pending job every second kept the API and Prefect busy on the 2 cores the wait is measuring."""
    pending, last_final = list(ids), 0.0
    progress_at = time.monotonic()
    while pending and time.monotonic() - progress_at < STALL_SECONDS:
        still: list[str] = []
        for job_id in pending:
            if len(still) >= PROBE_AHEAD:
                still.append(job_id)
                continue
            answer = status_of(api, job_id)
            if answer.get("status") in FINAL:
                last_final = max(last_final, server_time(answer.get("status_updated_at")))
            else:
                still.append(job_id)
        if len(still) < len(pending):
            progress_at = time.monotonic()
        pending = still
        if pending:
            time.sleep(WAIT_PASS_SECONDS)
    return pending, last_final
