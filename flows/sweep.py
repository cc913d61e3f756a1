"""``run-sweep``: one experiment of many simulation jobs, on the control pool.

The parent flow expands the sweep into trials (core/sweep.py, Prefect-free and shared with
the API), and starts each as a subflow run of ``run-simulation/<host>`` through
``run_deployment(..., as_subflow=True, idempotency_key="<sweep_id>:<trial>")`` in a sliding
window of ``max_parallel`` runs in flight, spreading them over the hosts. Why a window in the
parent and not a deployment concurrency limit: such limits leak slots on cancellation and
crash (Prefect issues 16027 and 19403), and they would limit every user of the deployment,
not this sweep.

Why it survives retries: the sweep's id is the parent's flow-run id, the same for every
attempt, and a trial's idempotency key is built from it. A retried parent (``prefect flow-run
retry``, or the UI's Retry) first adopts the children it finds (tag ``sweep:<id>``); a
child it would create again is answered by Prefect with the existing run. It never runs a
trial twice.

Why it stops cleanly: each poll reads the parent's own run; once it is Cancelling (the API's
``POST /sweeps/{id}/stop``, ``prefect flow-run cancel``, the UI) or tagged ``sweep-stop``,
no trial is started any more and the children still in flight are cancelled.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterTags, WorkPoolFilter, WorkPoolFilterName
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.runtime import flow_run as current_run
from prefect.states import Cancelled, Cancelling

from blocks.storage import load_storage
from core import sweep as sw
from core.experiment import SEED_KEY, resolve_experiment
from core.states import PHASE_LABEL, opeva_status_of

SIMULATION_FLOW = "run-simulation"


def _status(run: FlowRun) -> str:
    return opeva_status_of(run.state.type.value if run.state else None, run.run_count, (run.labels or {}).get(PHASE_LABEL))


def _final(run: FlowRun) -> bool:
    return bool(run.state and run.state.is_final())


def _hosts(client: Any, asked: list[str] | str | None) -> tuple[list[str], dict[str, int | None]]:
    """The hosts to use and their pools' concurrency: those asked (each must have a
    ``run-simulation/<host>`` deployment), or with "auto", every host with a worker online
    (every host with the deployment when none is online: the trials then wait for one)."""
    deployments = client.read_deployments()
    flows = {f.id: f.name for f in client.read_flows()}
    pools = sorted({d.work_pool_name for d in deployments if flows.get(d.flow_id) == SIMULATION_FLOW and d.work_pool_name})
    pools = [p for p in pools if p not in _data_local()]  # their trials would start without inputs (docs/data-local.md)
    if asked and asked != "auto":
        wanted = [asked] if isinstance(asked, str) else list(dict.fromkeys(asked))
        missing = [h for h in wanted if h not in pools]
        if missing:
            raise ValueError(f"unknown host {missing[0]!r}: no deployment run-simulation/{missing[0]} (hosts: {', '.join(pools)})")
        chosen = wanted
    else:
        online = [h for h in pools if any(w.status == "ONLINE" for w in client.read_workers_for_work_pool(h))]
        chosen = online or pools
    if not chosen:
        raise ValueError("no host has a run-simulation deployment; run `make setup`")
    found = {p.name: p for p in client.read_work_pools(work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=chosen)))}
    return chosen, {h: found[h].concurrency_limit if h in found else None for h in chosen}


def _data_local() -> set[str]:
    """Hosts without the shared data root: a sweep's trials never go there (their staging is the API's)."""
    from core.hosts import current_hosts

    try:
        return {h.name for h in current_hosts().hosts if h.data == "local"}
    except (OSError, ValueError):
        return set()


def _children(client: Any, sweep_id: str) -> dict[int, FlowRun]:
    """This sweep's child runs by trial (a retry adopts what earlier attempts started)."""
    flt = FlowRunFilter(tags=FlowRunFilterTags(all_=[sw.SWEEP_TAG + sweep_id]))
    runs: list[FlowRun] = []
    while True:  # pages of 200, the server's largest
        page = client.read_flow_runs(flow_run_filter=flt, limit=200, offset=len(runs))
        runs += page
        if len(page) < 200:
            break
    out: dict[int, FlowRun] = {}
    for run in runs:
        trial = sw.trial_of_key(run.idempotency_key, sweep_id)
        if trial is not None:
            out[trial] = run
    return out


def _stop_asked(client: Any, sweep_id: str) -> bool:
    me = client.read_flow_run(sweep_id)
    return sw.STOP_TAG in (me.tags or []) or bool(me.state and me.state.type in (StateType.CANCELLING, StateType.CANCELLED))


def _cancel(client: Any, runs: list[FlowRun]) -> None:
    """Children first: queued ones are Cancelled at once, started ones Cancelling (their container's keeper stops them)."""
    for run in runs:
        if _final(run):
            continue
        queued = run.state is not None and run.state.type in (StateType.SCHEDULED, StateType.PAUSED)
        client.set_flow_run_state(run.id, Cancelled(message="sweep stopped") if queued else Cancelling(message="sweep stopped"), force=queued)


def _start(trial: sw.Trial, host: str, base: dict[str, Any], spec: sw.SweepSpec, sweep_id: str, name: str, submitted_by: str | None) -> FlowRun:
    job_name = f"{name}-{trial.label}"
    parameters = {"config": sw.trial_config(base, trial, spec.seed_key), "target_host": host, "job_name": job_name, "submitted_by": submitted_by}
    return run_deployment(
        f"{SIMULATION_FLOW}/{host}", parameters=parameters, timeout=0, as_subflow=True, flow_run_name=job_name,
        idempotency_key=sw.idempotency_key(sweep_id, trial.index), tags=[sw.SWEEP_TAG + sweep_id, f"sweep-trial:{trial.index}"],
    )


def _window(client: Any, trials: list[sw.Trial], runs: dict[int, FlowRun], hosts: list[str], capacity: dict[str, int | None],
            max_parallel: int, start: Any, poll: float) -> bool:
    """Start trials while fewer than ``max_parallel`` runs are in flight, until all are final.
    Returns False when a stop was asked (in-flight children are then cancelled)."""
    log = get_run_logger()
    pending = [t for t in trials if t.index not in runs]
    started: dict[str, int] = {}
    for run in runs.values():
        started[run.work_pool_name or ""] = started.get(run.work_pool_name or "", 0) + 1
    while True:
        live = [r for r in runs.values() if not _final(r)]
        if live:
            fresh = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id for r in live])), limit=len(live))
            for run in fresh:
                runs[sw.trial_of_key(run.idempotency_key, str(current_run.id))] = run  # type: ignore[index]
            live = [r for r in runs.values() if not _final(r)]
        if _stop_asked(client, str(current_run.id)):
            log.warning("Stop asked: %d trials not started; cancelling %d in flight", len(pending), len(live))
            _cancel(client, live)
            return False
        while pending and len(live) < max_parallel:
            in_flight = {h: sum(1 for r in live if r.work_pool_name == h) for h in hosts}
            host = sw.pick_host(hosts, in_flight, capacity, started)
            trial = pending.pop(0)
            run = start(trial, host)
            runs[trial.index] = run
            started[run.work_pool_name or host] = started.get(run.work_pool_name or host, 0) + 1
            live.append(run)
            log.info("Trial %s (%s, seed %s) -> %s on %s", trial.label, sw._describe(trial.params), trial.seed, run.id, run.work_pool_name or host)
        if not pending and not live:
            return True
        time.sleep(poll)


def _rows(trials: list[sw.Trial], runs: dict[int, FlowRun], metric: str | None) -> list[sw.TrialRow]:
    storage = load_storage()
    rows = []
    for t in trials:
        run = runs.get(t.index)
        row = sw.TrialRow(t.index, t.point, t.params, t.seed)
        if run is not None:
            row.host, row.job_id, row.status = run.work_pool_name, str(run.id), _status(run)
            if metric and row.status == "finished":
                row.objective = sw.job_objective(storage.job(str(run.id)).dir, metric)
        rows.append(row)
    return rows


def _publish(sweep_id: str, rows: list[sw.TrialRow], summaries: list[sw.PointSummary], keys: list[str], metric: str | None) -> None:
    name = metric or "objective"
    create_table_artifact(
        [{"trial": r.trial, **{k: r.params.get(k) for k in keys}, "seed": r.seed, "host": r.host, "job_id": r.job_id, "status": r.status, name: r.objective}
         for r in rows],
        key=f"sweep-{sweep_id}-trials", description=f"Sweep {sweep_id}: every trial ({len(rows)})")
    create_table_artifact(
        [{"point": s.point, **{k: s.params.get(k) for k in keys}, "n": s.n, f"{name}_mean": s.mean, f"{name}_std": s.std} for s in summaries],
        key=f"sweep-{sweep_id}-summary", description=f"Sweep {sweep_id}: mean ± sample std of {name} per point over seeds ({len(summaries)} points)")


@flow(name="run-sweep", persist_result=False, log_prints=False)
def run_sweep(
    grid: dict[str, list[Any]] | None = None,
    base_config: str | None = None,
    config: dict[str, Any] | None = None,
    random: dict[str, sw.RandomRange | sw.RandomChoice] | None = None,
    n_random: int = 0,
    random_seed: int = 0,
    seeds: list[int] | None = None,
    seed_key: str = SEED_KEY,
    hosts: list[str] | str = "auto",
    max_parallel: int = 2,
    objective: sw.Objective | None = None,
    name: str | None = None,
    submitted_by: str | None = None,
    poll_seconds: float = 1.0,
) -> dict[str, Any]:
    """A sweep over ``grid`` (dotted.key -> values) and ``random`` draws, each point once per seed, from
    ``base_config`` (a file in configs/) or ``config``; at most ``max_parallel`` jobs at once over ``hosts``."""
    log = get_run_logger()
    sweep_id = str(current_run.id)
    if not 1 <= max_parallel <= sw.MAX_PARALLEL:
        raise ValueError(f"max_parallel must be 1 to {sw.MAX_PARALLEL}")
    spec = sw.SweepSpec(grid=grid or {}, random=random or {}, n_random=n_random, random_seed=random_seed,
                        seeds=seeds if seeds is not None else [0], seed_key=seed_key, objective=objective)
    storage = load_storage()
    base = resolve_experiment(storage, config=config, config_path=base_config, save_as=None, job_id=None).config
    trials = sw.check(spec, base)
    full = sw.with_reference_defaults(base)
    label = name or sweep_id.split("-")[0]
    with get_client(sync_client=True) as client:
        chosen, capacity = _hosts(client, hosts)
        runs = _children(client, sweep_id)
        log.info("Sweep %s: %d trials (%d adopted from an earlier attempt), at most %d at once over %s",
                 sweep_id, len(trials), len(runs), max_parallel, ", ".join(chosen))
        finished = _window(client, trials, runs, chosen, capacity, max_parallel,
                           lambda t, h: _start(t, h, full, spec, sweep_id, label, submitted_by), max(0.2, poll_seconds))
    metric = spec.objective.metric if spec.objective else None
    rows = _rows(trials, runs, metric)
    summaries = sw.summarise(rows)
    keys = [*spec.grid, *spec.random]
    _publish(sweep_id, rows, summaries, keys, metric)
    best, point = sw.best_trial(rows, spec.objective), sw.best_point(summaries, spec.objective)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    log.info("Sweep %s %s: %s; best trial %s", sweep_id, "done" if finished else "stopped", counts, None if best is None else best.trial)
    return {
        "sweep_id": sweep_id, "n_jobs": len(trials), "stopped": not finished, "counts": counts,
        "best_trial": None if best is None else {"trial": best.trial, "params": best.params, "seed": best.seed, "job_id": best.job_id, "value": best.objective},
        "best_point": None if point is None else {"point": point.point, "params": point.params, "mean": point.mean, "std": point.std},
    }
