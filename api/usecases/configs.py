"""Experiment configs: YAML files under ``configs/`` on shared storage."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from api.errors import ApiError
from api.responses import ConfigSaved, ConfigView, Message
from core.layout import DataRoot


def parse_yaml(content: dict[str, Any] | str) -> tuple[dict[str, Any], str]:
    """(mapping, text to store). Text is kept as sent, so comments survive."""
    if isinstance(content, dict):
        return content, yaml.safe_dump(content, sort_keys=False)
    try:
        parsed = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ApiError(422, f"Invalid YAML{where}: {problem}") from exc
    if not isinstance(parsed, dict):
        raise ApiError(422, "the config must be a mapping (a YAML object at the top level)")
    return parsed, content if content.endswith("\n") else content + "\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def list_configs(storage: DataRoot) -> list[str]:
    if not storage.configs_dir.is_dir():
        return []
    return sorted(p.name for p in storage.configs_dir.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file() and not p.name.startswith("."))


def existing(storage: DataRoot, file: str) -> Path:
    path = storage.config_file(file)
    if not path.is_file():
        raise ApiError(404, f"Config {file} not found")
    return path


def create(storage: DataRoot, file_name: str, content: dict[str, Any] | str, overwrite: bool) -> ConfigSaved:
    _, text = parse_yaml(content)
    path = storage.config_file(file_name)
    if overwrite:
        _write(path, text)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "x") as f:
                f.write(text)
        except FileExistsError:
            raise ApiError(409, f"config {file_name!r} already exists; send \"overwrite\": true or PUT /experiment-config/{file_name} to replace it") from None
    return ConfigSaved(message="Config saved", file=file_name, file_name=file_name, config_path=storage.relative(path))


def update(storage: DataRoot, file: str, content: dict[str, Any] | str) -> ConfigSaved:
    path = existing(storage, file)
    _, text = parse_yaml(content)
    _write(path, text)
    return ConfigSaved(message="Config updated", file=file, file_name=file, config_path=storage.relative(path))


def view(storage: DataRoot, file: str) -> ConfigView:
    text = existing(storage, file).read_text(errors="replace")
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = None
    return ConfigView(file_name=file, config=parsed, yaml=text)


def raw(storage: DataRoot, file: str) -> str:
    return existing(storage, file).read_text(errors="replace")


def delete(storage: DataRoot, file: str) -> Message:
    existing(storage, file).unlink()
    return Message(message=f"Config {file} deleted successfully")
