"""Experiment configs: YAML files under ``configs/``. The UI's singular paths
(``/experiment-config/...``) are the documented ones; ``/experiment-configs/...`` and seed
000's ``/config/...``, ``/configs`` stay as aliases."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.deps import Storage
from api.owners import Owned, Ownership
from api.models import CONFIG_FILE_PATTERN, ConfigCreateRequest, ConfigUpdateRequest
from api.responses import ConfigSaved, ConfigView, Message, YamlResponse, errors, text_response
from core.layout import DataRoot
from api.usecases import configs

router = APIRouter(tags=["experiment configs"])
root_router = APIRouter(tags=["experiment configs"])  # the routes whose 2025 shape differs (api/routers/ai_manager_ui.py)

ConfigFile = Annotated[str, Path(pattern=CONFIG_FILE_PATTERN, max_length=128, description="A file name under configs/, e.g. flex-demo.yaml.")]
YAML_TYPES = ("text/yaml", "application/yaml", "application/x-yaml", "text/x-yaml")


@router.get("/experiment-configs", response_model=list[str], responses=errors(), summary="Config file names (*.yaml, *.yml)")
@router.get("/configs", response_model=list[str], include_in_schema=False)
def list_configs(storage: Storage, own: Owned) -> list[str]:
    return configs.list_configs(storage, own)


@router.post("/experiment-config/create", response_model=ConfigSaved, responses=errors(403, 409, 413), summary="Create a config file (YAML text or an object)")
@router.post("/experiment-configs/create", response_model=ConfigSaved, include_in_schema=False)
@router.post("/config/create", response_model=ConfigSaved, include_in_schema=False)
def create_config(body: ConfigCreateRequest, storage: Storage, own: Owned) -> ConfigSaved:
    return configs.create(storage, own, body.file_name, body.content, body.overwrite)


@router.api_route("/experiment-config/create", methods=["GET", "PUT", "DELETE", "PATCH"], include_in_schema=False)
def create_other_methods() -> None:
    """``create`` is not a config file name: other methods than POST get 405, not a name error."""
    raise StarletteHTTPException(405, "Method Not Allowed")


def negotiated_view(storage: DataRoot, own: Ownership, file: str, format: str | None, accept: str | None) -> ConfigView | PlainTextResponse:
    """The 2025 view: JSON ``{file_name, config, yaml}``, the raw YAML for Accept: text/yaml or ?format=yaml."""
    wants_yaml = format == "yaml" or (format is None and any(t in (accept or "") for t in YAML_TYPES) and "application/json" not in (accept or ""))
    if wants_yaml:
        return PlainTextResponse(configs.raw(storage, own, file), media_type="text/yaml")
    return configs.view(storage, own, file)


YamlFormat = Annotated[Literal["json", "yaml"] | None, Query(description="yaml: answer the file as it is (text/yaml).")]
AcceptHeader = Annotated[str | None, Header(include_in_schema=False)]
VIEW_RESPONSES = {200: {"content": {"text/yaml": {"schema": {"description": "YAML text"}, "example": "metadata:\n  experiment_name: flex\n"}}}, **errors(404)}


@router.get("/experiment-configs/{file}", response_model=ConfigView, include_in_schema=False)
@router.get("/config/{file}", response_model=ConfigView, include_in_schema=False)
def view_config_alias(file: ConfigFile, storage: Storage, own: Owned, format: YamlFormat = None, accept: AcceptHeader = None) -> ConfigView | PlainTextResponse:
    """The seeds' names keep the 2025 view."""
    return negotiated_view(storage, own, file, format, accept)


@root_router.get("/experiment-config/{file}", response_class=YamlResponse, summary="A config file as stored: raw YAML (text/yaml)",
                 responses=text_response("text/yaml", "metadata:\n  experiment_name: flex\n  run_name: q1\n", 404))
def view_config(file: ConfigFile, storage: Storage, own: Owned) -> YamlResponse:
    """Today's contract: energaize_ui edits the text and PUTs it back as ``yaml_content``."""
    return YamlResponse(configs.raw(storage, own, file))


@router.put("/experiment-config/{file}", response_model=ConfigSaved, responses=errors(403, 404, 413), summary="Replace an existing config")
@router.put("/experiment-configs/{file}", response_model=ConfigSaved, include_in_schema=False)
def update_config(file: ConfigFile, body: ConfigUpdateRequest, storage: Storage, own: Owned) -> ConfigSaved:
    return configs.update(storage, own, file, body.content)


@router.delete("/experiment-config/{file}", response_model=Message, responses=errors(403, 404), summary="Delete a config")
@router.delete("/experiment-configs/{file}", response_model=Message, include_in_schema=False)
@router.delete("/config/{file}", response_model=Message, include_in_schema=False)
def delete_config(file: ConfigFile, storage: Storage, own: Owned) -> Message:
    return configs.delete(storage, own, file)
