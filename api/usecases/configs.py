"""Experiment configs: YAML files under ``configs/`` on shared storage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from api.errors import ApiError
from api.owners import Ownership
from api.responses import ConfigSaved, ConfigView, Message
from core.layout import DataRoot
from core.limits import LIMITS
from core.safe_yaml import load_yaml, load_yaml_mapping


def parse_yaml(content: dict[str, Any] | str) -> tuple[dict[str, Any], str]:
    """(mapping, text to store). Text is stored byte for byte as sent (comments, order, a missing
    final newline): energaize_ui reads it back raw and PUTs it again. The loader has limits
    (size, depth, aliases, JSON types only): YamlRefused is a 422 saying where."""
    if isinstance(content, dict):
        return content, yaml.safe_dump(content, sort_keys=False)
    return load_yaml_mapping(content), content


def list_configs(storage: DataRoot, own: Ownership) -> list[str]:
    """Plain files only: a link (which could point anywhere) is never listed."""
    if not storage.configs_dir.is_dir():
        return []
    return own.visible("config", sorted(
        p.name for p in storage.configs_dir.iterdir()
        if p.suffix in (".yaml", ".yml") and p.is_file() and not p.is_symlink() and not p.name.startswith(".")
    ))


def existing(storage: DataRoot, file: str) -> Path:
    path = storage.config_file(file)
    if not path.is_file():
        raise ApiError(404, f"Config {file} not found")
    return path


def create(storage: DataRoot, own: Ownership, file_name: str, content: dict[str, Any] | str, overwrite: bool) -> ConfigSaved:
    _, text = parse_yaml(content)
    path = storage.config_file(file_name)
    if overwrite and (path.exists() or path.is_symlink()):
        own.check_change("config", file_name)  # replacing someone's config is a change of it
        storage.write_atomic(path, text)
    elif overwrite:
        storage.write_atomic(path, text)
        own.made("config", file_name)
    else:
        try:
            storage.create_exclusive(path, text)  # of concurrent creators exactly one wins
        except FileExistsError:
            raise ApiError(409, f"config {file_name!r} already exists; send \"overwrite\": true or PUT /experiment-config/{file_name} to replace it") from None
        own.made("config", file_name)
    return ConfigSaved(message="Config saved", file=file_name, file_name=file_name, config_path=storage.relative(path))


def update(storage: DataRoot, own: Ownership, file: str, content: dict[str, Any] | str) -> ConfigSaved:
    path = existing(storage, file)
    own.check_change("config", file)
    _, text = parse_yaml(content)
    storage.write_atomic(path, text)
    return ConfigSaved(message="Config updated", file=file, file_name=file, config_path=storage.relative(path))


def view(storage: DataRoot, own: Ownership, file: str) -> ConfigView:
    text = raw(storage, own, file)
    parsed = load_yaml(text)  # a stored alias bomb, !!binary or 300-deep file: 422 saying where, not served
    return ConfigView(file_name=file, config=parsed, yaml=text)


def raw(storage: DataRoot, own: Ownership, file: str) -> str:
    """The file's text; a link out of the data root is refused (403), never followed."""
    own.check_read("config", file)
    return storage.read_text_inside(existing(storage, file), max_bytes=LIMITS.max_yaml_bytes, what="config")


def delete(storage: DataRoot, own: Ownership, file: str) -> Message:
    path = existing(storage, file)
    own.check_change("config", file)
    storage.remove_inside(path)  # a link is removed, never its target
    own.gone("config", file)
    return Message(message=f"Config {file} deleted successfully")
