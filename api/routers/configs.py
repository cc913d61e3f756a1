"""Experiment configs: YAML files under ``configs/`` on shared storage.

Seed 000's names (``/config/create``, ``/configs``, ``/config/{file}``) stay as aliases.
"""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter, Depends

from api.deps import get_storage
from api.errors import ApiError
from api.models import ConfigCreateRequest
from core.layout import DataRoot
from core.limits import LIMITS
from core.safe_yaml import load_yaml

router = APIRouter(tags=["experiment configs"])


def _parse(config: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(config, str):
        config = load_yaml(config)  # limits: size, depth, aliases, JSON types only (422 YamlRefused)
    if not isinstance(config, dict):
        raise ApiError(422, "config must be a mapping (a YAML object at the top level)")
    return config


@router.post("/experiment-configs/create", summary="Create a config file")
@router.post("/config/create", include_in_schema=False)
def create_config(body: ConfigCreateRequest, storage: DataRoot = Depends(get_storage)) -> dict[str, Any]:
    config = _parse(body.config)
    path = storage.config_file(body.file_name)
    text = yaml.safe_dump(config, sort_keys=False)
    if body.overwrite:
        storage.write_atomic(path, text)
    else:
        try:
            storage.create_exclusive(path, text)  # of concurrent creators exactly one wins
        except FileExistsError:
            raise ApiError(409, f"config {body.file_name!r} already exists; send \"overwrite\": true to replace it") from None
    return {"message": f"Config {body.file_name} saved", "file_name": body.file_name, "config_path": storage.relative(path)}


@router.get("/experiment-configs", summary="List config files")
@router.get("/configs", include_in_schema=False)
def list_configs(storage: DataRoot = Depends(get_storage)) -> dict[str, Any]:
    files = sorted(p.name for p in storage.configs_dir.glob("*") if p.suffix in (".yaml", ".yml") and p.is_file() and not p.is_symlink())
    return {"configs": files}


def _existing(storage: DataRoot, file: str):
    path = storage.config_file(file)
    if not path.is_file():
        raise ApiError(404, f"no config named {file!r}")
    return path


@router.get("/experiment-configs/{file}", summary="View a config file")
@router.get("/config/{file}", include_in_schema=False)
def view_config(file: str, storage: DataRoot = Depends(get_storage)) -> dict[str, Any]:
    path = _existing(storage, file)
    text = storage.read_text_inside(path, max_bytes=LIMITS.max_yaml_bytes, what="config")  # links out: 403
    parsed = load_yaml(text)  # a stored alias bomb, !!binary or 300-deep file: 422, not 500
    return {"file_name": file, "config": parsed, "yaml": text}


@router.delete("/experiment-configs/{file}", summary="Delete a config file")
@router.delete("/config/{file}", include_in_schema=False)
def delete_config(file: str, storage: DataRoot = Depends(get_storage)) -> dict[str, Any]:
    storage.remove_inside(_existing(storage, file))  # a link is removed, never its target
    return {"message": f"Config {file} deleted"}
