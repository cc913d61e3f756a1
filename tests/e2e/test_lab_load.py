"""The lab at CI's size (issue 22 "Numbers": 1,000 jobs in bench/lab.py, 200 here): four simulated
hosts (each its own network namespace, Docker engine and worker), a concurrency limit of 2 per host,
200 short jobs submitted at one a second, round robin, on the scaled control plane (PostgreSQL,
Redis, 2 Prefect API servers behind haproxy: the layout meant for load). Every job must end
``finished``, none may run twice, and no pool may hold more Pending + Running runs than its limit
in any one-second sample (Prefect's own count), nor any lab engine run more than 2 simulators at
once. On PostgreSQL Prefect's pool limit alone let 3-4 runs into pools of 2 (its poll skips a run
whose Pending is being written and hands out the next); the workers' ``--limit`` holds it
(deployments/platform.py ``worker_cli``). The rate is not asserted here: bench/lab.py reports it.
Needs root and the default engine's runtime image."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import httpx
import yaml

from core.settings import PlatformSettings
from deployments.lab import Lab
from deployments.lab_net import LabSpec, free_subnet
from helpers import lab_started, new_platform
from lab_load import run_load

HOSTS, LIMIT, JOBS, RATE, PREFECT_SERVERS = 4, 2, 200, 1.0, 2


def test_200_jobs_over_four_lab_hosts_all_finish_once_within_each_hosts_limit(docker_ready: bool) -> None:
    assert docker_ready and os.geteuid() == 0, "the lab needs root and a Docker engine"
    home = Path(tempfile.mkdtemp(prefix="opeva-lab-load-"))
    platform = new_platform(home)
    spec = LabSpec(tag=f"ol{os.getpid() % 100000}", hosts=HOSTS, subnet=free_subnet(200 + os.getpid() % 40), state_dir=home / "lab")
    lab = Lab.create(spec, [PlatformSettings().runtime_image])
    hosts_file = home / "hosts.yaml"
    hosts_file.write_text(yaml.safe_dump({"hosts": [{**e, "concurrency_limit": LIMIT} for e in lab.host_entries(platform.data_dir)]}))
    try:
        with lab_started(platform, lab, hosts_file, prefect_servers=PREFECT_SERVERS), httpx.Client(base_url=platform.api_url, timeout=60) as api:
            result = run_load(api, platform, lab, JOBS, RATE, limit=LIMIT)
    finally:
        platform.stop()
        left = lab.close()
        shutil.rmtree(home, ignore_errors=True)
    print(f"\nLAB LOAD {JOBS} jobs: {result.jobs_per_second:.2f} job/s, {result.samples} samples, Prefect peaks {result.max_prefect}, "
          f"simulator peaks {result.max_simulators}")
    assert not result.refused, result.refused[:5]
    assert len(result.ids) == JOBS
    assert not result.lost, f"{len(result.lost)} jobs never reached a final state: {[(j, result.states[j]) for j in result.lost[:5]]}"
    not_finished = {j: s for j, s in result.states.items() if s != "finished"}
    assert not not_finished, f"{len(not_finished)} jobs did not finish: {list(not_finished.items())[:5]}"
    assert not result.twice, f"run twice: {result.twice[:5]}"
    assert result.samples >= JOBS / RATE, "the sampler must have watched the whole load"
    assert all(n <= LIMIT for n in result.max_prefect.values()), f"a pool went above its limit of {LIMIT}: {result.max_prefect}; {result.over[:5]}"
    assert all(n <= LIMIT for n in result.max_simulators.values()), f"an engine ran more than {LIMIT} simulators: {result.max_simulators}"
    assert all(n >= 1 for n in result.max_simulators.values()), f"every lab host must have run jobs: {result.max_simulators}"
    assert not left, f"the teardown left {left}"
