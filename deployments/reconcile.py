"""After ``make up`` starts again: every job is final or live, never both, and no container is left
without a live run.

The rule, and why:

- **Stopping ``make up`` leaves running jobs running.** Their supervisor containers belong to the
  Docker engine, not to ``make up``; they keep computing, retry their reports while the Prefect
  server is away, and report again once it is back. Killing them on every restart (an upgrade, a
  config change) would throw away hours of simulation for nothing.
- **At start, before any worker runs** (:func:`reconcile_at_start`), nobody else owns a job, so
  each run that Prefect holds as Pending, Running or Cancelling on a host whose engine is this
  machine's is looked at once:
  its container runs -> it is *live*: re-attached (it reports to Prefect by itself; the zombie
  automation still crashes it if its heartbeats stop). Its container exited or is gone -> nothing
  will ever report it: it is made final at once, Crashed with ``error_code=host_lost`` and the
  container's exit code (a Cancelling one is recorded Cancelled: its stop was asked), and its
  containers are removed. A job that finished while the platform was down is therefore
  ``failed``/host_lost; its files are intact and ``POST /ops/jobs/{id}/recover`` makes it finished.
- **While ``make up`` runs** (:func:`reconcile_pass`, every ``PASS_SECONDS`` from the supervisor
  loop) a container whose run has been final for ``GRACE_SECONDS`` (``RUNNING_GRACE_SECONDS`` if it
  still runs: a re-attached supervisor whose run was crashed meanwhile, a killed API's stop check)
  is killed and removed, with its simulators;
  a run whose supervisor exited ``GRACE_SECONDS`` ago without a final state (a re-attached job:
  no worker watches its container) is crashed the same way. The grace leaves the normal path alone:
  a finishing supervisor ships its logs after its Completed, the worker reads its exit code.
- Only runs this Prefect server knows are touched: the engine is shared (other platforms, other
  users' containers), so a container whose run is unknown here is not ours and is left alone.

A late report from a container whose run was made final cannot undo it: deployments/keep_final.py.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from core import containers
from core.prefect_rest import PrefectRest

log = logging.getLogger("opeva.reconcile")

PREFECT_RUN_LABEL = "io.prefect.flow-run-id"  # prefect-docker's label on the supervisor container
LIVE_TYPES = ("PENDING", "RUNNING", "CANCELLING")
FINAL_TYPES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
GRACE_SECONDS = 30.0
RUNNING_GRACE_SECONDS = 60.0  # the OPEVA API's stop check gives a stopped supervisor as long before killing it
PASS_SECONDS = 15.0
HOST_LOST = "error_code=host_lost: "  # core/failures.py reads this prefix


@dataclass
class Report:
    reattached: list[str] = field(default_factory=list)  # run ids whose containers run: left live
    made_final: list[str] = field(default_factory=list)  # run ids crashed (or recorded Cancelled)
    removed: list[str] = field(default_factory=list)  # container names removed

    def __str__(self) -> str:
        return (f"{len(self.reattached)} running job(s) re-attached, {len(self.made_final)} without a container made final, "
                f"{len(self.removed)} container(s) removed")


def _engine_seconds(value: str | None) -> float | None:
    """Seconds since the epoch of a UTC timestamp from Docker (nanoseconds, ``Z``) or Prefect (``+00:00``)."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,6})?", value or "")
    if not match or value.startswith("0001"):
        return None
    return datetime.fromisoformat(match.group(1) + (match.group(2) or "")).replace(tzinfo=timezone.utc).timestamp()


def _run_of(container: Any) -> str | None:
    labels = container.labels or {}
    if labels.get(containers.ROLE) == containers.SIMULATOR_ROLE:
        return labels.get(containers.FLOW_RUN_ID)
    if labels.get(containers.ROLE) == containers.SUPERVISOR_ROLE:
        return labels.get(PREFECT_RUN_LABEL)
    return None


def _job_containers(engine: Any) -> dict[str, list[Any]]:
    """Run id -> its supervisor and simulator containers on this engine."""
    by_run: dict[str, list[Any]] = {}
    for c in engine.containers.list(ignore_removed=True, all=True, filters={"label": containers.ROLE}):
        if run_id := _run_of(c):
            by_run.setdefault(run_id, []).append(c)
    return by_run


def _remove(engine: Any, found: list[Any], report: Report) -> None:
    from docker.errors import APIError, NotFound

    for c in sorted(found, key=lambda c: c.labels.get(containers.ROLE) != containers.SUPERVISOR_ROLE):
        try:
            c.remove(force=True)  # SIGKILL then remove: the supervisor's PID namespace takes its simulator along
            report.removed.append(c.name)
        except NotFound:
            pass
        except APIError as exc:
            if "already in progress" not in str(exc):
                log.warning("could not remove container %s: %s", c.name, exc)


def _supervisor(found: list[Any]) -> Any | None:
    return next((c for c in found if c.labels.get(containers.ROLE) == containers.SUPERVISOR_ROLE), None)


def _make_final(prefect: PrefectRest, run: dict[str, Any], why: str, report: Report) -> None:
    if run["state_type"] == "CANCELLING":
        status = prefect.set_state(run["id"], "CANCELLED", "Cancelled", f"Stopped on request; {why}")
    else:
        status = prefect.set_state(run["id"], "CRASHED", "Crashed", f"{HOST_LOST}{why}")
    if status == "ACCEPT":  # otherwise it became final by itself meanwhile: that state stands
        report.made_final.append(run["id"])


def _exit_words(sup: Any | None) -> str:
    if sup is None:
        return "its container was gone"
    state = sup.attrs.get("State") or {}
    return f"its container had exited with code {state.get('ExitCode')} and nothing reported it"


def reconcile_at_start(prefect: PrefectRest, engine: Any, pools: list[str]) -> Report:
    """Before the workers start: each unfinished run of ``pools`` is re-attached or made final."""
    report = Report()
    by_run = _job_containers(engine)
    # no pools: no run of this engine to look at (an empty filter would mean every pool's, Slurm and control included)
    for run in prefect.runs(state_types=LIVE_TYPES, pools=pools) if pools else []:
        found = by_run.pop(run["id"], [])
        sup = _supervisor(found)
        if sup is not None and sup.status == "running":
            report.reattached.append(run["id"])
            continue
        _make_final(prefect, run, f"the platform was stopped while the job ran and, when it started again, {_exit_words(sup)}.", report)
        _remove(engine, found, report)
    _remove_final(prefect, engine, by_run, report, 0.0, 0.0)  # containers of runs already final: no live owner
    return report


def _remove_final(prefect: PrefectRest, engine: Any, by_run: dict[str, list[Any]], report: Report, grace: float,
                  running_grace: float) -> None:
    """Remove the containers of runs (known here) final for ``grace`` seconds (``running_grace`` for a running one:
    a supervisor whose run just ended may still be shipping its logs)."""
    if not by_run:
        return
    now = time.time()
    for run in prefect.runs(ids=by_run):
        if run["state_type"] not in FINAL_TYPES:
            continue
        since = _engine_seconds((run.get("state") or {}).get("timestamp"))
        age = now - since if since is not None else float("inf")
        _remove(engine, [c for c in by_run[run["id"]] if age >= (running_grace if c.status == "running" else grace)], report)


def reconcile_pass(prefect: PrefectRest, engine: Any, grace: float = GRACE_SECONDS) -> Report:
    """While running: containers of final runs removed; unfinished runs whose supervisor exited long ago made final."""
    report = Report()
    by_run = _job_containers(engine)
    if not by_run:
        return report
    now = time.time()
    for run in prefect.runs(ids=by_run, state_types=LIVE_TYPES):
        found = by_run.pop(run["id"])
        sup = _supervisor(found)
        ended = _engine_seconds((sup.attrs.get("State") or {}).get("FinishedAt")) if sup is not None and sup.status == "exited" else None
        if ended is not None and now - ended >= grace:
            _make_final(prefect, run, f"{_exit_words(sup)} for {now - ended:.0f} s (no worker watched it).", report)
            _remove(engine, found, report)
    _remove_final(prefect, engine, by_run, report, grace, RUNNING_GRACE_SECONDS)
    return report


class Reconciler:
    """What ``make up`` holds: the engine, Prefect, and when the next pass is due."""

    def __init__(self, api_url: str, auth: str | None, pools: list[str], engine_url: str | None = None) -> None:
        from core.engines import Engine, open_client

        # None: this machine's engine; a unix:// socket: a host's own engine on this machine (a lab host, make lab).
        # Opened where every engine client is (core/engines.py), so a URL is never mistaken for the local socket.
        self.engine = open_client(Engine(url=engine_url), timeout=30)
        self.prefect = PrefectRest(api_url, auth)
        self.pools = pools
        self.next_pass = time.monotonic() + PASS_SECONDS

    def at_start(self) -> Report:
        return reconcile_at_start(self.prefect, self.engine, self.pools)

    def close(self) -> None:
        """The engine's and Prefect's connections (a reconciler that could not do its first pass is dropped)."""
        self.engine.close()
        self.prefect.close()

    def tick(self) -> None:
        """One pass when due; never raises (a failed pass is tried again at the next)."""
        if time.monotonic() < self.next_pass:
            return
        self.next_pass = time.monotonic() + PASS_SECONDS
        try:
            report = reconcile_pass(self.prefect, self.engine)
        except Exception as exc:  # noqa: BLE001 (the server restarting, the engine busy)
            log.warning("reconcile pass failed: %s", exc)
            return
        if report.made_final or report.removed:
            print(f"{datetime.now():%H:%M:%S} reconcile: {report}", flush=True)


def local_docker_pools() -> dict[str | None, list[str]]:
    """The hosts whose jobs run on an engine of this machine, by engine: None for the default engine
    (no ``docker_url``, or its usual socket), else the host's own ``unix://`` socket (a lab host's
    engine, deployments/lab_net.py): each engine gets its own reconciler, so a host's containers are
    looked for, and removed, on that host's engine and no other."""
    import os

    from core.hosts import load_hosts

    default = {None, "unix:///var/run/docker.sock", "unix:///run/docker.sock", os.environ.get("DOCKER_HOST") or None}
    out: dict[str | None, list[str]] = {None: []}  # the default engine's pass runs even without a host of its own
    for h in load_hosts().hosts:
        if h.kind == "docker" and (not h.docker_url or h.docker_url.startswith("unix://")):
            out.setdefault(None if h.docker_url in default else h.docker_url, []).append(h.name)
    return out
