"""The OPEVA REST API: a thin FastAPI layer over Prefect.

Run with ``uvicorn api.main:app``. Every route but ``/health`` needs a bearer
token when ``OPEVA_API_TOKENS`` is set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from prefect.client.orchestration import get_client

from api import errors, security
from api.deps import HostsCache, require_token
from api.gateway import PrefectGateway
from api.routers import configs, datasets, health, hosts, jobs, sites
from core.settings import PlatformSettings, project_version
from blocks.sites import aload_mongo
from blocks.storage import aload_storage

MAX_BODY_BYTES = 5 * 1024 * 1024


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = PlatformSettings()
    app.state.settings = settings
    app.state.hosts = HostsCache(settings.hosts_file)
    async with get_client() as client:
        app.state.gateway = PrefectGateway(client)
        app.state.storage = await aload_storage()
        app.state.storage.ensure_layout()
        app.state.mongo = await aload_mongo()
        app.state.mongo_client = None
        yield
        if app.state.mongo_client is not None:
            app.state.mongo_client.close()


def create_app() -> FastAPI:
    app = FastAPI(
        title="OPEVA API",
        version=project_version(),
        description="Simulation jobs and dataset builds as Prefect flow runs. Job ids are Prefect flow-run ids.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(errors.BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    security.install(app, max_body_bytes=MAX_BODY_BYTES)  # Host allow-list, docs, JSON limits, users
    app.include_router(health.router)
    protected = [Depends(require_token)]
    for module in (jobs, configs, hosts, sites, datasets):
        app.include_router(module.router, dependencies=protected)
    return app


app = create_app()
