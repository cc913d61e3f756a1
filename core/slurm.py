"""Slurm hosts without Prefect: the host's settings, a job's options, the partition limits read
from the cluster, validation, and the commands (sbatch, squeue/scontrol/sacct, scancel).

Why here and Prefect-free: the REST API validates a submission against the same limits the
flow later submits with, and the bench and tests drive the same commands. The batch script
itself is core/slurm_script.py; the mapping of Slurm's job states to OPEVA's is core/states.py.

A job's options come from upstream's ``deucalion_options`` or the neutral ``slurm`` field of a
submission (same keys); the host's ``slurm.defaults`` fill what a job leaves unset, and what the
cluster says about the partition (``sinfo``) bounds them: a refusal names the limit.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.slurm_transport import LOCAL, SshOptions, Transport, parse_submit

Runtime = Literal["apptainer", "singularity", "docker", "none"]
COMMAND_SECONDS = 30
_PARTITION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ACCOUNT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MODULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+/-]{0,127}$")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class SlurmRefused(ValueError):
    """A job's Slurm options break a rule of its host or a limit of its partition (the API's 400)."""


class SlurmError(RuntimeError):
    """A Slurm command failed (the cluster is unreachable, sbatch refused the script...)."""


def parse_time(value: Any) -> int:
    """Slurm's time formats (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) in seconds."""
    text = str(value).strip() if value is not None else ""
    days, _, rest = text.rpartition("-") if "-" in text else ("", "", text)
    if ("-" in text and not days.isdigit()) or not rest:
        raise ValueError(f"{value!r} is not a Slurm time (04:00:00, 2-00:00:00 or minutes)")
    parts = rest.split(":")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{value!r} is not a Slurm time (04:00:00, 2-00:00:00 or minutes)")
    n = [int(p) for p in parts]
    if days:
        h, m, s = (n + [0, 0])[:3]
        total = int(days) * 86400 + h * 3600 + m * 60 + s
    else:
        total = {1: lambda: n[0] * 60, 2: lambda: n[0] * 60 + n[1], 3: lambda: n[0] * 3600 + n[1] * 60 + n[2]}[len(n)]()
    if total <= 0:
        raise ValueError("a time limit must be greater than zero")
    return total


def format_time(seconds: int) -> str:
    """``HH:MM:SS`` with hours past 24 (upstream's ``time_limit``; sbatch reads it too)."""
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def time_label(seconds: int) -> str:
    hours = seconds // 3600
    if seconds % 3600 == 0:
        return f"{hours} hour" if hours == 1 else f"{hours} hours"
    return format_time(seconds)


class SlurmDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    time: str = "00:30:00"
    cpus_per_task: int = Field(1, ge=1)
    mem_gb: float = Field(2, gt=0)
    gpus: int = Field(0, ge=0)

    @field_validator("time")
    @classmethod
    def _time(cls, v: str) -> str:
        parse_time(v)
        return v


class SlurmSettings(BaseModel):
    """A Slurm host's ``slurm:`` block in hosts.yaml (docs/slurm.md)."""

    model_config = ConfigDict(extra="forbid")
    submit: str = Field("local", description="local (sbatch on the worker's machine) or ssh://user@login-node[:port] (slurm.ssh)")
    ssh: SshOptions | None = Field(None, description="submit ssh://: how to reach the login node, and remote_root")
    partitions: list[str] = Field(min_length=1, description="partitions jobs may use; the first is the default; limits come from the cluster")
    account: str | None = None
    runtime: Runtime = Field("none", description="how the simulator runs on a compute node")
    defaults: SlurmDefaults = Field(default_factory=SlurmDefaults)
    modules: list[str] = Field(default_factory=list, description="`module load` before the simulator")
    image_dir: str | None = Field(None, description="apptainer/singularity: folder of <repository>_<tag>.sif image files")
    python: str = Field("python3", description="runtime none: the Python that runs the reference simulator")
    stop_grace_seconds: float = Field(10, ge=0, le=600, description="between scancel --signal=TERM and scancel")

    @field_validator("submit")
    @classmethod
    def _submit(cls, v: str) -> str:
        parse_submit(v)
        return v

    @model_validator(mode="after")
    def _ssh_block(self) -> "SlurmSettings":
        if self.submit == "local" and self.ssh is not None:
            raise ValueError("slurm.ssh is for submit: ssh://user@login-node; this host submits locally")
        self.transport()  # an ssh URL needs the ssh block; the two ports agree
        return self

    def transport(self) -> Transport:
        """Where this host's Slurm commands and file copies run (core/slurm_transport.py)."""
        return Transport.of(self.submit, self.ssh)

    @field_validator("partitions")
    @classmethod
    def _partitions(cls, v: list[str]) -> list[str]:
        for p in v:
            if not _PARTITION.fullmatch(p):
                raise ValueError(f"{p!r} is not a partition name")
        return v

    @field_validator("modules")
    @classmethod
    def _modules(cls, v: list[str]) -> list[str]:
        for m in v:
            if not _MODULE.fullmatch(m):
                raise ValueError(f"{m!r} is not a module name")
        return v


class SlurmOptions(BaseModel):
    """A job's options: upstream's ``deucalion_options`` keys (``command_mode``, ``datasets``,
    ``required_paths`` are kept with the job; the data root is shared here)."""

    model_config = ConfigDict(extra="forbid")
    account: str | None = None
    partition: str | None = None
    time: str | int | None = None
    time_limit: str | int | None = None  # upstream's other name for time
    cpus_per_task: int | None = Field(None, ge=1, le=4096)
    mem_gb: float | None = Field(None, gt=0, le=1 << 20)
    gpus: int | None = Field(None, ge=0, le=64)
    modules: list[str] | None = None
    command_mode: str | None = None
    datasets: list[str] | None = None
    required_paths: list[str] | None = None


class Partition(BaseModel):
    """What the cluster says about one partition (``sinfo``)."""

    partition: str
    state: str
    default: bool = False
    max_nodes: int | None = None
    nodes: int = 0
    time_limit_seconds: int | None = None  # None: UNLIMITED
    cpus_per_node: int = 0
    mem_mb_per_node: int = 0
    gpus_per_node: int = 0


class Request(BaseModel):
    """The sbatch options one job runs with, validated."""

    partition: str
    time_seconds: int
    cpus_per_task: int
    mem_gb: float
    gpus: int
    account: str | None = None
    modules: list[str] = Field(default_factory=list)

    def sbatch_args(self) -> list[str]:
        args = [f"--partition={self.partition}", f"--time={format_time(self.time_seconds)}", "--nodes=1", "--ntasks=1",
                f"--cpus-per-task={self.cpus_per_task}", f"--mem={max(1, int(self.mem_gb * 1024))}M",
                "--no-requeue"]  # a lost node fails the job (node_fail) whatever the cluster's JobRequeue says; a requeue is ours to make
        if self.gpus:
            args.append(f"--gpus={self.gpus}")
        if self.account:
            args.append(f"--account={self.account}")
        return args


def options_of(raw: Mapping[str, Any] | None) -> SlurmOptions:
    try:
        return SlurmOptions.model_validate(dict(raw or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "options"
        raise SlurmRefused(f"slurm options: {where}: {first['msg']}") from None


def resolve(settings: SlurmSettings, raw: Mapping[str, Any] | None, partitions: list[Partition] | None) -> Request:
    """The job's options over the host's defaults, checked against the host's allowed
    partitions and, when ``partitions`` (the cluster's) is given, the partition's limits."""
    opts = options_of(raw)
    d = settings.defaults
    partition = (opts.partition or settings.partitions[0]).strip()
    if partition not in settings.partitions:
        raise SlurmRefused(f"partition {partition!r} is not allowed on this host (allowed: {', '.join(settings.partitions)})")
    account = opts.account or settings.account
    if account is not None and not _ACCOUNT.fullmatch(account):
        raise SlurmRefused(f"account {account!r} is not an account name")
    when = opts.time if opts.time is not None else opts.time_limit
    try:
        seconds = parse_time(when if when is not None else d.time)
    except ValueError as exc:
        raise SlurmRefused(f"time: {exc}") from None
    modules = list(settings.modules) + [m for m in (opts.modules or []) if m not in settings.modules]
    for m in modules:
        if not _MODULE.fullmatch(m):
            raise SlurmRefused(f"module {m!r} is not a module name")
    req = Request(partition=partition, time_seconds=seconds, cpus_per_task=opts.cpus_per_task or d.cpus_per_task,
                  mem_gb=opts.mem_gb or d.mem_gb, gpus=d.gpus if opts.gpus is None else opts.gpus, account=account, modules=modules)
    if partitions is not None:
        check_limits(req, partitions)
    return req


def check_limits(req: Request, partitions: list[Partition]) -> None:
    """A refusal that names the limit, as upstream words the walltime one."""
    part = next((p for p in partitions if p.partition == req.partition), None)
    if part is None:
        raise SlurmRefused(f"partition {req.partition!r} does not exist on the cluster (it has: {', '.join(p.partition for p in partitions)})")
    if part.time_limit_seconds is not None and req.time_seconds > part.time_limit_seconds:
        raise SlurmRefused(f"time {format_time(req.time_seconds)} exceeds the {time_label(part.time_limit_seconds)} walltime limit "
                           f"(MaxTime) of partition {req.partition!r}")
    if part.cpus_per_node and req.cpus_per_task > part.cpus_per_node:
        raise SlurmRefused(f"cpus_per_task {req.cpus_per_task} exceeds the {part.cpus_per_node} CPUs of a node in partition {req.partition!r}")
    if part.mem_mb_per_node and req.mem_gb * 1024 > part.mem_mb_per_node:
        raise SlurmRefused(f"mem_gb {req.mem_gb:g} exceeds the {part.mem_mb_per_node / 1024:.1f} GB of a node in partition {req.partition!r}")
    if req.gpus > part.gpus_per_node:
        raise SlurmRefused(f"gpus {req.gpus} exceeds the {part.gpus_per_node} GPUs of a node in partition {req.partition!r}")


# -- the commands --------------------------------------------------------------------------

def _run(args: list[str], *, input_text: str | None = None, env: Mapping[str, str] | None = None, via: Transport = LOCAL) -> str:
    """The ONE place a Slurm command runs: here, or on the login node over ssh (``via``)."""
    argv = via.argv(args)
    try:
        out = subprocess.run(argv, input=input_text, capture_output=True, text=True, timeout=COMMAND_SECONDS,
                             env={**os.environ, **(env or {})}, stdin=None if input_text is not None else subprocess.DEVNULL)
    except FileNotFoundError:
        raise SlurmError(f"{argv[0]} is not installed on this machine (the submit node)") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{args[0]} on {via.where} did not answer within {COMMAND_SECONDS} s") from None
    if out.returncode == 255 and via.remote:  # ssh's own failure (unreachable, refused key, unknown host key)
        raise SlurmError(f"ssh to {via.where} failed: {(out.stderr or out.stdout).strip()[:500]}")
    if out.returncode != 0:
        where = f" (on {via.where})" if via.remote else ""
        raise SlurmError(f"{' '.join(args[:2])}{where}: {(out.stderr or out.stdout).strip()[:500]}")
    return out.stdout


def _int(text: str) -> int:
    m = re.match(r"\d+", text.strip())
    return int(m.group()) if m else 0


def _gpus(gres: str) -> int:
    return sum(int(m.group(1)) for m in re.finditer(r"gpu(?::[^:,(]+)?:(\d+)", gres))


def partitions(via: Transport = LOCAL) -> list[Partition]:
    """The cluster's partitions, from one ``sinfo`` call."""
    text = _run(["sinfo", "-h", "-o", "%P|%a|%l|%D|%c|%m|%G|%s"], via=via)
    found: dict[str, Partition] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 8:
            continue
        name, avail, limit, nodes, cpus, mem, gres, max_nodes = fields
        default = name.endswith("*")
        name = name.rstrip("*")
        seconds = None if limit.strip() in ("infinite", "UNLIMITED", "n/a") else parse_time(limit)
        part = found.setdefault(name, Partition(partition=name, state=avail, default=default, time_limit_seconds=seconds,
                                                max_nodes=None if max_nodes.strip() in ("UNLIMITED", "infinite") else _int(max_nodes)))
        part.nodes += _int(nodes)
        part.cpus_per_node = max(part.cpus_per_node, _int(cpus))
        part.mem_mb_per_node = max(part.mem_mb_per_node, _int(mem))
        part.gpus_per_node = max(part.gpus_per_node, _gpus(gres))
    return list(found.values())


def submit(script: str, extra: list[str], via: Transport = LOCAL) -> str:
    """``sbatch --parsable`` with the script on stdin; the Slurm job id."""
    out = _run(["sbatch", "--parsable", *extra], input_text=script, via=via)
    job_id = out.strip().split(";")[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch answered {out.strip()!r}, not a job id")
    return job_id


def job_record(job_id: str, via: Transport = LOCAL) -> dict[str, str] | None:
    """What Slurm knows of a job: ``scontrol show job`` while the controller keeps it
    (MinJobAge), then ``sacct`` where accounting runs; None when both forgot it."""
    try:
        text = _run(["scontrol", "show", "job", "-o", job_id], via=via)
    except SlurmError as exc:
        if "Invalid job id" not in str(exc):
            raise
        return _sacct(job_id, via)
    record: dict[str, str] = {}
    for token in re.findall(r"(\S+?)=(\S*)", text.strip()):
        record.setdefault(token[0], token[1])
    return record or None


def _sacct(job_id: str, via: Transport = LOCAL) -> dict[str, str] | None:
    try:
        text = _run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "JobState,ExitCode,NodeList,Partition,Reason,AllocCPUS,JobName"], via=via)
    except SlurmError:
        return None  # accounting disabled or down: the caller treats the job as forgotten
    line = next((l for l in text.splitlines() if l.strip()), None)
    if line is None:
        return None
    state, code, nodes, partition, reason, cpus, name = (line.split("|") + [""] * 7)[:7]
    return {"JobState": state.split()[0], "ExitCode": code, "NodeList": nodes, "Partition": partition, "Reason": reason, "NumCPUs": cpus,
            "JobName": name}


def signal_job(job_id: str, signal_name: str = "TERM", via: Transport = LOCAL) -> None:
    """``scancel --signal`` to the batch script and every step (``--full``): the job's handler runs."""
    _run(["scancel", "--full", f"--signal={signal_name}", job_id], via=via)


def cancel(job_id: str, via: Transport = LOCAL) -> None:
    _run(["scancel", job_id], via=via)


ENDED_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE"})


def ended_jobs(via: Transport = LOCAL) -> dict[str, tuple[str, float]]:
    """OPEVA job id -> (Slurm job id, end time in epoch seconds) for the platform-named jobs that
    ended and that the controller still holds (``MinJobAge``, 300 s by default): the window in
    which a run crashed while its job ran can still be given the job's real end."""
    found: dict[str, tuple[str, float]] = {}
    for line in _run(["squeue", "-h", "-t", "all", "-o", "%i|%j|%T|%e"], via=via).splitlines():
        slurm_id, name, state, end = (line.strip().split("|") + ["", "", "", ""])[:4]
        job_id = name[len("opeva-"):] if name.startswith("opeva-") else ""
        if not (slurm_id.isdigit() and state in ENDED_STATES and _UUID.fullmatch(job_id)):
            continue
        try:
            ended_at = datetime.fromisoformat(end).timestamp()  # the controller's local time, as this machine's
        except ValueError:
            continue
        found[job_id] = (slurm_id, ended_at)
    return found


def live_jobs(via: Transport = LOCAL) -> dict[str, str]:
    """OPEVA job id -> Slurm job id, for the jobs Slurm still queues or runs under the platform's
    names (``--job-name=opeva-<job id>``)."""
    found: dict[str, str] = {}
    for line in _run(["squeue", "-h", "-o", "%i|%j"], via=via).splitlines():
        slurm_id, _, name = line.strip().partition("|")
        job_id = name[len("opeva-"):] if name.startswith("opeva-") else ""
        if slurm_id.isdigit() and _UUID.fullmatch(job_id):
            found[job_id] = slurm_id  # anyone may name a job so: this only says where to look
    return found
