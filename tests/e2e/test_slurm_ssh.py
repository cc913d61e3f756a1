"""A Slurm host reached over ssh (``slurm.submit: ssh://root@opeva-login-<pid>``), without a shared file system.

Real pieces only: the single-node cluster of deployments/slurm_cluster.py, and a real sshd (Debian's
openssh-server) in a network namespace with a forwarder to slurmctld (deployments/ssh_login.py).
The platform's worker and API reach it through ``ProxyCommand nsenter ... nc``; the job folders
on the "login node" are under ``remote_root``, a folder apart from the platform's data root, and
this process does not export SLURM_CONF: a Slurm command run locally instead of over ssh fails.
OPEVA_REQUIRE_SLURM=1 (CI) turns a missing Slurm, sshd or rsync into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from deployments.platform import Platform
from helpers import experiment, final_status, new_platform, pointed_at, wait_for, watcher_pids

REQUIRE_SLURM = os.environ.get("OPEVA_REQUIRE_SLURM") == "1"
HOST = "hpc-ssh"


def _unavailable(why: str) -> None:
    if REQUIRE_SLURM:
        pytest.fail(f"OPEVA_REQUIRE_SLURM=1 but {why}")
    pytest.skip(f"needs Slurm and sshd: {why} (set OPEVA_REQUIRE_SLURM=1 to fail instead)")


@pytest.fixture(scope="module")
def login() -> Iterator[object]:
    """The test cluster, and its login node over ssh; both gone after the module, even on failure."""
    from deployments import slurm_cluster, ssh_login

    why = slurm_cluster.missing() or ssh_login.missing()
    if why:
        _unavailable(why)
    cluster = slurm_cluster.SlurmCluster.start()
    try:
        node = ssh_login.LoginNode.start(cluster.ctld_port, str(cluster.conf))
        try:
            node.cluster = cluster  # type: ignore[attr-defined]
            yield node
        finally:
            node.stop()
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def platform(login) -> Iterator[Platform]:
    from deployments.slurm_cluster import simulator_venv

    home = Path(tempfile.mkdtemp(prefix="opeva-slurm-ssh-tests-"))
    platform = new_platform(home)
    hosts_file = home / "hosts.yaml"
    slurm = {"submit": login.submit, "partitions": ["normal-x86"], "runtime": "none", "stop_grace_seconds": 5,
             "defaults": {"time": "00:05:00", "cpus_per_task": 1, "mem_gb": 0.5, "gpus": 0}, "python": simulator_venv(),
             "ssh": login.ssh_block()}
    hosts_file.write_text(yaml.safe_dump({"hosts": [{"name": HOST, "kind": "slurm", "concurrency_limit": 2, "start_worker": True,
                                                      "slurm": slurm}]}))
    saved = os.environ.pop("SLURM_CONF", None)
    with pointed_at(platform, hosts_file):
        os.environ["OPEVA_MLFLOW"] = "0"
        try:
            platform.start_prefect_server()
            platform.start_mongo()
            assert platform.setup_pools(hosts_file, docker=False)[HOST] == "process"
            platform.start_worker(HOST, "process")
            platform.start_api(OPEVA_HOSTS_FILE=str(hosts_file))
            yield platform
        finally:
            platform.stop()
            shutil.rmtree(home, ignore_errors=True)
            if saved is not None:
                os.environ["SLURM_CONF"] = saved


@pytest.fixture
def api(platform: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.api_url, timeout=60) as client:
        yield client


def submit(api: httpx.Client, run: str, **extra) -> str:
    r = api.post("/run-simulation", json={"config": experiment("slurm-ssh", run), "target_host": HOST, **extra})
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def test_partitions_answer_from_the_cluster_over_ssh(api):
    r = api.get(f"/hosts/{HOST}/partitions")
    assert r.status_code == 200, r.text
    rows = {p["partition"]: p for p in r.json()["partitions"]}
    assert set(rows) == {"normal-x86"}
    assert rows["normal-x86"]["time_limit_seconds"] == 3600 and rows["normal-x86"]["cpus_per_node"] == 2
    up = api.get("/deucalion/partitions").json()  # the only Slurm host answers upstream's call
    assert up["partitions"][0]["time_limit_label"] == "1 hour"
    r = api.post("/run-simulation", json={"config": experiment(), "target_host": HOST, "slurm": {"time": "02:00:00"}})
    assert r.status_code == 400 and "walltime limit (MaxTime)" in r.json()["detail"], r.text


def test_reference_simulator_over_ssh_finishes_with_outputs_back_and_logs(api, platform, login):
    job_id = submit(api, "ref", deucalion_options={"partition": "normal-x86", "time": "00:04:00"})
    status = final_status(api, job_id)
    logs = api.get(f"/logs/{job_id}").text
    assert status["status"] == "finished", (status, logs[-2000:])
    info = api.get(f"/job-info/{job_id}").json()
    assert info["executor"] == "slurm" and info["slurm_state"] == "COMPLETED" and info["slurm_node_list"] == login.cluster.node
    assert f"Slurm job {info['slurm_job_id']}" in logs and "the simulator exited with code 0" in logs
    assert f"Uploaded the job's inputs to {login.destination}" in logs
    remote = login.remote_root / "jobs" / job_id
    local = platform.data_dir / "jobs" / job_id
    assert (remote / "results" / "result.json").is_file()  # it ran on the "login node"'s file system...
    assert (local / "results" / "result.json").read_bytes() == (remote / "results" / "result.json").read_bytes()  # ...and came back
    assert (local / "logs" / "slurm.out").read_bytes() == (remote / "logs" / "slurm.out").read_bytes()
    result = api.get(f"/result/{job_id}").json()
    assert result.get("status") != "pending", result
    assert api.get(f"/progress/{job_id}").status_code == 200


UNTRUSTED = ("echo out > $OPEVA_JOB_DIR/results/out.txt; ln -s /etc/passwd $OPEVA_JOB_DIR/results/link; "
             "mkfifo $OPEVA_JOB_DIR/results/fifo; echo '{\"forged\": true}' > $OPEVA_JOB_DIR/job_info.json; ")


def test_stop_over_ssh_is_stopped_with_outputs_back_and_nothing_untrusted(api, platform, login):
    script = (UNTRUSTED + "trap 'echo TERM handler ran; echo bye > $OPEVA_JOB_DIR/results/on_term.txt; exit 0' TERM; "
              "echo started; while true; do sleep 0.2; done")
    job_id = submit(api, "stop", command=["bash", "-c", script])
    wait_for(lambda: "started" in api.get(f"/logs/{job_id}").text, 90, what="the job's first line over ssh (periodic sync)")
    r = api.post(f"/stop/{job_id}")
    assert r.status_code == 200, r.text
    status = final_status(api, job_id, timeout=90)
    assert status["status"] == "stopped", status
    assert "TERM handler ran" in api.get(f"/logs/{job_id}").text
    local = platform.data_dir / "jobs" / job_id / "results"
    assert (local / "on_term.txt").read_text() == "bye\n"  # written by the TERM handler, copied back on stop
    assert (local / "out.txt").read_text() == "out\n"
    assert not (local / "link").exists() and not (local / "link").is_symlink()  # no link created here
    assert not (local / "fifo").exists()  # no special file
    info = json.loads((platform.data_dir / "jobs" / job_id / "job_info.json").read_text())
    assert "forged" not in info and info["job_id"] == job_id  # the platform's own file is not taken back
    out = subprocess.run(["squeue", "-h"], capture_output=True, text=True, env={**os.environ, **login.cluster.env()})
    assert out.stdout.strip() == "" or "opeva-" + job_id not in out.stdout


def test_a_job_that_ignores_term_is_cancelled_over_ssh_after_the_grace(api, platform, login):
    """The stop's second step: TERM is trapped and ignored, so after the host's 5 s grace the watcher
    sends ``scancel`` through the login node; the job is gone from Slurm and the run ends stopped."""
    script = "trap 'echo TERM ignored' TERM; echo started; while true; do sleep 0.2; done"
    job_id = submit(api, "stubborn", command=["bash", "-c", script])
    wait_for(lambda: "started" in api.get(f"/logs/{job_id}").text, 90, what="the job's first line over ssh (periodic sync)")
    assert api.post(f"/stop/{job_id}").status_code == 200
    status = final_status(api, job_id, timeout=90)
    assert status["status"] == "stopped", status
    logs = api.get(f"/logs/{job_id}").text
    assert "TERM ignored" in logs  # the first step reached the job, which went on running
    info = json.loads((platform.data_dir / "jobs" / job_id / "job_info.json").read_text())
    assert info["slurm_state"].startswith("CANCELLED"), info  # the grace's scancel ended it, over ssh
    out = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True, env={**os.environ, **login.cluster.env()})
    assert out.returncode == 0 and f"opeva-{job_id}" not in out.stdout


def test_missing_remote_root_is_failed_artifact_sync_failed_and_nothing_submitted(api, login):
    away = login.remote_root.with_name("remote-away")
    login.remote_root.rename(away)
    try:
        job_id = submit(api, "nowhere", command=["true"])
        status = final_status(api, job_id)
    finally:
        away.rename(login.remote_root)
    assert status["status"] == "failed", status
    assert status["error_code"] == "artifact_sync_failed", status
    message = (status.get("prefect_state") or {}).get("message", "")
    assert f"uploading the job's inputs to {login.destination}:{login.remote_root}/jobs/{job_id}" in message, message
    assert str(login.remote_root) in message and "can't cd" in message, message
    assert api.get(f"/job-info/{job_id}").json().get("slurm_job_id") is None  # nothing reached sbatch


@pytest.mark.parametrize("copier", ["rsync", "tar"])
def test_copies_over_the_real_sshd_keep_links_and_special_files_out(login, tmp_path, copier):
    """core/slurm_sync.py with each copier, straight against the login node (no platform): inputs
    up; back, only files and folders, no link followed or made; a copy that fails says which."""
    from core.slurm_sync import RemoteJob, SyncFailed
    from core.slurm_transport import SshOptions, Transport

    root = tmp_path / "data"
    job = root / "jobs" / f"j-{copier}"
    (job / "logs").mkdir(parents=True)
    (job / "job_info.json").write_text('{"job_id": "j"}')
    (root / "configs").mkdir()
    (root / "configs" / "c.yaml").write_text("experiment: {name: x}\n")
    via = Transport.of(login.submit, SshOptions(**login.ssh_block(copier=copier)))
    remote = RemoteJob(via, root, job.name, job)
    remote.push([root / "configs" / "c.yaml"])
    there = login.remote_root / "jobs" / job.name
    assert (there / "job_info.json").is_file() and (login.remote_root / "configs" / "c.yaml").read_text() == "experiment: {name: x}\n"
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "slurm.out").write_text("not the job's\n")
    (there / "results").mkdir()
    (there / "results" / "out.txt").write_text("out\n")
    (there / "results" / "link").symlink_to("/etc/passwd")
    os.mkfifo(there / "results" / "fifo")
    (there / "job_info.json").write_text('{"forged": true}')
    (there / "logs").rmdir()
    (there / "logs").symlink_to(secret)  # a folder link: never followed, not even for the followed files
    remote.pull(logs_only=("logs/slurm.out",))
    assert not (job / "logs" / "slurm.out").exists()
    remote.pull()
    assert (job / "results" / "out.txt").read_text() == "out\n"
    assert sorted(p.name for p in (job / "results").iterdir()) == ["out.txt"]
    assert (job / "job_info.json").read_text() == '{"job_id": "j"}' and not (job / "logs").is_symlink()
    subprocess.run(["rm", "-rf", str(there)], check=True)
    with pytest.raises(SyncFailed, match=f"copying the job's outputs back from {login.destination}:{there}"):
        remote.pull()


def test_outputs_over_their_bounds_are_not_copied_back_and_the_run_fails_saying_so(api, platform, login):
    """The job ends COMPLETED but leaves more than MAX_FILES (10,000) entries in its folder: the copy
    back is refused before it starts, and the run ends failed, artifact_sync_failed, naming it."""
    job_id = submit(api, "flood", command=["bash", "-c", "mkdir $OPEVA_JOB_DIR/many && cd $OPEVA_JOB_DIR/many && seq 10001 | xargs touch; "
                                                          "echo flooded"])
    status = final_status(api, job_id)
    assert status["status"] == "failed" and status["error_code"] == "artifact_sync_failed", status
    message = (status.get("prefect_state") or {}).get("message", "")
    assert f"copying the job's outputs back from {login.destination}:" in message and "(at most 10000" in message, message
    assert not (platform.data_dir / "jobs" / job_id / "many").exists()
    assert api.get(f"/job-info/{job_id}").json()["slurm_state"] == "COMPLETED"


# 40 numbered lines; after line 5 the job waits (up to 5 min) for a file "go" in its folder on the
# login node, so it still runs whatever the machine's load when the re-attach pass looks for it.
LINES = ('for i in $(seq 1 40); do echo "line $i"; sleep 0.1; '
         'if [ "$i" = 5 ]; then n=0; while [ ! -e "$OPEVA_JOB_DIR/go" ] && [ "$n" -lt 1500 ]; do sleep 0.2; n=$((n+1)); done; fi; done')


def test_a_watcher_killed_over_ssh_is_reattached_through_the_login_node(api, platform, login):
    """The watcher dies (SIGKILL) while its job runs on the login node's cluster: `make up`'s pass
    asks that cluster over ssh (squeue), reschedules the run, and the next attempt follows the same
    Slurm job from its checkpoint, its logs still copied back, each line once."""
    import re
    import signal
    from collections import Counter

    from core.slurm_transport import SshOptions, Transport
    from deployments.reconcile_slurm import SlurmReattacher
    from helpers import read_run

    job_id = submit(api, "reattach", command=["bash", "-c", LINES])
    wait_for(lambda: "line 5" in api.get(f"/logs/{job_id}").text, 90, what="the job's output over ssh")
    first = api.get(f"/job-info/{job_id}").json()["slurm_job_id"]
    for pid in watcher_pids(job_id):
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: read_run(job_id).state.is_crashed(), 30, 0.2, what="the worker to record the run Crashed")
    wait_for(lambda: not watcher_pids(job_id), 30, 0.2, what="the runner's crash hooks to end")
    via = Transport.of(login.submit, SshOptions(**login.ssh_block()))
    reattacher = SlurmReattacher(platform.prefect_api_url, platform.prefect_auth_string, {HOST: via})
    try:
        assert reattacher.at_start() == [job_id]  # squeue over ssh still lists it: the job waits for "go"
    finally:
        reattacher.prefect.close()
    (login.remote_root / "jobs" / job_id / "go").touch()
    status = final_status(api, job_id)
    assert status["status"] == "finished", status
    info = api.get(f"/job-info/{job_id}").json()
    assert info["slurm_job_id"] == first and info["slurm_state"] == "COMPLETED"  # followed, never submitted again
    logs = api.get(f"/logs/{job_id}").text
    assert f"Re-attached to Slurm job {first}" in logs
    counts = Counter(re.findall(r"^line (\d+)$", logs, flags=re.M))
    assert [counts.get(str(i), 0) for i in range(1, 41)] == [1] * 40, counts
