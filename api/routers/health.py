"""Health of each component, separately: a user can see what is down."""

from __future__ import annotations

import asyncio
import os
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from api.deps import Gateway, Storage
from blocks.sites import MongoSites
from core.layout import DataRoot

router = APIRouter(tags=["health"])


class ComponentHealth(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["ok", "error"]


class HealthOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok", "components": {"prefect": {"status": "ok"}, "storage": {"status": "ok", "path": "/srv/opeva"}, "mongodb": {"status": "ok"}}}]})
    status: Literal["ok", "degraded", "error"]
    components: dict[str, ComponentHealth]


def _storage_status(storage: DataRoot) -> dict[str, Any]:
    root = storage.root
    if not root.is_dir():
        return {"status": "error", "path": str(root), "detail": "shared data root does not exist"}
    if not os.access(root, os.W_OK):
        return {"status": "error", "path": str(root), "detail": "shared data root is not writable"}
    return {"status": "ok", "path": str(root)}


def _mongo_status(sites: MongoSites) -> dict[str, Any]:
    try:
        with sites.client(timeout_ms=1500) as client:
            client.admin.command("ping")
        return {"status": "ok"}
    except Exception as exc:  # any failure is reported, not raised: health must answer
        return {"status": "error", "detail": f"{type(exc).__name__}: {str(exc)[:200]}"}


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut, "description": "Prefect or storage is down"}},
            summary="Status of the Prefect API, shared storage and MongoDB")
async def health(request: Request, gateway: Gateway, storage: Storage) -> JSONResponse:
    prefect_ok, storage_info, mongo_info = await asyncio.gather(
        gateway.healthy(), asyncio.to_thread(_storage_status, storage), asyncio.to_thread(_mongo_status, request.app.state.mongo)
    )
    components = {"prefect": {"status": "ok" if prefect_ok else "error"}, "storage": storage_info, "mongodb": mongo_info}
    core_ok = prefect_ok and storage_info["status"] == "ok"
    overall = "ok" if core_ok and mongo_info["status"] == "ok" else ("degraded" if core_ok else "error")
    return JSONResponse({"status": overall, "components": components}, status_code=200 if core_ok else 503)
