"""``GET /compare/plot.png``: several jobs' KPIs or learning curves as one PNG.

Why a cache keyed by each job's Prefect state: rendering costs a few hundred ms of CPU on this
machine, and a finished job's KPI table and MLflow history no longer change, so a chart of the
same jobs in the same states is the same chart. A set with an unfinished job may still change
without a new state (its MLflow run logs on), so such entries live only UNFINISHED_TTL seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from api.errors import ApiError
from api.gateway import PrefectGateway
from api.usecases.compare import job_ids
from api.usecases.mlflow_link import SLACK_MS
from core.kpis import read_job_kpis, side_by_side
from core.layout import DataRoot
from core.mlflow_runs import MlflowUnavailable, find_run, metric_history
from core.settings import PlatformSettings

Kind = Literal["kpis", "curves"]
CACHE_ENTRIES = 64  # PNGs of ~50-100 KB: a few MB at most
UNFINISHED_TTL = 10.0
DEFAULT_METRIC = "train_electricity_cost"  # OPEVA's simulator logs it every training episode


@dataclass(frozen=True)
class Plot:
    png: bytes
    points: dict[str, int]  # job id -> points drawn (curves only)


_cache: OrderedDict[tuple, tuple[float, Plot]] = OrderedDict()


def _cached(key: tuple) -> Plot | None:
    hit = _cache.get(key)
    if hit is None or hit[0] < time.monotonic():
        _cache.pop(key, None)
        return None
    _cache.move_to_end(key)
    return hit[1]


def _store(key: tuple, plot: Plot, ttl: float) -> None:
    _cache[key] = (time.monotonic() + ttl, plot)
    _cache.move_to_end(key)
    while len(_cache) > CACHE_ENTRIES:
        _cache.popitem(last=False)


def _label(run) -> str:
    return f"{run.name or 'job'} ({str(run.id)[:8]})"


async def plot(gateway: PrefectGateway, storage: DataRoot, jobs: str, kind: Kind, metric: str | None) -> Plot:
    ids = job_ids(jobs)
    runs = await asyncio.gather(*(gateway.read_run(j) for j in ids))  # an unknown id: 404 naming it
    final = all(r.state is not None and r.state.is_final() for r in runs)
    key = (tuple(str(r.id) for r in runs), kind, metric,
           tuple((str(r.state_id), r.end_time.isoformat() if r.end_time else None) for r in runs))
    hit = _cached(key)
    if hit is not None:
        return hit
    made = await (_kpis(runs, storage) if kind == "kpis" else _curves(runs, metric))
    _store(key, made, float("inf") if final else UNFINISHED_TTL)
    return made


def _charts():  # noqa: ANN202 (the module)
    """core.compare_plot, imported at the first chart: matplotlib adds about 27 MiB to a process, and
    every API process would carry it from its start though few ever draw (bench/log_flood.py
    measures the API's peak, issue 21: at most 200 MiB)."""
    from core import compare_plot

    return compare_plot


async def _kpis(runs: list, storage: DataRoot) -> Plot:
    def render() -> bytes:
        compare_plot = _charts()
        tables = {str(r.id): read_job_kpis(storage.job(str(r.id)).dir) for r in runs}
        rows = dict(side_by_side(tables))
        shown = compare_plot.headline_kpis(list(rows))
        return compare_plot.kpi_chart([_label(r) for r in runs], [(k, list(rows[k].values())) for k in shown],
                                      "District KPIs (lower is better for cost, energy and emissions)")

    return Plot(png=await asyncio.to_thread(render), points={})


async def _curves(runs: list, metric: str | None) -> Plot:
    settings = PlatformSettings()
    if not settings.mlflow:
        raise ApiError(409, "the platform runs no MLflow server (OPEVA_MLFLOW=0): there are no learning curves to draw")

    def render() -> Plot:
        compare_plot = _charts()
        found = {}
        for r in runs:
            not_before = int(r.created.timestamp() * 1000) - SLACK_MS if r.created else 0
            run = find_run(settings.mlflow_url, settings.mlflow_browser_url, str(r.id), not_before)
            if run is None:
                raise ApiError(404, f"job {r.id} has no MLflow run (none is tagged opeva.job_id={r.id})")
            found[str(r.id)] = run
        key = metric or _common_metric(found)
        series = []
        for r in runs:
            if key not in found[str(r.id)]["metric_keys"]:
                raise ApiError(409, f"job {r.id}'s MLflow run has no metric {key!r}; it has {found[str(r.id)]['metric_keys'][:20]}")
            series.append(compare_plot.Series(_label(r), metric_history(settings.mlflow_url, found[str(r.id)]["run_id"], key)))
        png = compare_plot.curves_chart(series, key, f"Learning curves: {key}")
        return Plot(png=png, points={str(r.id): len(s.points) for r, s in zip(runs, series)})

    try:
        return await asyncio.to_thread(render)
    except MlflowUnavailable as exc:
        raise ApiError(503, str(exc)) from exc
    except ValueError as exc:  # a history over the bound
        raise ApiError(409, str(exc)) from exc


def _common_metric(found: dict[str, dict]) -> str:
    common = set.intersection(*(set(run["metric_keys"]) for run in found.values()))
    if not common:
        raise ApiError(409, "these jobs' MLflow runs share no metric; name one with ?metric=")
    return DEFAULT_METRIC if DEFAULT_METRIC in common else min(common)
