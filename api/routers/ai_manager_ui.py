"""The 2025 shapes ai-manager-ui reads, for the mount under ``/ai-manager-ui`` (OPEVA_UPSTREAM §0 rule 2).

Every other route of that mount is the root's own router; only these two answers differ from
today's contract, and they re-shape what the same use cases return:
- ``GET /hosts``: ``available_hosts`` as ``{name, host}`` objects (the root sends names);
- ``GET /experiment-config/{f}``: JSON ``{file_name, config, yaml}`` (the root sends the raw YAML).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from api.deps import Gateway, Hosts, Index, Storage
from api.responses import ConfigView, HostsOut2025, errors
from api.owners import Owned
from api.routers.configs import VIEW_RESPONSES, AcceptHeader, ConfigFile, YamlFormat, negotiated_view
from api.usecases import hosts as hosts_usecase

PREFIX = "/ai-manager-ui"
router = APIRouter()


@router.get("/hosts", response_model=HostsOut2025, responses=errors(), tags=["hosts"], summary="Hosts (2025 shape: {name, host} objects)")
async def list_hosts(gateway: Gateway, hosts: Hosts, index: Index) -> HostsOut2025:
    return hosts_usecase.hosts_overview_2025(await hosts_usecase.hosts_overview(gateway, hosts, index))


@router.get("/experiment-config/{file}", response_model=ConfigView, responses=VIEW_RESPONSES, tags=["experiment configs"],
            summary="A config (2025 shape): JSON by default, the raw YAML for Accept: text/yaml or ?format=yaml")
def view_config(file: ConfigFile, storage: Storage, own: Owned, format: YamlFormat = None, accept: AcceptHeader = None) -> ConfigView | PlainTextResponse:
    return negotiated_view(storage, own, file, format, accept)
