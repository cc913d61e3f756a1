"""The lab of simulated hosts (``make lab``, deployments/lab.py, issue 22 item 5): two hosts, each in
its own network namespace with its own Docker engine and its worker (``make host``'s code) inside,
on a platform of private ports. A job pinned to lab-2 runs in lab-2's engine; ``/hosts`` shows both
hosts; a cut link makes a busy lab-2 offline and a healed one brings it back; the teardown leaves no
namespace, link, mount, cgroup or process. Needs root (CI runs as root) and the default engine's
runtime image, which is copied into each lab engine."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
import yaml

from core import containers
from core.settings import PlatformSettings
from deployments.lab import Lab
from deployments.lab_net import LabSpec, free_subnet, leftovers
from deployments.platform import Platform
from deployments.supervisor import RestartPolicy, check_children
from helpers import experiment, lab_started, new_platform, sh, wait_for


@pytest.fixture(scope="module")
def lab_platform(docker_ready: bool) -> Iterator[tuple[Platform, Lab]]:
    assert docker_ready and os.geteuid() == 0, "the lab needs root and a Docker engine"
    home = Path(tempfile.mkdtemp(prefix="opeva-lab-"))
    platform = new_platform(home)
    spec = LabSpec(tag=f"ot{os.getpid() % 100000}", hosts=2, subnet=free_subnet(100 + os.getpid() % 100), state_dir=home / "lab")
    lab = Lab.create(spec, [PlatformSettings().runtime_image])
    print(f"\nLAB image copy per host: {', '.join(f'{n} {s:.1f} s' for n, s in lab.copy_seconds.items())}")
    hosts_file = home / "hosts.yaml"
    hosts_file.write_text(yaml.safe_dump({"hosts": lab.host_entries(platform.data_dir)}))
    try:
        with lab_started(platform, lab, hosts_file):
            yield platform, lab
    finally:
        platform.stop()
        lab.close()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def lab_api(lab_platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=lab_platform[0].api_url, timeout=30) as client:
        yield client


def _containers(url: str | None, job_id: str) -> list:
    client = docker.DockerClient(base_url=url) if url else docker.from_env()
    try:
        return client.containers.list(all=True, filters={"label": f"{containers.FLOW_RUN_ID}={job_id}"}, ignore_removed=True)
    finally:
        client.close()


def _online(api: httpx.Client, host: str) -> bool:
    return bool(api.get("/hosts").json()["hosts"][host]["online"])


def test_a_job_pinned_to_lab_2_runs_in_lab_2s_engine(lab_platform, lab_api):
    _platform, lab = lab_platform
    r = lab_api.post("/run-simulation", json={"config": experiment("lab", "r"), "command": sh("echo ran-in-the-lab; sleep 4"),
                                              "target_host": "lab-2"})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    seen = wait_for(lambda: _containers(lab.spec.docker_url("lab-2"), job_id), 150, what="the job's container on lab-2's engine")
    assert seen[0].labels.get(containers.HOST) in (None, "lab-2")
    assert not _containers(None, job_id) and not _containers(lab.spec.docker_url("lab-1"), job_id)
    status = wait_for(lambda: (s := lab_api.get(f"/status/{job_id}").json()["status"]) in ("finished", "failed") and s, 150,
                      what="the lab job to end")
    assert status == "finished", lab_api.get(f"/logs/{job_id}").text[-2000:]
    assert "ran-in-the-lab" in lab_api.get(f"/logs/{job_id}").text


def test_hosts_lists_both_lab_hosts_online(lab_api):
    hosts = lab_api.get("/hosts").json()
    assert {"lab-1", "lab-2"} <= set(hosts["available_hosts"])
    for name in ("lab-1", "lab-2"):
        assert hosts["hosts"][name]["online"] and hosts["hosts"][name]["pool"] == name, hosts["hosts"][name]


def test_a_cut_busy_host_goes_offline_while_its_job_runs_and_comes_back_when_healed(lab_platform, lab_api):
    """A busy host whose link is cut shows offline once Prefect marks its worker OFFLINE, while its
    job still counts as running (the zombie automation fails it only after 90 s without heartbeats):
    upstream's "a host with a started job counts as online" no longer hides a lost host."""
    platform, lab = lab_platform
    policy = RestartPolicy(first=0.5)
    r = lab_api.post("/run-simulation", json={"config": experiment("lab", "busy"), "target_host": "lab-2",
                                              "command": sh("while true; do echo busy; sleep 1; done")})
    job_id = r.json()["job_id"]
    # ``running``: the run was made in ``setup`` (core/states.py fresh_labels) and its flow wrote ``running``
    # once the simulator started, so no label write is left to land during the cut; its output in /logs too
    wait_for(lambda: lab_api.get(f"/status/{job_id}").json()["status"] == "running" and "busy" in lab_api.get(f"/logs/{job_id}").text,
             150, what="the job running on lab-2, its output in /logs")
    assert _online(lab_api, "lab-2")

    def online_now(want: bool) -> bool:
        check_children(platform, policy)  # as make lab's supervisor would: a worker that gives up is started again
        return _online(lab_api, "lab-2") is want

    lab.cut("lab-2")
    cut_at = time.monotonic()
    try:
        wait_for(lambda: online_now(False), 120, 1, what="lab-2 offline in /hosts after its link was cut")
        offline_after = time.monotonic() - cut_at
        assert lab_api.get(f"/status/{job_id}").json()["status"] == "running"  # offline because its worker is, not its job
        assert _online(lab_api, "lab-1")
    finally:
        lab.heal("lab-2")
    healed_at = time.monotonic()
    wait_for(lambda: online_now(True), 120, 1, what="lab-2 back online in /hosts after its link was healed")
    print(f"\nLAB busy cut: offline after {offline_after:.1f} s; healed: online after {time.monotonic() - healed_at:.1f} s")
    assert lab_api.post(f"/stop/{job_id}").status_code == 200
    wait_for(lambda: lab_api.get(f"/status/{job_id}").json()["status"] in ("stopped", "failed"), 120, what="the busy job to stop")


def test_a_crashed_runs_container_is_removed_from_its_lab_engine(lab_platform, lab_api):
    """make up's reconciler runs once per engine of this machine, the lab hosts' included: a run made final
    while its container still runs (as the zombie automation does to a cut host's job) loses its
    containers on that host's engine, not on the default one."""
    from core.prefect_rest import PrefectRest
    from deployments.reconcile import HOST_LOST
    from deployments.up import _reconcile_at_start

    platform, lab = lab_platform
    r = lab_api.post("/run-simulation", json={"config": experiment("lab", "orphan"), "target_host": "lab-1",
                                              "command": sh("while true; do echo tick; sleep 1; done")})
    job_id = r.json()["job_id"]
    url = lab.spec.docker_url("lab-1")
    wait_for(lambda: lab_api.get(f"/status/{job_id}").json()["status"] == "running" and _containers(url, job_id), 150,
             what="the job running on lab-1")
    reconcilers = _reconcile_at_start(platform)  # as make lab starts: the live job is re-attached, on its own engine only
    assert {p for r in reconcilers for p in r.pools} == {"lab-1", "lab-2"} and len(reconcilers) == 3  # default engine, lab-1, lab-2
    assert lab_api.get(f"/status/{job_id}").json()["status"] == "running"
    prefect = PrefectRest(platform.prefect_api_url, platform.prefect_auth_string)
    try:
        prefect.set_state(job_id, "CRASHED", "Crashed", f"{HOST_LOST}made final by the test", force=True)
    finally:
        prefect.close()
    crashed_at = time.monotonic()

    def gone() -> bool:
        for each in reconcilers:
            each.next_pass = 0.0
            each.tick()
        return not _containers(url, job_id)

    try:
        wait_for(gone, 180, 2, what="the crashed run's containers removed from lab-1's engine")
    finally:
        for each in reconcilers:
            each.engine.close()
            each.prefect.close()
    print(f"\nLAB orphan removed {time.monotonic() - crashed_at:.1f} s after its run was made final")
    body = lab_api.get(f"/status/{job_id}").json()
    assert body["status"] == "failed" and body.get("error_code") == "host_lost", body


def test_the_teardown_leaves_nothing_behind(lab_platform):
    platform, lab = lab_platform
    spec = lab.spec
    running = leftovers(spec)
    assert f"namespace {spec.netns('lab-2')}" in running and f"link {spec.bridge}" in running, running
    workers = [s.proc for s in platform.services if s.name.startswith("worker-lab")]
    platform.stop()
    assert lab.close() == [] and leftovers(spec) == []
    assert all(p.poll() is not None for p in workers)
    netns = os.popen("ip netns list").read()
    links = os.popen("ip -o link").read()
    assert spec.tag not in netns and spec.bridge not in links and spec.veth_root("lab-2") not in links
    assert not [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(spec.state_dir) in line]
