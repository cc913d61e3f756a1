"""Slurm hosts against a real Slurm (Debian's slurm-wlm 22.05 + munge), a real Prefect and the REST API.

A single-node cluster (deployments/slurm_cluster.py: this machine, 2 CPUs, partitions
normal-x86 and dev-x86) is started for this module and stopped after it (the ``cluster`` fixture,
tests/e2e/conftest.py). The platform gets
one Slurm host, ``deucalion`` (runtime none, partitions [normal-x86]), whose process-pool worker
submits with sbatch. OPEVA_REQUIRE_SLURM=1 (CI) turns a missing Slurm into a failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deployments.platform import Platform
from helpers import experiment, final_status, wait_for, watcher_pids
from helpers import slurm_platform as slurm_platform_of


HOSTS = """
hosts:
  - name: deucalion
    kind: slurm
    concurrency_limit: 4
    start_worker: true
    slurm:
      submit: local
      partitions: [normal-x86]
      account: null
      runtime: none
      defaults: {time: "00:05:00", cpus_per_task: 1, mem_gb: 0.5, gpus: 0}
      stop_grace_seconds: 5
      python: {python}
"""
DOCKER_HOST_ENTRY = """
  - name: slurm-docker
    kind: slurm
    concurrency_limit: 2
    start_worker: true
    volumes: ["{data}:{data}"]
    slurm:
      partitions: [normal-x86]
      runtime: docker
      defaults: {time: "00:05:00", cpus_per_task: 1, mem_gb: 0.5, gpus: 0}
"""


def docker_ready_for_slurm() -> bool:
    """A Docker engine and the runtime image built from this tree (OPEVA_IMAGE's tag), or False."""
    from deployments.platform import PROJECT_ROOT
    from deployments.setup import docker_available

    if not docker_available():
        if os.environ.get("OPEVA_REQUIRE_DOCKER") == "1":
            pytest.fail("OPEVA_REQUIRE_DOCKER=1 but no Docker engine answers")
        return False
    out = subprocess.run(["bash", str(PROJECT_ROOT / "deployments" / "build_image.sh")], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail(f"building the runtime image failed:\n{out.stderr[-3000:]}")
    return True


@pytest.fixture(scope="module")
def slurm_platform(cluster) -> Iterator[Platform]:
    docker = docker_ready_for_slurm()  # runtime docker runs for real where an engine answers (CI: always)
    text = HOSTS + (DOCKER_HOST_ENTRY if docker else "")
    with slurm_platform_of(text, ("deucalion", "slurm-docker") if docker else ("deucalion",)) as platform:
        platform.slurm_docker = docker  # type: ignore[attr-defined]
        yield platform


@pytest.fixture
def sapi(slurm_platform: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=slurm_platform.api_url, timeout=60) as client:
        yield client


def submit(sapi: httpx.Client, **extra) -> str:
    body = {"config": experiment("slurm", extra.pop("run", "r")), "target_host": "deucalion", **extra}
    r = sapi.post("/run-simulation", json=body)
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def squeue_count(cluster) -> int:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env={**os.environ, **cluster.env()})
    return len([l for l in out.stdout.splitlines() if l.strip()])


def test_reference_simulator_finishes_with_logs_and_slurm_fields(sapi, cluster):
    job_id = submit(sapi, deucalion_options={"partition": "normal-x86", "time": "00:04:00", "cpus_per_task": 1})
    status = final_status(sapi, job_id)
    assert status["status"] == "finished", status
    info = sapi.get(f"/job-info/{job_id}").json()
    assert info["executor"] == "slurm"
    assert info["slurm_job_id"].isdigit()
    assert info["slurm_state"] == "COMPLETED"
    assert info["slurm_partition"] == "normal-x86"
    assert info["slurm_node_list"] == cluster.node and info["slurm_nodes"] == 1
    assert info["slurm_cpus"] == 1 and info["slurm_gpus"] == 0
    status = sapi.get(f"/status/{job_id}").json()
    assert (status["slurm_job_id"], status["slurm_state"], status["slurm_partition"]) == (info["slurm_job_id"], "COMPLETED", "normal-x86")
    assert info["slurm_time_limit"] == "00:04:00"
    logs = sapi.get(f"/logs/{job_id}").text
    assert f"Slurm job {info['slurm_job_id']}" in logs  # the batch script's own line, from Slurm's output file
    assert "the simulator exited with code 0" in logs
    result = sapi.get(f"/result/{job_id}").json()
    assert result.get("status") != "pending", result


def test_exit_code_3_is_failed_with_the_code(sapi):
    job_id = submit(sapi, run="exit3", command=["sh", "-c", "echo about to fail; exit 3"])
    status = final_status(sapi, job_id)
    assert status["status"] == "failed", status
    assert "exit code 3" in (status.get("prefect_state") or {}).get("message", ""), status
    info = sapi.get(f"/job-info/{job_id}").json()
    assert info["slurm_state"] == "FAILED"
    assert "about to fail" in sapi.get(f"/logs/{job_id}").text


def test_stop_reaches_scancel_and_the_term_handler_runs(sapi, cluster):
    script = ("trap 'echo TERM handler ran; exit 0' TERM; echo started; "
              "while true; do sleep 0.2; done")
    job_id = submit(sapi, run="stop", command=["bash", "-c", script])
    wait_for(lambda: "started" in sapi.get(f"/logs/{job_id}").text, 90, what="the job to start")

    def running_card() -> dict | None:
        # The job's output is followed apart from Slurm's state, which the watcher reads every
        # POLL_SECONDS: the first line can show before the card says RUNNING (seen in CI: "dispatched").
        card = sapi.get("/hosts").json()["hosts"]["deucalion"]
        mine = next((j for j in card["info"]["active_jobs"] if j["job_id"] == job_id), None)
        return card if mine and mine["status"] == "running" else None

    card = wait_for(running_card, 15, 0.25, what="the host card to show the job running")
    assert card["online"] and card["info"]["executor"] == "slurm"
    assert card["info"]["partition_limits"]["partitions"][0]["partition"] == "normal-x86"
    mine = next(j for j in card["info"]["active_jobs"] if j["job_id"] == job_id)
    assert mine["status"] == "running" and mine["slurm_state"] == "RUNNING", mine
    assert mine["slurm_job_id"].isdigit() and mine["slurm_partition"] == "normal-x86" and mine["slurm_nodes"] == 1
    r = sapi.post(f"/stop/{job_id}")
    assert r.status_code == 200, r.text
    status = final_status(sapi, job_id, timeout=90)
    assert status["status"] == "stopped", status
    assert "TERM handler ran" in sapi.get(f"/logs/{job_id}").text
    info = sapi.get(f"/job-info/{job_id}").json()
    wait_for(lambda: subprocess.run(["scontrol", "show", "job", "-o", info["slurm_job_id"]], capture_output=True, text=True,
                                    env={**os.environ, **cluster.env()}).stdout.find("JobState=RUNNING") < 0, 30,
             what="Slurm to end the job")


@pytest.mark.parametrize("options, words", [
    ({"partition": "dev-x86"}, "partition 'dev-x86' is not allowed"),
    ({"time": "02:00:00"}, "walltime limit (MaxTime) of partition 'normal-x86'"),
    ({"cpus_per_task": 8}, "exceeds the 2 CPUs of a node"),
    ({"time": "soon"}, "is not a Slurm time"),
    ({"partition": "normal-x86", "bogus": 1}, "bogus"),
])
def test_over_a_limit_is_400_and_nothing_queued(sapi, cluster, options, words):
    before = squeue_count(cluster)
    jobs_before = len(sapi.get("/jobs").json())
    r = sapi.post("/run-simulation", json={"config": experiment(), "target_host": "deucalion", "slurm": options})
    assert r.status_code == 400, r.text
    assert words in r.json()["detail"]
    assert squeue_count(cluster) == before
    assert len(sapi.get("/jobs").json()) == jobs_before


def test_partitions_from_the_cluster(sapi):
    r = sapi.get("/hosts/deucalion/partitions")
    assert r.status_code == 200, r.text
    rows = {p["partition"]: p for p in r.json()["partitions"]}
    assert set(rows) == {"normal-x86"}  # dev-x86 exists in the cluster but the host does not allow it
    assert rows["normal-x86"]["time_limit_seconds"] == 3600
    assert rows["normal-x86"]["cpus_per_node"] == 2
    up = sapi.get("/deucalion/partitions").json()
    assert up["partitions"][0]["partition"] == "normal-x86" and up["partitions"][0]["time_limit_label"] == "1 hour"
    assert sapi.get("/hosts/nope/partitions").status_code == 404


def test_docker_runtime_runs_the_simulator_unprivileged_without_credentials(sapi, slurm_platform):
    if not slurm_platform.slurm_docker:
        pytest.skip("needs a Docker engine (set OPEVA_REQUIRE_DOCKER=1 to fail instead)")
    probe = ("echo uid=$(id -u); echo prefect_vars=$(env | grep -c PREFECT); echo job=$OPEVA_JOB_ID; "
             "grep CapEff /proc/self/status; python -m simulator")
    r = sapi.post("/run-simulation", json={"config": experiment("slurm", "docker"), "target_host": "slurm-docker",
                                           "command": ["sh", "-c", probe]})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    status = final_status(sapi, job_id, timeout=180)
    logs = sapi.get(f"/logs/{job_id}").text
    assert status["status"] == "finished", (status, logs[-2000:])
    assert "uid=65534" in logs and "prefect_vars=0" in logs and f"job={job_id}" in logs
    assert "CapEff:\t0000000000000000" in logs
    assert sapi.get(f"/result/{job_id}").json().get("status") != "pending"
    assert sapi.get(f"/job-info/{job_id}").json()["slurm_state"] == "COMPLETED"


ALGORITHMS_MIRROR = Path("/work/.mirror/Soft-CPS-Research-Group+Algorithms/repo")


def test_algorithms_preflight_with_deucalion_passes(sapi, slurm_platform, tmp_path):
    """``manage_remote_experiment.py preflight --deucalion --target-host deucalion --strict``: its five
    GETs answer JSON, the host is found and online. The maintainers' own script is run too where
    their repository's mirror is on this machine (bench/clients/algorithms_scripts.py fetches it)."""
    answers = {}
    for path in ("/health", "/hosts", "/queue", "/job-images/versions", "/deucalion/partitions"):
        r = sapi.get(path)
        assert r.status_code == 200, (path, r.text)
        answers[path] = r.json()
    assert answers["/hosts"]["hosts"]["deucalion"]["online"] is True
    assert "deucalion" in answers["/hosts"]["available_hosts"]
    assert {"source", "partitions"} <= set(answers["/deucalion/partitions"])
    if not ALGORITHMS_MIRROR.exists():
        return
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "clients"))
    from algorithms_scripts import run, scripts_from_mirror, scripts_python

    repo = tmp_path / "algorithms"
    repo.mkdir()
    scripts_from_mirror(ALGORITHMS_MIRROR, "0bc57d9", repo)
    snapshot = tmp_path / "preflight.json"
    code, out, _ = run(scripts_python(), repo, slurm_platform.api_url,
                       ["scripts/manage_remote_experiment.py", "preflight", "--target-host", "deucalion", "--deucalion",
                        "--strict", "--output", str(snapshot)], timeout=300)
    import json

    snap = json.loads(snapshot.read_text())
    assert code == 0 and not snap["errors"], out[-2000:]
    assert snap["target_host_found"] is True and snap["target_host_online"] is True
    assert snap["responses"]["deucalion_partitions"]["partitions"][0]["partition"] == "normal-x86"


# 40 numbered lines; after line 5 the job waits (up to 5 min) for the test's go-ahead, a file "go" in
# its folder, so it is still running whatever the machine's load when the re-attach pass looks for it.
LINES = ('for i in $(seq 1 40); do echo "line $i"; sleep 0.2; '
         'if [ "$i" = 5 ]; then n=0; while [ ! -e "$OPEVA_JOB_DIR/go" ] && [ "$n" -lt 1500 ]; do sleep 0.2; n=$((n+1)); done; fi; done')


def _go(slurm_platform, job_id: str) -> None:
    """Let the job print its remaining lines (it runs in its own folder)."""
    (Path(slurm_platform.data_dir) / "jobs" / job_id / "go").touch(mode=0o644)


def _each_line_once(sapi, job_id: str, slurm_id: str) -> None:
    """The job finished under the Slurm job first submitted, each of its 40 lines once in /logs."""
    status = final_status(sapi, job_id, 120)
    assert status["status"] == "finished", status
    info = sapi.get(f"/job-info/{job_id}").json()
    assert info["slurm_job_id"] == slurm_id and info["slurm_state"] == "COMPLETED"  # followed, never submitted again
    logs = sapi.get(f"/logs/{job_id}").text
    assert f"Re-attached to Slurm job {slurm_id}" in logs
    counts = Counter(re.findall(r"^line (\d+)$", logs, flags=re.M))
    assert [counts.get(str(i), 0) for i in range(1, 41)] == [1] * 40, counts


def test_a_watcher_killed_with_its_worker_is_reattached_and_no_line_is_lost_or_doubled(sapi, slurm_platform, cluster):
    """The submit node's platform dies mid-job (worker and watcher SIGKILLed, as a power cut would):
    the Slurm job runs on; `make up`'s re-attach pass reschedules the run and the restarted worker's
    new attempt follows the same Slurm job from its checkpoint to the end."""
    import signal

    from deployments.reconcile_slurm import SlurmReattacher
    from helpers import read_run

    job_id = submit(sapi, run="reattach", command=["bash", "-c", LINES])
    wait_for(lambda: "line 5" in sapi.get(f"/logs/{job_id}").text, 90, what="the job's output")
    first = sapi.get(f"/job-info/{job_id}").json()["slurm_job_id"]
    worker = next(s for s in slurm_platform.services if s.name.startswith("worker-deucalion") and s.proc.poll() is None)
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(timeout=10)
    for pid in watcher_pids(job_id):
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not watcher_pids(job_id), 10, 0.2, what="the watcher to be gone")
    assert read_run(job_id).state.is_running()  # nobody is left to say otherwise
    _go(slurm_platform, job_id)
    time.sleep(3)  # the job writes on, unwatched (it may even end: the next attempt then reads its end)

    reattacher = SlurmReattacher(slurm_platform.prefect_api_url, slurm_platform.prefect_auth_string, ["deucalion"])
    assert reattacher.at_start() == [job_id]  # what `make up` does before it starts the workers
    slurm_platform.start_worker("deucalion", "process")
    _each_line_once(sapi, job_id, first)
    assert read_run(job_id).run_count == 2


def _crash_the_watcher_alone(sapi, run: str) -> tuple[str, str]:
    """A LINES job past line 5 whose watcher process is SIGKILLed (its worker lives): (job id, Slurm id)
    once the worker recorded the run Crashed and Prefect's crash-hook process has ended."""
    import signal

    from helpers import read_run

    job_id = submit(sapi, run=run, command=["bash", "-c", LINES])
    wait_for(lambda: "line 5" in sapi.get(f"/logs/{job_id}").text, 90, what="the job's output")
    first = sapi.get(f"/job-info/{job_id}").json()["slurm_job_id"]
    for pid in watcher_pids(job_id):
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: read_run(job_id).state.is_crashed(), 30, 0.2, what="the worker to record the run Crashed")
    # Prefect's runner then runs the flow's on_crashed hooks in a process of the run's own; the pass
    # (30 s grace in `make up`) leaves a run alone while one lives
    wait_for(lambda: not watcher_pids(job_id), 30, 0.2, what="the runner's crash hooks to end")
    # After the runner's Crashed and the hooks, the worker proposes Crashed once more, and that late
    # proposal overwrote a re-attach made in between (CI, 2026-12-06: the run read `failed`). Its hint
    # for an exit by SIGKILL is the last thing it logs for the run, right after that proposal.
    wait_for(lambda: _worker_done_with(job_id), 60, 0.5, what="the worker's own crash report")
    return job_id, first


def _worker_done_with(job_id: str) -> bool:
    import uuid

    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from helpers import gateway_call

    async def logs(gateway):
        return await gateway.client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(job_id)])))

    return any(line.name == "prefect.flow_runs.worker" and line.message.startswith("Check whether the flow run exceeded")
               for line in gateway_call(logs))


def test_a_watcher_killed_alone_is_crashed_by_its_worker_then_reattached(sapi, slurm_platform, cluster):
    """Only the watcher dies (OOM-killed, say): its worker records the run Crashed at once, while
    the Slurm job runs on. The pass `make up` runs every 15 s re-attaches it all the same."""
    from core.prefect_rest import PrefectRest
    from deployments.reconcile_slurm import reattach_orphans

    job_id, first = _crash_the_watcher_alone(sapi, "reattach-crashed")
    prefect = PrefectRest(slurm_platform.prefect_api_url, slurm_platform.prefect_auth_string)
    try:
        assert reattach_orphans(prefect, ["deucalion"], grace=0) == [job_id]  # squeue still lists it: the job waits for "go"
    finally:
        prefect.close()
    _go(slurm_platform, job_id)
    _each_line_once(sapi, job_id, first)


def test_a_run_crashed_while_its_job_ran_gets_the_jobs_real_end_after_it_ended(sapi, slurm_platform, cluster):
    """The watcher dies while the job runs, and the job ends before any re-attach pass looks: the
    run must not stay Crashed with a finished job behind it. While the controller still holds the
    job, the pass reschedules the run and the next attempt reads the job's end from its checkpoint."""
    from core import slurm
    from core.prefect_rest import PrefectRest
    from deployments.reconcile_slurm import reattach_orphans
    from helpers import read_run

    job_id, first = _crash_the_watcher_alone(sapi, "reattach-ended")
    _go(slurm_platform, job_id)
    wait_for(lambda: job_id in slurm.ended_jobs(), 60, 0.5, what="Slurm to end the job, unwatched")
    assert read_run(job_id).state.is_crashed()
    prefect = PrefectRest(slurm_platform.prefect_api_url, slurm_platform.prefect_auth_string)
    try:
        assert reattach_orphans(prefect, ["deucalion"], grace=0, data_root=Path(slurm_platform.data_dir)) == [job_id]
    finally:
        prefect.close()
    _each_line_once(sapi, job_id, first)


def test_a_lost_node_ends_the_job_failed_node_fail_never_stuck(sapi, cluster):
    """The node drill (last in this module: the one node is out for a while): slurmd stops
    answering while a job runs; past SlurmdTimeout (30 s here) Slurm marks the node down and the
    job NODE_FAIL (sbatch --no-requeue: Slurm does not run it again); the job ends failed with
    error_code node_fail, not running forever. The node then comes back into service. (A hung slurmd;
    test_slurm_nodes.py cuts the link of a second node instead, while the first one works on.)"""
    job_id = submit(sapi, run="node-lost", command=["bash", "-c", "echo started; while true; do sleep 1; done"])
    wait_for(lambda: "started" in sapi.get(f"/logs/{job_id}").text, 90, what="the job to start")
    cluster.lose_node()
    lost = time.monotonic()
    try:
        status = final_status(sapi, job_id, 180)
        print(f"\nnode lost -> job {status['status']} in {time.monotonic() - lost:.1f} s (SlurmdTimeout 30 s)")
        assert status["status"] == "failed", status
        info = sapi.get(f"/job-info/{job_id}").json()
        assert info["slurm_state"] == "NODE_FAIL" and info["error_code"] == "node_fail", info
    finally:
        cluster.restore_node()
