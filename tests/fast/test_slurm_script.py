"""Slurm hosts without a cluster: the hosts-file block, option validation against limits, the
batch script (run for real with bash where it can be), and Slurm's states as OPEVA's.
The cluster itself is exercised in tests/e2e/test_slurm.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from core.hosts import Host, HostsFile
from core.slurm import Partition, SlurmRefused, SlurmSettings, format_time, parse_time, resolve
from core.slurm_script import JobScript, render, sbatch_options, sif_path
from core.states import slurm_status

ISSUE_EXAMPLE = """
hosts:
  - name: deucalion
    kind: slurm
    slurm:
      submit: local
      partitions: [normal-x86]
      account: null
      runtime: docker
      defaults: {time: "00:30:00", cpus_per_task: 1, mem_gb: 2, gpus: 0}
  - name: local
"""
CLUSTER = [Partition(partition="normal-x86", state="up", time_limit_seconds=48 * 3600, cpus_per_node=128, mem_mb_per_node=256_000),
           Partition(partition="dev-x86", state="up", time_limit_seconds=4 * 3600, cpus_per_node=128, mem_mb_per_node=256_000),
           Partition(partition="normal-a100-40", state="up", time_limit_seconds=48 * 3600, cpus_per_node=32, mem_mb_per_node=512_000, gpus_per_node=4)]


def settings(**kw) -> SlurmSettings:
    return SlurmSettings(**{"partitions": ["normal-x86", "normal-a100-40"], **kw})


def test_the_issue_example_reads_and_docker_stays_the_default():
    hosts = HostsFile.model_validate(yaml.safe_load(ISSUE_EXAMPLE))
    deucalion, local = hosts.get("deucalion"), hosts.get("local")
    assert deucalion.kind == "slurm" and deucalion.slurm.runtime == "docker" and deucalion.slurm.defaults.mem_gb == 2
    assert local.kind == "docker" and local.slurm is None


@pytest.mark.parametrize("raw, words", [
    ({"name": "h", "kind": "slurm"}, "needs a slurm: block"),
    ({"name": "h", "slurm": {"partitions": ["p"]}}, "needs kind: slurm"),
    ({"name": "h", "kind": "slurm", "slurm": {"partitions": []}}, "at least 1"),
    ({"name": "h", "kind": "slurm", "slurm": {"partitions": ["p"], "submit": "ssh://u@login"}}, "needs a slurm.ssh block"),
    ({"name": "h", "kind": "slurm", "slurm": {"partitions": ["p"], "runtime": "podman"}}, "apptainer"),
    ({"name": "h", "kind": "slurm", "slurm": {"partitions": ["p;rm"]}}, "not a partition name"),
    ({"name": "h", "kind": "slurm", "slurm": {"partitions": ["p"], "defaults": {"time": "soon"}}}, "not a Slurm time"),
])
def test_bad_slurm_blocks_are_refused(raw, words):
    with pytest.raises(ValueError, match=words):
        Host.model_validate(raw)


@pytest.mark.parametrize("text, seconds", [("30", 1800), ("10:30", 630), ("04:00:00", 14400), ("2-00:00:00", 172800),
                                           ("1-12", 129600), ("0-00:05", 300)])
def test_slurm_time_formats(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1:2:3:4", "-1", "0", "x-01:00:00"])
def test_bad_times(text):
    with pytest.raises(ValueError):
        parse_time(text)


def test_defaults_fill_what_the_job_leaves_unset():
    req = resolve(settings(account="acc1", modules=["python/3.11"]), {"time": "01:00:00"}, CLUSTER)
    assert (req.partition, req.time_seconds, req.cpus_per_task, req.mem_gb, req.gpus, req.account) == ("normal-x86", 3600, 1, 2, 0, "acc1")
    args = req.sbatch_args()
    assert "--time=01:00:00" in args and "--mem=2048M" in args and "--account=acc1" in args and not any(a.startswith("--gpus") for a in args)
    assert resolve(settings(), {"time_limit": "2-00:00:00"}, CLUSTER).time_seconds == 172800  # upstream's other name


def test_a_lost_node_fails_the_job_whatever_the_clusters_requeue_default():
    # Slurm's JobRequeue=1 (its default) would requeue a batch job whose node failed, and run it
    # again from its start; the platform says node_fail and leaves a requeue to the user (/ops requeue).
    assert "--no-requeue" in resolve(settings(), {}, CLUSTER).sbatch_args()


@pytest.mark.parametrize("options, words", [
    ({"partition": "dev-x86"}, "partition 'dev-x86' is not allowed on this host (allowed: normal-x86, normal-a100-40)"),
    ({"time": "3-00:00:00"}, "exceeds the 48 hours walltime limit (MaxTime) of partition 'normal-x86'"),
    ({"cpus_per_task": 129}, "cpus_per_task 129 exceeds the 128 CPUs of a node"),
    ({"mem_gb": 300}, "mem_gb 300 exceeds the 250.0 GB of a node"),
    ({"gpus": 1}, "gpus 1 exceeds the 0 GPUs of a node in partition 'normal-x86'"),
    ({"partition": "normal-a100-40", "gpus": 5}, "gpus 5 exceeds the 4 GPUs"),
    ({"account": "a b"}, "not an account name"),
    ({"modules": ["x; rm -rf /"]}, "not a module name"),
    ({"cpus_per_task": 0}, "cpus_per_task"),
    ({"shell": "rm -rf /"}, "shell"),
])
def test_each_limit_is_named(options, words):
    with pytest.raises(SlurmRefused) as err:
        resolve(settings(), options, CLUSTER)
    assert words in str(err.value)


def test_a_partition_the_cluster_lacks():
    with pytest.raises(SlurmRefused, match="does not exist on the cluster"):
        resolve(settings(partitions=["gone"]), None, CLUSTER)


def spec(tmp_path: Path, **kw) -> JobScript:
    job_dir = tmp_path / "jobs" / "j1"
    (job_dir / "logs").mkdir(parents=True)
    return JobScript(**{"job_id": "j1", "job_dir": str(job_dir), "data_root": str(tmp_path), "project_root": str(tmp_path),
                        "env": {"OPEVA_JOB_ID": "j1", "OPEVA_JOB_DIR": str(job_dir)}, **kw})


def test_sbatch_options_keep_the_environment_and_root_out(tmp_path):
    req = resolve(settings(), None, CLUSTER)
    s = spec(tmp_path)
    opts = sbatch_options(req, s, as_root=True, runtime="none")
    assert "--export=NONE" in opts and "--uid=65534" in opts and "--gid=65534" in opts
    assert f"--output={s.job_dir}/logs/slurm.out" in opts and "--job-name=opeva-j1" in opts
    # runtime docker: the script talks to the engine; the container gets --user instead
    assert not any(o.startswith("--uid") for o in sbatch_options(req, s, as_root=True, runtime="docker"))
    assert not any(o.startswith("--uid") for o in sbatch_options(req, s, as_root=False, runtime="none"))


def test_the_script_runs_the_command_with_the_contract_only(tmp_path):
    """The rendered script, run by bash: the contract reaches the command, hostile text stays text,
    the worker's secrets do not (sbatch --export=NONE keeps them out on a node; here the script's
    own exports are all there is, since bash runs it with an empty environment)."""
    marker = tmp_path / "pwned"
    s = spec(tmp_path, command=["sh", "-c", 'echo "job=$OPEVA_JOB_ID auth=${PREFECT_API_AUTH_STRING:-none}"; exit 3', f"$(touch {marker})"])
    script = render(settings(), resolve(settings(), None, CLUSTER), s)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env={})
    assert out.returncode == 3
    assert "job=j1 auth=none" in out.stdout
    assert "the simulator exited with code 3" in out.stdout
    assert not marker.exists()
    assert "export PREFECT" not in script and "secret" not in script


@pytest.mark.parametrize("whole_step", [True, False], ids=["scancel-full", "batch-shell-only"])
def test_term_reaches_the_command_and_its_handler_runs_and_its_code_is_the_jobs(tmp_path, whole_step):
    """TERM to every process of the step (``scancel --full --signal=TERM``) or to the batch shell only:
    the simulator's handler runs and its exit code is the job's, every time. Repeated because the race
    it guards is rare: bash 5.2's ``wait`` lost the child's status in 4 of 300 runs (exit 255), which
    this loop of 100 caught in 1 of 3 runs of the test here (and the CI once)."""
    s = spec(tmp_path, command=["bash", "-c", "trap 'echo handler ran; exit 0' TERM; echo ready; while :; do sleep 0.1; done"])
    script = render(settings(), resolve(settings(), None, CLUSTER), s)
    for _ in range(100):
        proc = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={},
                                start_new_session=True)
        assert proc.stdout.readline().startswith("[INFO] Slurm job")
        assert proc.stdout.readline().strip() == "ready"
        os.killpg(proc.pid, 15) if whole_step else os.kill(proc.pid, 15)
        rest = proc.stdout.read()
        assert proc.wait(timeout=10) == 0, rest
        assert "handler ran" in rest and "the simulator exited with code 0" in rest, rest


def test_docker_runtime_uses_the_sandbox_flags(tmp_path):
    s = spec(tmp_path, image="opeva-runtime:x", command=["python", "-m", "simulator"], memory_bytes=1 << 30, pids=256)
    script = render(settings(runtime="docker"), resolve(settings(runtime="docker"), None, CLUSTER), s)
    line = next(l for l in script.splitlines() if l.startswith("docker run"))
    for flag in ("--user=65534:65534", "--cap-drop=ALL", "--security-opt=no-new-privileges:true", "--network=none",
                 "--pids-limit=256", f"--memory={1 << 30}", f"-v {tmp_path}:/data:ro", f"-v {s.job_dir}:/data/jobs/j1:rw",
                 '"--cpus=${SLURM_CPUS_PER_TASK:-1}"', "-e OPEVA_JOB_ID", "opeva-runtime:x python -m simulator"):
        assert flag in line, flag
    assert "--privileged" not in line and "docker.sock" not in line and "-e OPEVA_JOB_ID=" not in line
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_apptainer_script_is_generated_and_checked(tmp_path):
    """Apptainer/Singularity cannot be installed here (no Debian package, no registry): the script
    is generated and checked for syntax and flags, not run."""
    st = settings(runtime="apptainer", image_dir="/shared/images")
    image = sif_path(st, "calof/opeva_simulator:v3")
    assert image == "/shared/images/calof_opeva_simulator_v3.sif"
    s = spec(tmp_path, image=image, image_args=["--config", "/data/configs/x.yaml", "--job_id", "j1"])
    script = render(st, resolve(st, None, CLUSTER), s)
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    line = next(l for l in script.splitlines() if l.startswith("apptainer exec"))
    for flag in ("--containall", "--cleanenv", "--no-home", "--network=none", f"--bind {tmp_path}:/data:ro",
                 f"--bind {s.job_dir}:/data/jobs/j1:rw", '--env "OPEVA_JOB_ID=${OPEVA_JOB_ID}"', f"{image} --config /data/configs/x.yaml"):
        assert flag in line, flag
    with pytest.raises(ValueError, match="image_dir"):
        sif_path(settings(runtime="singularity"), "a:b")


@pytest.mark.parametrize("state, stop, code, expected", [
    ("PENDING", False, None, ("dispatched", None)),
    ("CONFIGURING", False, None, ("dispatched", None)),
    ("RUNNING", False, None, ("running", None)),
    ("COMPLETING", False, None, ("running", None)),
    ("COMPLETED", False, 0, ("finished", None)),
    ("FAILED", False, 3, ("failed", "simulator_error")),
    ("OUT_OF_MEMORY", False, None, ("failed", "out_of_memory")),
    ("TIMEOUT", False, None, ("failed", "timed_out")),
    ("NODE_FAIL", False, None, ("failed", "node_fail")),
    ("CANCELLED by 0", True, None, ("stopped", None)),
    ("CANCELLED by 1000", False, None, ("failed", "slurm_cancelled")),
    ("FAILED", True, 143, ("stopped", None)),  # our TERM ended it: stopped, whatever its exit
    (None, False, None, ("failed", "slurm_job_lost")),  # never stuck running once Slurm forgot it
])
def test_slurm_states_as_opeva(state, stop, code, expected):
    status, error_code, message = slurm_status(state, stop_requested=stop, exit_code=code)
    assert (status, error_code) == expected
    if state == "FAILED" and not stop:
        assert message == "exit code 3"
    if expected[1] == "slurm_cancelled":
        assert "someone other than the platform" in message


def test_format_time_round_trips():
    assert format_time(parse_time("2-01:02:03")) == "49:02:03"


@pytest.mark.parametrize("state", ["NODE_FAIL", "CANCELLED by 1000", "OUT_OF_MEMORY", "TIMEOUT", "PREEMPTED", None])
def test_each_slurm_failure_is_classified_with_its_code(state):
    """The flow's failed message (error_code=<code>: ...) is what /status and /jobs classify (core/failures.py)."""
    from core.failures import classify
    from core.job_limits import error_message

    _, code, message = slurm_status(state)
    failure = classify(status="failed", state_type="FAILED", state_message=f"SimulatorFailed: {error_message(code, f'Slurm job 7 {state}: {message}')}")
    assert failure.error_code == code
