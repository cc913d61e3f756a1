"""Simulation jobs as flow runs on Docker work pools: state, logs, artifacts, files,
failures, retries, cancellation and several hosts, against the real platform."""

from __future__ import annotations

import json
import time

import docker
import pytest
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from core.limits import Resources
from helpers import experiment, gateway_call, read_run, sh, wait_final, wait_for

pytestmark = pytest.mark.usefixtures("needs_docker")

WRITES_EVERYTHING = sh(
    """
echo "[INFO] Simulation started"
echo '{"percent": 50, "stage": "training"}' > "$OPEVA_PROGRESS_FILE"
sleep 1
echo "[INFO] from the simulator log file" >> "$OPEVA_LOG_FILE"
echo '{"percent": 100, "stage": "done"}' > "$OPEVA_PROGRESS_FILE"
echo '{"status": "completed", "summary": "all good", "metrics": {"cost": 12.5}}' > "$OPEVA_RESULT_FILE"
echo "[INFO] Simulation finished"
"""
)


def submit(command: list[str], host: str = "local", **kwargs) -> str:
    params = {"config": experiment(), "command": command, "target_host": host}
    run = gateway_call(lambda g: g.submit("run-simulation", host, params, **kwargs))
    return str(run.id)


def log_messages(job_id: str) -> list[str]:
    async def collect(g):
        return [entry.message async for entry in g.follow_logs(job_id, follow=False)]

    return gateway_call(collect)


def artifacts(job_id: str) -> list:
    from uuid import UUID

    async def read(g):
        return await g.client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(job_id)])))

    return gateway_call(read)


def test_job_completes_with_logs_artifacts_and_files(storage):
    job_id = submit(WRITES_EVERYTHING)
    run = wait_final(job_id)
    assert run.state.is_completed(), run.state
    assert run.work_pool_name == "local"

    messages = log_messages(job_id)
    assert "[INFO] Simulation started" in messages
    assert "[INFO] from the simulator log file" in messages  # the simulator's own log reached Prefect

    kinds = {a.type: a for a in artifacts(job_id)}
    assert kinds["progress"].data == 100.0
    assert "cost" in kinds["markdown"].data and "12.5" in kinds["markdown"].data

    job = storage.job(job_id)
    log_text = job.log_file.read_text()
    assert "[INFO] Simulation started" in log_text and "[INFO] from the simulator log file" in log_text
    assert json.loads(job.result_file.read_text())["metrics"] == {"cost": 12.5}
    info = json.loads(job.job_info_file.read_text())
    assert info["job_id"] == job_id and info["target_host"] == "local"
    assert info["experiment_name"] == "test" and info["run_name"] == "run"
    assert info["container_id"] and len(info["container_id"]) == 64  # it ran in a container


def test_failing_command_ends_failed_with_log_tail():
    job_id = submit(sh('echo "[INFO] about to fail"; echo "[ERROR] boom: bad input" >&2; exit 7'))
    run = wait_final(job_id)
    assert run.state.is_failed(), run.state
    assert "exited with code 7" in run.state.message
    assert "[ERROR] boom: bad input" in run.state.message  # stderr lines are kept too


def test_command_failing_once_is_retried_by_prefect():
    script = (
        'if [ -f "$OPEVA_JOB_DIR/attempted" ]; then echo "[INFO] second attempt ok"; '
        'else touch "$OPEVA_JOB_DIR/attempted"; echo "[ERROR] first attempt fails"; exit 3; fi'
    )
    job_id = submit(sh(script), retries=1, retry_delay_seconds=1)
    run = wait_final(job_id)
    assert run.state.is_completed(), run.state
    assert run.run_count == 2
    states = gateway_call(lambda g: g.client.read_flow_run_states(run.id))
    assert "AwaitingRetry" in [s.name for s in states]


def test_job_without_retries_is_not_retried():
    job_id = submit(sh("exit 1"))
    run = wait_final(job_id)
    assert run.state.is_failed() and run.run_count == 1


def test_cancelling_a_running_job_kills_its_container_and_keeps_files(storage):
    job_id = submit(sh('i=0; while true; do i=$((i+1)); echo "[INFO] tick $i"; sleep 0.5; done'))
    wait_for(lambda: any(m.startswith("[INFO] tick") for m in log_messages(job_id)), 90, what="the job to log")
    info = json.loads(storage.job(job_id).job_info_file.read_text())
    client = docker.from_env()
    assert client.containers.get(info["container_id"]).status == "running"

    gateway_call(lambda g: _stop(g, job_id))
    run = wait_final(job_id, timeout=60)
    assert run.state.is_cancelled(), run.state
    history = [s.type.value for s in gateway_call(lambda g: g.client.read_flow_run_states(run.id))]
    assert "CRASHED" not in history, history  # a cancelled job is never shown as crashed, even briefly

    def container_gone() -> bool:  # stopped and removed: a stopped job leaves no container
        try:
            client.containers.get(info["container_id"])
            return False
        except docker.errors.NotFound:
            return True

    wait_for(container_gone, 30, what="the container to go")
    assert client.containers.list(ignore_removed=True, all=True, filters={"label": [f"opeva.job_id={job_id}", "opeva.role=simulator"]}) == []
    assert "[INFO] tick 1" in storage.job(job_id).log_file.read_text()  # files kept


async def _stop(g, job_id):
    """Prefect's own cancellation (what POST /stop, the Prefect UI and the CLI all ask for)."""
    run = await g.read_run(job_id)
    return await g.request_cancel(run.id, "Stop requested by the test")


def test_two_hosts_each_run_their_own_jobs(storage):
    ids = {host: submit(WRITES_EVERYTHING, host=host) for host in ("local", "second")}
    for host, job_id in ids.items():
        run = wait_final(job_id)
        assert run.state.is_completed(), (host, run.state)
        assert run.work_pool_name == host
        assert json.loads(storage.job(job_id).job_info_file.read_text())["target_host"] == host


def test_resources_become_container_limits(storage):
    job_id = submit(sh(
        'cd /sys/fs/cgroup; { cat cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us memory/memory.limit_in_bytes 2>/dev/null'
        ' || cat cpu.max memory.max; } > "$OPEVA_JOB_DIR/limits"'
    ), resources=Resources(cpus=0.5, memory="256m"))
    run = wait_final(job_id)
    assert run.state.is_completed(), run.state
    assert run.job_variables["mem_limit"] == "256m"
    assert run.job_variables["container_create_kwargs"] == {"nano_cpus": 500_000_000}
    quota, period, memory = (storage.job(job_id).dir / "limits").read_text().split()  # cgroup v1 or v2, seen from inside
    assert int(quota) / int(period) == pytest.approx(0.5)
    assert int(memory) == 256 * 1024 * 1024


def test_logs_are_complete_the_moment_a_job_is_final():
    """The flow ships its log lines before the final state (Prefect #15866): a client that
    reads the logs once, as soon as it sees the job final, has the last line."""
    ids = {submit(sh(f'for i in 1 2 3 4 5; do echo "[INFO] line $i"; done; echo "[INFO] last line {n}"')): n for n in range(6)}
    pending = dict(ids)
    deadline = time.monotonic() + 240
    while pending and time.monotonic() < deadline:
        for job_id, n in list(pending.items()):
            run = read_run(job_id)
            if run.state and run.state.is_final():
                assert run.state.is_completed(), run.state
                messages = log_messages(job_id)  # at once: no grace, no retry
                assert f"[INFO] last line {n}" in messages, (job_id, messages[-5:])
                del pending[job_id]
        time.sleep(0.1)
    assert not pending, f"jobs not final in time: {pending}"


def test_stop_of_a_command_ignoring_sigterm_ends_cancelled_and_removes_its_container(storage):
    job_id = submit(sh('trap "" TERM; i=0; while true; do i=$((i+1)); echo "[INFO] tick $i"; sleep 0.5; done'))
    wait_for(lambda: any(m.startswith("[INFO] tick") for m in log_messages(job_id)), 90, what="the job to log")
    client = docker.from_env()
    sims = client.containers.list(ignore_removed=True, filters={"label": [f"opeva.job_id={job_id}", "opeva.role=simulator"]})
    assert len(sims) == 1 and sims[0].attrs["Config"]["User"] == "65534:65534"
    gateway_call(lambda g: _stop(g, job_id))
    run = wait_final(job_id, timeout=60)
    assert run.state.is_cancelled(), run.state
    wait_for(lambda: not client.containers.list(ignore_removed=True, all=True, filters={"label": [f"opeva.job_id={job_id}", "opeva.role=simulator"]}),
             20, what="the simulator's container to be removed (SIGKILL after the stop timeout)")
    time.sleep(2)
    history = [s.type.value for s in gateway_call(lambda g: g.client.read_flow_run_states(run.id))]
    assert history[-1] == "CANCELLED" and "CRASHED" not in history and "FAILED" not in history, history
