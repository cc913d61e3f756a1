"""The hosts file as pydantic models: the one list of compute hosts.

The REST API (`/hosts`, `target_host` checks), the deployment set-up and
`make up` all read it through :func:`load_hosts`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HOST_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class GpuRequest(BaseModel):
    """Becomes a Docker ``device_requests`` entry (``{"--gpus": "all"}`` is not a Docker API field)."""

    model_config = ConfigDict(extra="forbid")
    count: int | None = Field(None, description="-1 for all GPUs")
    device_ids: list[str] | None = None
    driver: str = "nvidia"

    def device_request(self) -> dict[str, Any]:
        req: dict[str, Any] = {"Driver": self.driver, "Capabilities": [["gpu"]]}
        if self.device_ids:
            req["DeviceIDs"] = self.device_ids
        else:
            req["Count"] = -1 if self.count is None else self.count
        return req


class Host(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Host name; also the work pool's name and the deployments' suffix.")
    concurrency_limit: int | None = Field(2, ge=1)
    image: str | None = None
    volumes: list[str] = Field(default_factory=list)
    gpus: GpuRequest | None = None
    start_worker: bool = False
    docker_url: str | None = Field(None, description="Docker daemon the worker uses; default the local socket.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _HOST_NAME.fullmatch(v):
            raise ValueError("host names use lower-case letters, digits and '-' (they name work pools and deployments)")
        return v


class HostsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hosts: list[Host]

    @field_validator("hosts")
    @classmethod
    def _unique(cls, v: list[Host]) -> list[Host]:
        names = [h.name for h in v]
        if len(set(names)) != len(names):
            raise ValueError(f"host names must be unique: {names}")
        if not v:
            raise ValueError("the hosts file lists no host")
        return v

    def get(self, name: str) -> Host | None:
        return next((h for h in self.hosts if h.name == name), None)

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hosts]


def _expand(value: Any, env: dict[str, str]) -> Any:
    """Replace ${VAR} in every string of the parsed file (comments are already gone)."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in env:
                raise ValueError(f"hosts file uses ${{{m.group(1)}}} but it is not set")
            return env[m.group(1)]

        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [_expand(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, env) for k, v in value.items()}
    return value


def load_hosts(path: Path | None = None, env: dict[str, str] | None = None) -> HostsFile:
    from core.settings import PlatformSettings

    settings = PlatformSettings()
    env = dict(os.environ if env is None else env)
    env.setdefault("OPEVA_DATA_DIR", str(settings.shared_data_dir))
    raw = yaml.safe_load(Path(path or settings.hosts_file).read_text())
    return HostsFile.model_validate(_expand(raw, env))
