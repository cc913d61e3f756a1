"""Slurm hosts in the REST API: submit-time validation, partitions, the slurm_* fields.

A Slurm host's limits come from its own cluster (``sinfo`` on the submit node, which is where the
API and the host's worker run, or on its login node over ssh; core/slurm.py, core/slurm_transport.py), so a refusal at submit is the one the flow would
meet at ``sbatch``, answered before anything is queued.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from api.errors import ApiError
from api.models import RunSimulationRequest
from api.models_slurm import PartitionLimit, PartitionsOut
from api.responses import HostsOut
from core import job_io
from core.layout import DataRoot
from core import slurm
from core.hosts import Host, HostsFile
from core.states import SLURM_STATUS_FIELDS

DEUCALION = "deucalion"
SOURCE = "sinfo on the host's submit node"  # or its login node, over ssh (slurm.submit: ssh://...)


REMOTE_TTL = 10.0  # seconds an ssh host's partitions are reused: /hosts is polled, and each answer is an ssh round trip
_remote_cache: dict[str, tuple[float, str, list[slurm.Partition]]] = {}


async def cluster_partitions(host: Host) -> list[slurm.Partition]:
    assert host.slurm is not None
    via = host.slurm.transport()
    cached = _remote_cache.get(host.name)
    if via.remote and cached and cached[1] == repr(via) and time.monotonic() - cached[0] < REMOTE_TTL:
        return [p.model_copy() for p in cached[2]]
    try:
        found = await asyncio.to_thread(slurm.partitions, via)
    except slurm.SlurmError as exc:
        raise ApiError(503, f"host {host.name!r}: its Slurm cluster did not answer: {exc}") from None
    if via.remote:
        _remote_cache[host.name] = (time.monotonic(), repr(via), found)
    return found


async def submit_options(host: Host, body: RunSimulationRequest) -> dict[str, Any] | None:
    """The job's Slurm options (``slurm``, else upstream's ``deucalion_options``), checked against
    the host's allowed partitions and the cluster's limits: a 400 that names the limit."""
    raw = body.slurm if body.slurm is not None else body.deucalion_options
    if host.kind != "slurm":
        if body.slurm is not None:
            raise ApiError(400, f"slurm options apply to Slurm hosts; host {host.name!r} is a {host.kind} host")
        return None
    assert host.slurm is not None
    try:
        slurm.options_of(raw)
        slurm.resolve(host.slurm, raw, await cluster_partitions(host))
    except slurm.SlurmRefused as exc:
        raise ApiError(400, f"host {host.name!r}: {exc}") from None
    return dict(raw) if raw else None


async def partitions(host: Host) -> PartitionsOut:
    """Upstream's ``/deucalion/partitions`` shape, for the partitions this host allows."""
    if host.kind != "slurm" or host.slurm is None:
        raise ApiError(404, f"host {host.name!r} is not a Slurm host (kind {host.kind})")
    found = {p.partition: p for p in await cluster_partitions(host)}
    rows = []
    for name in host.slurm.partitions:
        p = found.get(name)
        if p is None:
            continue
        seconds = p.time_limit_seconds
        rows.append(PartitionLimit(
            partition=name, architecture=None, max_nodes=p.max_nodes if p.max_nodes is not None else p.nodes,
            time_limit_seconds=seconds, time_limit=slurm.format_time(seconds) if seconds else None,
            time_limit_label=slurm.time_label(seconds) if seconds else "unlimited", state=p.state, nodes=p.nodes,
            cpus_per_node=p.cpus_per_node, mem_gb_per_node=round(p.mem_mb_per_node / 1024, 1), gpus_per_node=p.gpus_per_node,
            allowed=True, default=name == host.slurm.partitions[0],
        ))
    return PartitionsOut(source=f"{SOURCE} ({host.name})", host=host.name, partitions=rows)


def deucalion_host(hosts: HostsFile) -> Host:
    """The host upstream's ``/deucalion/partitions`` speaks of: the one named deucalion, else the only Slurm host."""
    named = hosts.get(DEUCALION)
    if named is not None and named.kind == "slurm":
        return named
    slurm_hosts = [h for h in hosts.hosts if h.kind == "slurm"]
    if len(slurm_hosts) == 1:
        return slurm_hosts[0]
    raise ApiError(404, "no Slurm host named 'deucalion' in the hosts file (GET /hosts/{host}/partitions for another)")


def slurm_fields(info: dict[str, Any]) -> dict[str, Any]:
    """The ``slurm_*`` keys of a job_info.json, typed: the job may write that file, so a value of
    the wrong type is dropped rather than trusted (or answered as a 500)."""
    out: dict[str, Any] = {}
    for key in SLURM_STATUS_FIELDS:
        value = info.get(key)
        if key in ("slurm_nodes", "slurm_cpus", "slurm_gpus"):
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 31:
                out[key] = value
        elif isinstance(value, str) and len(value) <= 256:
            out[key] = value
    return out


async def with_slurm(out: HostsOut, hosts: HostsFile, storage: DataRoot) -> HostsOut:
    """Slurm hosts' cards as upstream's HPC cards: ``executor: slurm``, ``partition_limits``
    (upstream's ``/deucalion/partitions`` answer), and each active job's ``slurm_*`` fields."""
    for host in hosts.hosts:
        detail = out.hosts.get(host.name)
        if host.kind != "slurm" or detail is None:
            continue
        info = detail.info
        info.executor = "slurm"
        try:
            setattr(info, "partition_limits", (await partitions(host)).model_dump())
        except ApiError as exc:
            setattr(info, "partition_limits", None)
            setattr(info, "partition_limits_error", exc.args[0] if exc.args else str(exc))
        jobs = []
        for job in info.active_jobs:
            found = await asyncio.to_thread(job_io.read_json, storage.job(job.job_id).dir, "job_info.json")
            jobs.append(job.model_copy(update=slurm_fields(found if isinstance(found, dict) else {})))
        info.active_jobs = jobs
    return out


def cancel_left_job(pool: str | None, job_id: str) -> str | None:
    """After a stop: scancel the job's Slurm job if it still waits or runs (its flow run was killed
    before its own scancel, say). The Slurm job id comes from job_info.json, which the job can
    write, so it is only acted on when Slurm names that job ``opeva-<job_id>`` (sbatch --job-name,
    set by the platform): a forged id cannot cancel anyone else's job. Returns the id cancelled."""
    from core.hosts import current_hosts
    from core.settings import PlatformSettings
    from core.states import slurm_status

    try:
        host = current_hosts().get(pool or "")
    except (OSError, ValueError):
        return None
    if host is None or host.kind != "slurm":
        return None
    storage = DataRoot(PlatformSettings().shared_data_dir)
    info = job_io.read_json(storage.job(job_id).dir, "job_info.json")
    slurm_id = info.get("slurm_job_id") if isinstance(info, dict) else None
    if not isinstance(slurm_id, str) or not slurm_id.isdigit():
        return None
    try:
        via = host.slurm.transport() if host.slurm else None
        if via is None:
            return None
        record = slurm.job_record(slurm_id, via)
        if not record or record.get("JobName") != f"opeva-{job_id}":
            return None
        if slurm_status(record.get("JobState"))[0] not in ("dispatched", "running"):
            return None
        slurm.cancel(slurm_id, via)
    except slurm.SlurmError:
        return None
    return slurm_id
