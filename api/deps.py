"""FastAPI dependencies: the gateway, shared storage, hosts and auth, and their Annotated aliases.

The objects live on ``app.state`` (made once in the lifespan) so a request pays
for no connection set-up: one Prefect client with its connection pool serves
every request.
"""

from __future__ import annotations

from typing import Annotated

import pymongo
from fastapi import Depends, Request

from api.errors import ApiError
from api.gateway import PrefectGateway
from api.job_index import JobIndex
from api.security import CurrentUser, User, authenticate, may_manage  # noqa: F401  (re-exported for routes)
from core.settings import PlatformSettings
from core.layout import DataRoot
from core.hosts import Host, HostsFile
from core.images import ImageCatalog

def get_settings(request: Request) -> PlatformSettings:
    return request.app.state.settings


def get_gateway(request: Request) -> PrefectGateway:
    return request.app.state.gateway


def get_job_index(request: Request) -> JobIndex:
    return request.app.state.job_index


def get_storage(request: Request) -> DataRoot:
    return request.app.state.storage


def get_mongo(request: Request) -> pymongo.MongoClient:
    """One client (a thread-safe pool) for the app, made on first use so the API
    starts, and /health answers, while MongoDB is down."""
    state = request.app.state
    if getattr(state, "mongo_client", None) is None:
        state.mongo_client = state.mongo.client()
    return state.mongo_client


def get_images(request: Request) -> ImageCatalog:
    """The Docker engines' image listings, cached (core.images): one per app, made on first use."""
    state = request.app.state
    if getattr(state, "images", None) is None:
        state.images = ImageCatalog()
    return state.images


def get_hosts(request: Request) -> HostsFile:
    return request.app.state.hosts.get()


def known_host(name: str, hosts: HostsFile) -> Host:
    host = hosts.get(name)
    if host is None:
        raise ApiError(404, f"unknown host {name!r}; known hosts: {', '.join(hosts.names)}", known_hosts=hosts.names)
    return host


async def require_token(request: Request) -> User:
    """Router-level guard: 401 unless the bearer token maps to a user (auth on); the user
    is kept on the request for ``CurrentUser`` (api.security has the rules)."""
    return authenticate(request)


# Annotated aliases: a route says ``gateway: Gateway`` instead of repeating Depends(get_...).
Gateway = Annotated[PrefectGateway, Depends(get_gateway)]
Index = Annotated[JobIndex, Depends(get_job_index)]
Storage = Annotated[DataRoot, Depends(get_storage)]
Hosts = Annotated[HostsFile, Depends(get_hosts)]
Settings = Annotated[PlatformSettings, Depends(get_settings)]
Images = Annotated[ImageCatalog, Depends(get_images)]
Mongo = Annotated[pymongo.MongoClient, Depends(get_mongo)]
