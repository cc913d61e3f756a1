"""Run comparison: several finished jobs' KPIs side by side, as JSON or a PNG. Parse, call the use case, return."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Response

from api.deps import Gateway, Storage
from api.models_compare import CompareOut
from api.responses import errors
from api.usecases import compare as usecase
from api.usecases import compare_plot as plot_usecase

router = APIRouter(tags=["compare"])


@router.get("/compare", response_model=CompareOut, responses=errors(400, 404), summary="Jobs' district KPIs side by side (2 to 10 jobs)")
async def compare(gateway: Gateway, storage: Storage,
                  jobs: str = Query(..., max_length=500, description="Comma-separated job ids, e.g. ?jobs=<id1>,<id2>")) -> CompareOut:
    return await usecase.compare(gateway, storage, jobs)


@router.get(
    "/compare/plot.png", response_class=Response, summary="Jobs' district KPIs or learning curves as one PNG (2 to 10 jobs)",
    responses={200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                     "description": "A PNG; for curves, X-Opeva-Series-Points says how many points each job's line has"},
               **errors(400, 404, 409)},
)
async def compare_plot(gateway: Gateway, storage: Storage,
                       jobs: str = Query(..., max_length=500, description="Comma-separated job ids, e.g. ?jobs=<id1>,<id2>"),
                       kind: Literal["kpis", "curves"] = Query("kpis", description="kpis: district KPIs as bars; curves: MLflow learning curves"),
                       metric: str | None = Query(None, max_length=250, description="curves: the MLflow metric (default train_electricity_cost, else the first one all runs share)"),
                       ) -> Response:
    made = await plot_usecase.plot(gateway, storage, jobs, kind, metric)
    headers = {"X-Opeva-Series-Points": ",".join(f"{job}={n}" for job, n in made.points.items())} if made.points else {}
    return Response(made.png, media_type="image/png", headers=headers)
