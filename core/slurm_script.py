"""The batch script of a Slurm job and the sbatch options around it (no Prefect).

The script runs the simulator under the same contract (the ``OPEVA_*`` variables) and the same
sandbox rules as a Docker host (docs/security.md):

- no platform credential: sbatch gets ``--export=NONE`` (the worker's environment, Prefect's URL
  and auth string included, never reaches the compute node); the script sets only the contract;
- unprivileged: runtime ``none`` and apptainer/singularity run as the host's ``run_as`` uid
  (``sbatch --uid/--gid`` when the worker is root, else as the submitting user); runtime
  ``docker`` keeps the batch script on the submitter's side of the engine and starts the
  container with ``--user run_as``, no capabilities, ``no-new-privileges``, the data root
  read-only and only the job folder writable, bounded memory/pids/files, and no network
  (``--network none``) unless the host names an internal network;
- bounded: Slurm's own ``--time``, ``--mem`` and ``--cpus-per-task``.

On ``scancel --signal=TERM`` the script passes TERM to the simulator (whose handler runs), waits
for it, and exits with its code. The code is written by the simulator's parent subshell, which a TERM
does not end (``trap :``: the simulator itself keeps TERM's default), because bash 5.2's ``wait``
can lose a child reaped while the script's own TERM trap runs: it returned -1 (exit 255) in 4 of 300
runs of a job that handled TERM and exited 0.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from core.slurm import Request, SlurmSettings

PATH = "/usr/local/bin:/usr/bin:/bin"


class _Shell(str):
    """An argument the batch shell expands (``${SLURM_CPUS_PER_TASK}``): double-quoted, not escaped."""
SIF_SUFFIX = ".sif"


@dataclass
class JobScript:
    """Everything a batch script needs; paths as the compute node sees them (a shared file system)."""

    job_id: str
    job_dir: str
    data_root: str
    project_root: str  # where `python -m simulator` imports from (runtime none)
    env: Mapping[str, str]  # the contract (flows/supervise.contract_env), as the node sees it
    command: Sequence[str] | None = None  # a job's own command; None: the reference simulator or the image's entry point
    image: str | None = None  # runtime docker/apptainer: the simulator image
    image_args: Sequence[str] = field(default_factory=list)  # arguments for an image's own entry point
    run_as: str = "65534:65534"
    data_mount: str = "/data"
    memory_bytes: int | None = None
    pids: int = 512
    nofile: int = 4096
    network: str = "none"


def output_file(job_dir: str) -> str:
    """Slurm's stdout/stderr of the job, inside the job's folder (read back without following links)."""
    return f"{job_dir}/logs/slurm.out"


def sbatch_options(req: Request, script: JobScript, *, as_root: bool, runtime: str) -> list[str]:
    """The options given to ``sbatch`` on its command line (never read from the job)."""
    opts = [f"--job-name=opeva-{script.job_id}", f"--comment=opeva:{script.job_id}", "--export=NONE",
            f"--chdir={script.job_dir}", f"--output={output_file(script.job_dir)}", "--open-mode=append",
            "--signal=B:TERM@30", *req.sbatch_args()]
    if as_root and runtime != "docker":
        uid, _, gid = script.run_as.partition(":")
        opts += [f"--uid={uid}", f"--gid={gid or uid}"]
    return opts


def _exports(env: Mapping[str, str]) -> str:
    return "\n".join(f"export {k}={shlex.quote(str(v))}" for k, v in sorted(env.items()))


def _inner_command(settings: SlurmSettings, script: JobScript) -> list[str]:
    runtime = settings.runtime
    if runtime == "none":
        if script.image:
            raise ValueError("runtime none runs the reference simulator or a command; a simulator image needs runtime docker or apptainer")
        return list(script.command) if script.command else [settings.python, "-m", "simulator"]
    job_in = f"{script.data_mount}/{script.job_dir[len(script.data_root):].lstrip('/')}"
    if runtime == "docker":
        if not script.image:
            raise ValueError("runtime docker needs an image (the runtime image for the reference simulator)")
        cmd = ["docker", "run", "--rm", "--init", f"--name=opeva-slurm-{script.job_id}", f"--user={script.run_as}",
               "--cap-drop=ALL", "--security-opt=no-new-privileges:true", f"--network={script.network}",
               f"--pids-limit={script.pids}", f"--ulimit=nofile={script.nofile}:{script.nofile}",
               "--tmpfs=/tmp:mode=1777", "--label=opeva.role=simulator", f"--label=opeva.job_id={script.job_id}",
               "-v", f"{script.data_root}:{script.data_mount}:ro", "-v", f"{script.job_dir}:{job_in}:rw"]
        if script.memory_bytes:
            cmd += [f"--memory={script.memory_bytes}", f"--memory-swap={script.memory_bytes}"]
        cmd += [_Shell("--cpus=${SLURM_CPUS_PER_TASK:-1}")]
        for key in sorted(script.env):
            cmd += ["-e", key]  # the value comes from the script's own exports, never from the submitter
        return cmd + [script.image, *(script.command or script.image_args)]
    # apptainer / singularity: an image file per simulator tag, the same mounts, no network namespace escape
    if not script.image:
        raise ValueError(f"runtime {runtime} needs an image file (slurm.image_dir)")
    return [runtime, "exec", "--containall", "--cleanenv", "--no-home", "--net", "--network=none",
            "--bind", f"{script.data_root}:{script.data_mount}:ro", "--bind", f"{script.job_dir}:{job_in}:rw",
            *[a for k in sorted(script.env) for a in ("--env", _Shell(f"{k}=${{{k}}}"))],
            script.image, *(script.command or script.image_args)]


def sif_path(settings: SlurmSettings, image: str) -> str:
    """``calof/opeva_simulator:v3`` -> ``<image_dir>/calof_opeva_simulator_v3.sif``."""
    if not settings.image_dir:
        raise ValueError(f"runtime {settings.runtime} needs slurm.image_dir (a folder of .sif files)")
    return f"{settings.image_dir.rstrip('/')}/{image.replace('/', '_').replace(':', '_')}{SIF_SUFFIX}"


def render(settings: SlurmSettings, req: Request, script: JobScript) -> str:
    """The whole batch script. Values are shell-quoted; the script reads nothing from the job."""
    inner = _inner_command(settings, script)
    quoted = " ".join(f'"{a}"' if isinstance(a, _Shell) else shlex.quote(a) for a in inner)
    env = {"PATH": PATH, "HOME": "/tmp", "LANG": "C.UTF-8", **dict(script.env)}
    if settings.runtime == "none":
        env["PYTHONPATH"] = script.project_root
    modules = "\n".join(f"module load {shlex.quote(m)}" for m in req.modules)
    module_block = f"if command -v module >/dev/null 2>&1; then\n{modules}\nfi\n" if modules else ""
    workdir = script.project_root if settings.runtime == "none" else script.job_dir
    return f"""#!/bin/bash
# OPEVA job {script.job_id}: written by core/slurm_script.py (runtime {settings.runtime})
set -u
umask 077
{_exports(env)}
{module_block}cd {shlex.quote(workdir)} || exit 111
echo "[INFO] Slurm job ${{SLURM_JOB_ID:-?}} on $(hostname) (partition ${{SLURM_JOB_PARTITION:-?}}, {req.cpus_per_task} CPU(s)): starting the simulator"
child=
status_dir=$(mktemp -d) || exit 111
on_term() {{
  echo "[INFO] TERM from Slurm: passing it to the simulator"
  [ -n "$child" ] && {{ pkill -TERM -P "$child" 2>/dev/null || kill -TERM "$child" 2>/dev/null; }}
}}
trap on_term TERM
( trap : TERM
{quoted} </dev/null
st=$?; echo "$st" > "$status_dir/rc"; exit "$st" ) &
child=$!
rc=0
while kill -0 "$child" 2>/dev/null; do
  wait "$child"; rc=$?
done
wait "$child" 2>/dev/null; last=$?
[ "$last" != 127 ] && rc=$last
if read -r code 2>/dev/null < "$status_dir/rc"; then
  case "$code" in ''|*[!0-9]*) ;; *) rc=$code ;; esac
fi
rm -rf "$status_dir"
echo "[INFO] the simulator exited with code $rc"
exit "$rc"
"""
