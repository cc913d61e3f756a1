"""Sweeps: submit one (a ``run-sweep/control`` flow run), read its live table and summary, stop it.

A sweep's id is its parent flow run's id. The API keeps nothing of its own: the trials are
re-derived from the parent's parameters (core/sweep.py expands them the same way the flow
does), the jobs are the runs tagged ``sweep:<id>`` (the trial is in their idempotency key),
and each finished trial's objective is read from its job's files.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import UUID

from prefect.client.schemas.objects import FlowRun, StateType
from pydantic import ValidationError

from api.errors import ApiError
from api.gateway import SIMULATION_FLOW, SWEEP_FLOW, DeploymentMissing, JobNotFound, PrefectGateway, opeva_status
from api.models_sweeps import SweepOut, SweepRequest, SweepStopped, SweepSubmitted, SweepTrialOut
from api.security import User, require_manage
from api.stopper import ensure_container_gone, kill_now
from api.usecases.jobs import iso
from core import sweep as sw
from core.experiment import resolve_experiment
from core.hosts import CONTROL_POOL, HostsFile
from core.layout import DataRoot

STOP_DEADLINE_SECONDS = 9.0  # every child final within this (Prefect's own cascade can take 20 s)
FORCE_AFTER_SECONDS = 5.0  # a started child still not final then is ended by force, its containers killed
QUEUED = (StateType.SCHEDULED, StateType.PAUSED)


def _spec(body: SweepRequest) -> sw.SweepSpec:
    return sw.SweepSpec(grid=body.grid, random=body.random, n_random=body.n_random, random_seed=body.random_seed,
                        seeds=body.seeds, seed_key=body.seed_key, objective=body.objective)


async def _check_hosts(gateway: PrefectGateway, hosts: HostsFile, asked: list[str] | str) -> None:
    if asked == "auto":
        return
    if not asked:
        raise ApiError(400, "hosts is empty: name at least one host, or \"auto\"")
    for name in asked:
        if hosts.get(name) is None:
            raise ApiError(400, f"unknown host {name!r}; known hosts: {', '.join(hosts.names)}", known_hosts=hosts.names)
        if hosts.get(name).data == "local":  # type: ignore[union-attr]
            raise ApiError(400, f"host {name!r} has data: local: a sweep's trials run on hosts that share the data root (docs/data-local.md)")
        try:
            await gateway.deployment(SIMULATION_FLOW, name)
        except DeploymentMissing:
            raise ApiError(400, f"host {name!r} has no run-simulation deployment; run `make setup`") from None


async def submit(gateway: PrefectGateway, storage: DataRoot, hosts: HostsFile, body: SweepRequest) -> SweepSubmitted:
    """Everything is checked before the parent run is made: a 400 starts nothing."""
    if (body.base_config is None) == (body.config is None):
        raise ApiError(400, "give exactly one of base_config (a file in configs/) and config (inline)")
    resolved = await asyncio.to_thread(resolve_experiment, storage, config=body.config, config_path=body.base_config, save_as=None, job_id=None)
    try:
        trials = await asyncio.to_thread(sw.check, _spec(body), resolved.config)
    except sw.SweepError as exc:
        raise ApiError(400, str(exc)) from None
    await _check_hosts(gateway, hosts, body.hosts)
    parameters: dict[str, Any] = body.model_dump(mode="json", exclude={"base_config", "config"})
    if body.base_config is not None:
        parameters["base_config"] = resolved.source
    else:
        parameters["config"] = resolved.config
    submitted = await gateway.submit(SWEEP_FLOW, CONTROL_POOL, parameters, name=body.name and f"sweep-{body.name}",
                                     tags=["opeva", "sweep"] + ([f"submitted-by:{body.submitted_by}"] if body.submitted_by else []))
    return SweepSubmitted(sweep_id=str(submitted.id), n_jobs=len(trials), status=submitted.status)


async def _parent(gateway: PrefectGateway, sweep_id: str) -> FlowRun:
    try:
        run = await gateway.read_run(sweep_id)
    except JobNotFound:
        raise ApiError(404, f"no sweep with id {sweep_id!r}") from None
    if run.deployment_id is None or run.deployment_id != await gateway.deployment_id(SWEEP_FLOW, CONTROL_POOL):
        raise ApiError(404, f"no sweep with id {sweep_id!r} (that run is not a run-sweep run)")
    return run


def _trials(parent: FlowRun) -> tuple[sw.SweepSpec | None, list[sw.Trial]]:
    """The parent's trials from its parameters (none when they do not make a sweep: its run fails too)."""
    params = parent.parameters or {}
    try:
        spec = sw.SweepSpec(grid=params.get("grid") or {}, random=params.get("random") or {}, n_random=params.get("n_random") or 0,
                            random_seed=params.get("random_seed") or 0, seeds=params.get("seeds") or [0],
                            seed_key=params.get("seed_key") or sw.SEED_KEY, objective=params.get("objective"))
    except ValidationError:
        return None, []
    return spec, sw.expand(spec) if sw.count_trials(spec) <= sw.MAX_TRIALS else []


async def _children(gateway: PrefectGateway, sweep_id: str) -> dict[int, FlowRun]:
    runs, _ = await gateway.list_runs(tag=sw.SWEEP_TAG + sweep_id, limit=None, flows=[SIMULATION_FLOW])
    return {t: r for r in runs if (t := sw.trial_of_key(r.idempotency_key, sweep_id)) is not None}


async def rows(gateway: PrefectGateway, storage: DataRoot, sweep_id: str) -> tuple[FlowRun, sw.SweepSpec | None, list[sw.TrialRow]]:
    parent = await _parent(gateway, sweep_id)
    spec, trials = _trials(parent)
    children = await _children(gateway, str(parent.id))
    metric = spec.objective.metric if spec and spec.objective else None
    out = []
    for t in trials:
        row = sw.TrialRow(t.index, t.point, t.params, t.seed)
        run = children.get(t.index)
        if run is not None:
            row.host, row.job_id, row.status = run.work_pool_name, str(run.id), opeva_status(run)
            row.started_at = iso(run.start_time) if run.run_count else None
            row.finished_at = iso(run.end_time) if run.state and run.state.is_final() else None
            if metric and row.status == "finished":
                row.objective = await asyncio.to_thread(sw.job_objective, storage.job(str(run.id)).dir, metric)
        out.append(row)
    return parent, spec, out


async def table(gateway: PrefectGateway, storage: DataRoot, sweep_id: str) -> SweepOut:
    parent, spec, trial_rows = await rows(gateway, storage, sweep_id)
    params = parent.parameters or {}
    counts: dict[str, int] = {}
    for r in trial_rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    best = sw.best_trial(trial_rows, spec.objective if spec else None)
    return SweepOut(
        sweep_id=str(parent.id), name=params.get("name"), status=opeva_status(parent), n_jobs=len(trial_rows),
        max_parallel=params.get("max_parallel") or 2, hosts=params.get("hosts") or "auto", objective=spec.objective if spec else None,
        counts=counts, best_trial=best.trial if best else None, trials=[SweepTrialOut(**vars(r)) for r in trial_rows],
    )


async def summary_csv(gateway: PrefectGateway, storage: DataRoot, sweep_id: str) -> str:
    _, spec, trial_rows = await rows(gateway, storage, sweep_id)
    keys = [*spec.grid, *spec.random] if spec else []
    return sw.summary_csv(sw.summarise(trial_rows), keys, spec.objective.metric if spec and spec.objective else None)


async def _end(gateway: PrefectGateway, run: FlowRun, why: str) -> bool:
    """Cancel one run: at once when it has not started, else ask its container's keeper. True: a started one was asked."""
    if run.state and run.state.type in QUEUED:
        await gateway.cancel_now(run.id, why)
        return False
    if run.state and run.state.type in (StateType.PENDING, StateType.RUNNING):
        return await gateway.request_cancel(run.id, why)
    return run.state is not None and run.state.type == StateType.CANCELLING


async def stop(gateway: PrefectGateway, sweep_id: str, user: User | None = None) -> tuple[SweepStopped, list[UUID]]:
    """Children first, then the parent, then children again until every one is final: the parent
    may have started one before it saw the stop. Started children still running after
    FORCE_AFTER_SECONDS are ended by force and their containers killed. Returns the answer and the
    runs whose containers must be checked afterwards."""
    parent = await _parent(gateway, sweep_id)
    if user is not None:
        require_manage(user, (parent.parameters or {}).get("submitted_by"), str(parent.id))
    why = f"Sweep {parent.id} stopped through the OPEVA API"
    await gateway.add_tags(parent, [sw.STOP_TAG])  # the parent starts no more trials from its next poll on
    started = time.monotonic()
    asked: set[UUID] = set()
    cancelled: set[UUID] = set()
    parent_done = False
    while True:
        live = [r for r in (await _children(gateway, str(parent.id))).values() if not (r.state and r.state.is_final())]
        for run in live:
            cancelled.add(run.id)
            if run.id not in asked and await _end(gateway, run, why):
                asked.add(run.id)
        if not parent_done:  # after the first round of children, never before
            current = await gateway.read_run(str(parent.id))
            if not (current.state and current.state.is_final()):
                await _end(gateway, current, why)
            parent_done = True
        elapsed = time.monotonic() - started
        if live and elapsed > FORCE_AFTER_SECONDS:
            for run in live:
                await gateway.cancel_now(run.id, f"{why} (forced: still {opeva_status(run)} {elapsed:.0f} s after the stop)")
                await kill_now(gateway, run.id)
        if not live or elapsed > STOP_DEADLINE_SECONDS:
            break
        await asyncio.sleep(0.25)
    final = not [r for r in (await _children(gateway, str(parent.id))).values() if not (r.state and r.state.is_final())]
    current = await gateway.read_run(str(parent.id))
    message = f"Sweep stopped: {len(cancelled)} jobs cancelled" if cancelled else "Sweep stopped; no job was in flight"
    return SweepStopped(sweep_id=str(parent.id), message=message, cancelled=len(cancelled), final=final, status=opeva_status(current)), sorted(asked)


async def check_containers(gateway: PrefectGateway, run_ids: list[UUID]) -> None:
    """After the answer: every stopped child's container is really gone (api/stopper.py)."""
    await asyncio.gather(*(ensure_container_gone(gateway, run_id) for run_id in run_ids))
