"""Run comparison: several finished jobs' KPIs side by side. Parse, call the use case, return."""

from __future__ import annotations

from fastapi import APIRouter, Query

from api.deps import Gateway, Storage
from api.models_compare import CompareOut
from api.responses import errors
from api.usecases import compare as usecase

router = APIRouter(tags=["compare"])


@router.get("/compare", response_model=CompareOut, responses=errors(400, 404), summary="Jobs' district KPIs side by side (2 to 10 jobs)")
async def compare(gateway: Gateway, storage: Storage,
                  jobs: str = Query(..., max_length=400, description="Comma-separated job ids, e.g. ?jobs=<id1>,<id2>")) -> CompareOut:
    return await usecase.compare(gateway, storage, jobs)
