"""Health of each component, separately: a user can see what is down."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.deps import get_gateway, get_storage
from api.gateway import PrefectGateway
from blocks.sites import MongoSites
from core.layout import DataRoot

router = APIRouter(tags=["health"])


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


@router.get("/health", summary="Status of the Prefect API, shared storage and MongoDB")
async def health(request: Request, gateway: PrefectGateway = Depends(get_gateway), storage: DataRoot = Depends(get_storage)) -> JSONResponse:
    prefect_ok, storage_info, mongo_info = await asyncio.gather(
        gateway.healthy(), asyncio.to_thread(_storage_status, storage), asyncio.to_thread(_mongo_status, request.app.state.mongo)
    )
    components = {"prefect": {"status": "ok" if prefect_ok else "error"}, "storage": storage_info, "mongodb": mongo_info}
    core_ok = prefect_ok and storage_info["status"] == "ok"
    overall = "ok" if core_ok and mongo_info["status"] == "ok" else ("degraded" if core_ok else "error")
    return JSONResponse({"status": overall, "components": components}, status_code=200 if core_ok else 503)
