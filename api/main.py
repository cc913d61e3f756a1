"""The OPEVA REST API: a thin FastAPI layer over Prefect.

Run with ``uvicorn api.main:app``. Every route but ``/health`` needs a bearer
token when ``OPEVA_API_TOKENS`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from prefect.client.orchestration import get_client

from api import cors, errors, security
from api.deps import require_token
from api.gateway import PrefectGateway
from api.job_index import JobIndex
from api.routers import (ai_manager_ui, compare, configs, dataset_schedules, deploy_bundles, deploy_inferences, datasets, health, hosts,
                         job_files, jobs, live_data, notifications, ops, organization, sites, sweeps)
from api.usecases.live_data import LiveData
from core.hosts import HostsCache
from core.settings import PlatformSettings, project_version
from blocks.sites import aload_mongo
from blocks.storage import aload_storage

MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_UPLOAD_BYTES = 2 * 1024 * 1024 * 1024  # a zipped dataset (core.datasets also caps what it extracts)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = PlatformSettings()
    app.state.settings = settings
    app.state.hosts = HostsCache(settings.hosts_file)
    async with get_client() as client:
        app.state.gateway = PrefectGateway(client)
        app.state.job_index = JobIndex(app.state.gateway)
        keeper = asyncio.create_task(_keep_index(app.state.job_index))
        app.state.storage = await aload_storage()
        app.state.storage.ensure_layout()
        app.state.mongo = await aload_mongo()
        app.state.mongo_client = None
        app.state.live = LiveData(settings.amqp_url)  # WS /ws/data (docs/live-data.md)
        try:
            yield
        finally:
            await app.state.live.close()
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            if app.state.mongo_client is not None:
                app.state.mongo_client.close()


async def _keep_index(index: JobIndex) -> None:
    """Builds the job index (listings read Prefect directly until then), then follows Prefect's events."""
    while not index.ready:
        try:
            await index.rebuild()
        except Exception as exc:  # Prefect not up yet: /jobs keeps answering from Prefect
            logging.getLogger("opeva.api").warning("job index not built yet (%s); retrying", exc)
            await asyncio.sleep(2)
    await index.follow()


def add_routes(app: FastAPI, *, shapes_2025: bool) -> None:
    """The one set of routes; ``shapes_2025`` swaps in ai-manager-ui's two re-shaped answers."""
    app.include_router(health.router)
    app.include_router(live_data.router)  # a WebSocket: its own token check (browsers send no header)
    protected = [Depends(require_token)]
    for module in (jobs, job_files, configs, hosts, ops, sites, dataset_schedules, datasets, organization, compare, deploy_bundles,
                   deploy_inferences, sweeps, notifications):
        app.include_router(module.router, dependencies=protected)
    for router in ((ai_manager_ui.router,) if shapes_2025 else (configs.root_router, hosts.root_router)):
        app.include_router(router, dependencies=protected)


def _cors_origins() -> tuple[str, ...]:
    try:
        return PlatformSettings().cors_origin_list
    except ValueError as exc:
        raise SystemExit(f"OPEVA API refuses to start: OPEVA_CORS_ORIGINS (or CORS_ALLOWED_ORIGINS) is malformed: {exc}") from None


def create_ai_manager_ui_app(parent: FastAPI) -> FastAPI:
    """The mount under /ai-manager-ui: the same routes and use cases, the 2025 shapes where they
    differ; its own /openapi.json. It shares the parent's state (lifespan objects, auth), and the
    parent's middleware (CORS, security, size limits) wraps it."""
    docs = security.SecuritySettings().public_docs
    sub = FastAPI(title="OPEVA API (ai-manager-ui shapes)", version=parent.version, openapi_url="/openapi.json" if docs else None,
                  docs_url="/docs" if docs else None, redoc_url=None,
                  description=f"{parent.description} The 2025 answers ai-manager-ui reads; the root serves today's contract.")
    sub.state = parent.state
    errors.install(sub)
    add_routes(sub, shapes_2025=True)
    install_openapi(sub)
    security._openapi_with_scheme(sub, parent.state.auth)  # the bearer scheme, as at the root (set by security.install)
    return sub


def create_app() -> FastAPI:
    origins = _cors_origins()
    app = FastAPI(
        title="OPEVA API",
        version=project_version(),
        description="Simulation jobs and dataset builds as Prefect flow runs. Job ids are Prefect flow-run ids.",
        lifespan=lifespan,
    )
    errors.install(app)
    uploads = {path: MAX_UPLOAD_BYTES for path in ("/dataset/upload", f"{ai_manager_ui.PREFIX}/dataset/upload")}
    app.add_middleware(errors.BodySizeLimit, max_bytes=MAX_BODY_BYTES, streamed=uploads)
    add_routes(app, shapes_2025=False)
    install_openapi(app)
    # Its layer wraps the ones above (Host allow-list, docs, JSON limits, users) and its OpenAPI
    # hook wraps the one above (the bearer scheme is declared only when tokens are on).
    security.install(app, max_body_bytes=MAX_BODY_BYTES, streamed=frozenset(uploads))
    app.mount(ai_manager_ui.PREFIX, create_ai_manager_ui_app(app))
    cors.install(app, origins)  # last: outermost, so every answer to an allowed page carries CORS headers
    return app


def _errors_as_json(op: dict) -> None:
    """FastAPI files a route's error models under the route's media type (text/plain for
    the log routes); errors are always JSON, so say so."""
    for code, response in op.get("responses", {}).items():
        content = response.get("content") or {}
        if code[:1] in "45" and content and "application/json" not in content:
            response["content"] = {"application/json": next(iter(content.values()))}


def install_openapi(app: FastAPI) -> None:
    """Declare bearer security (and its 401) only when tokens are on: with auth off, a
    document that asks for a token tells clients something untrue."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        tokens_on = app.state.auth.enabled  # api.security's parser: the one reading of OPEVA_API_TOKENS
        for path_item in spec.get("paths", {}).values():
            for op in path_item.values():
                _errors_as_json(op)
                if not isinstance(op, dict) or "security" not in op:
                    continue
                if tokens_on:
                    op.setdefault("responses", {})["401"] = {"description": "Missing or wrong bearer token",
                                                             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
                else:
                    del op["security"]
        if not tokens_on:
            spec.get("components", {}).pop("securitySchemes", None)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


app = create_app()
