"""Slurm jobs whose watcher died are followed again, never lost and never submitted twice.

On a Slurm host the job runs in Slurm, but its watcher (the run-simulation flow run, a process
started by the host's process-pool worker on this machine) follows it, mirrors its output and
records its end. When that process is gone while Prefect still holds the run Pending or Running
(``make up`` stopped, the process killed with its worker), nothing would ever record the end: the
run would be crashed by the zombie automation while its Slurm job ran on unwatched. When only the
process died, its worker records the run Crashed at once, and the Slurm job runs on all the same.

This puts such a run (and a Crashed one whose Slurm job still runs) back to Scheduled; the host's worker starts it again, and the new attempt
re-attaches to the Slurm job the earlier one submitted, from where its output was mirrored
(flows/slurm_run.py, core/slurm_watch.py): a job that ended meanwhile is recorded as it ended.
Only hosts whose worker runs under this ``make up`` (``start_worker``) are looked at, each
cluster asked through its host's transport (this machine, or its login node over ssh); a watcher is alive while any process here carries its run id (Prefect's
``PREFECT__FLOW_RUN_ID``), which also keeps watchers that outlived a stop of ``make up``.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from core import slurm
from core.layout import DataRoot
from core.slurm_transport import LOCAL, Transport
from core.slurm_watch import read_watch
from core.prefect_rest import PrefectRest

log = logging.getLogger("opeva.reconcile")

GRACE_SECONDS = 30.0  # a worker proposes Pending before it starts the process: give it time
PASS_SECONDS = 15.0
REATTACH = "Re-attaching"


def local_slurm_pools() -> dict[str, Transport]:
    """Slurm hosts whose watchers run on this machine, under this ``make up``: name -> where its
    Slurm commands run (this machine, or the host's login node over ssh)."""
    from core.hosts import load_hosts

    return {h.name: h.slurm.transport() for h in load_hosts().hosts if h.kind == "slurm" and h.start_worker and h.slurm}


def live_watchers(proc: Path = Path("/proc")) -> set[str]:
    """Run ids of the flow processes alive on this machine, among processes of this uid only (a
    Slurm job runs as another: it cannot pass for a watcher)."""
    found: set[str] = set()
    me = os.geteuid()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != me:
                continue
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for var in environ.split(b"\0"):
            if var.startswith(b"PREFECT__FLOW_RUN_ID="):
                found.add(var.split(b"=", 1)[1].decode(errors="replace"))
    return found


def _age(run: dict) -> float:
    stamp = (run.get("state") or {}).get("timestamp")
    if not stamp:
        return float("inf")
    return (datetime.now(timezone.utc) - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds()


def _crashed_while_running(prefect: PrefectRest, pools: list[str], grace: float, data_root: Path, via: Transport) -> list[dict]:
    """Crashed runs whose Slurm job ended *after* the crash (the watcher died while the job ran, and
    no pass came before the job's end), while the controller still holds the job. Only those with
    an open checkpoint: the next attempt follows that job to its recorded end, never a new sbatch.
    A run crashed again after its job ended is not picked up again (its crash is later than the end)."""
    try:
        ended = slurm.ended_jobs(via)
    except slurm.SlurmError as exc:
        log.warning("squeue: %s", exc)
        return []
    if not ended:
        return []
    found = []
    for run in prefect.runs(ids=ended, state_types=("CRASHED",), pools=pools):
        watch = read_watch(DataRoot(data_root).job(run["id"]).dir)
        if _age(run) >= grace and _age(run) > time.time() - ended[run["id"]][1] and watch is not None and not watch.ended \
                and watch.slurm_job_id == ended[run["id"]][0]:
            found.append(run)
    return found


def reattach_orphans(prefect: PrefectRest, pools: list[str], grace: float = GRACE_SECONDS, data_root: Path | None = None,
                     via: Transport = LOCAL) -> list[str]:
    """Reschedule the runs of ``pools`` without a watcher process: Pending or Running ones, and
    Crashed ones whose Slurm job still runs (the worker saw its watcher die, or the zombie
    automation crashed it) or ended after the crash (with ``data_root``: see
    :func:`_crashed_while_running`). ``pools`` share one cluster, reached through ``via``. Their ids."""
    if not pools:
        return []
    live = [r for r in prefect.runs(state_types=("PENDING", "RUNNING"), pools=pools) if _age(r) >= grace]
    try:
        running_in_slurm = slurm.live_jobs(via)
    except slurm.SlurmError as exc:  # the controller away: the Pending/Running part still holds
        log.warning("squeue: %s", exc)
        running_in_slurm = {}
    crashed = [r for r in prefect.runs(ids=running_in_slurm, state_types=("CRASHED",), pools=pools) if _age(r) >= grace] if running_in_slurm else []
    if data_root is not None:
        crashed += _crashed_while_running(prefect, pools, grace, data_root, via)
    if not live and not crashed:
        return []
    alive = live_watchers()
    moved: list[str] = []
    for run in live + crashed:
        if run["id"] in alive:
            continue
        status = prefect.set_state(run["id"], "SCHEDULED", REATTACH,
                                   "Its watcher process is gone; the next attempt re-attaches to its Slurm job", force=True)
        if status == "ACCEPT":
            moved.append(run["id"])
    return moved


class SlurmReattacher:
    """What ``make up`` holds for Slurm hosts: a pass at start (no worker yet: no grace) and every PASS_SECONDS."""

    def __init__(self, api_url: str, auth: str | None, pools: list[str] | dict[str, Transport], data_root: Path | None = None) -> None:
        self.prefect = PrefectRest(api_url, auth)
        self.pools = pools if isinstance(pools, dict) else dict.fromkeys(pools, LOCAL)
        self.data_root = data_root
        self.next_pass = time.monotonic() + PASS_SECONDS

    def _pass(self, grace: float) -> list[str]:
        """One pass per cluster (the pools reached the same way ask their Slurm once)."""
        groups: dict[str, tuple[Transport, list[str]]] = {}
        for pool, via in self.pools.items():
            groups.setdefault(repr(via), (via, []))[1].append(pool)
        moved: list[str] = []
        for via, pools in groups.values():
            moved += reattach_orphans(self.prefect, pools, grace=grace, data_root=self.data_root, via=via)
        return moved

    def at_start(self) -> list[str]:
        return self._pass(0)

    def tick(self) -> None:
        """One pass when due; never raises (a failed pass is tried again at the next)."""
        if time.monotonic() < self.next_pass:
            return
        self.next_pass = time.monotonic() + PASS_SECONDS
        try:
            moved = self._pass(GRACE_SECONDS)
        except Exception as exc:  # noqa: BLE001 (the server restarting)
            log.warning("Slurm re-attach pass failed: %s", exc)
            return
        if moved:
            print(f"{datetime.now():%H:%M:%S} reconcile: {len(moved)} Slurm job(s) re-attached: {', '.join(moved)}", flush=True)
