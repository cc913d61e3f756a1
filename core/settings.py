"""Platform settings read from the environment: the one place for ports, paths and names.

Why here and not in each entry point: `make up`, the API, the deployment
set-up and the tests must agree on the data root, the Prefect API URL, the
image tag and the hosts file; each reads them from this model.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def project_version() -> str:
    try:
        with open(PROJECT_ROOT / "pyproject.toml", "rb") as f:
            return tomllib.load(f)["project"]["version"]
    except FileNotFoundError:  # installed without the source tree
        return "0.0.0"


class PlatformSettings(BaseSettings):
    """Environment variables prefixed ``OPEVA_`` (e.g. ``OPEVA_DATA_DIR``)."""

    model_config = SettingsConfigDict(env_prefix="OPEVA_", extra="ignore")

    home: Path = Field(PROJECT_ROOT / "var", description="Where make up keeps the Prefect database, Mongo files and logs.")
    data_dir: Path | None = Field(None, description="Shared data root (configs/, datasets/, jobs/); default <home>/data.")
    hosts_file: Path = Field(PROJECT_ROOT / "deployments" / "hosts.yaml")
    image: str = Field("", description="Runtime image; default opeva-runtime:<project version>.")
    prefect_port: int = 4200
    api_port: int = 8000
    mongo_port: int = 27017
    api_tokens: str = Field("", description="Comma-separated bearer tokens; empty turns auth off.")

    @property
    def shared_data_dir(self) -> Path:
        return (self.data_dir or self.home / "data").resolve()

    @property
    def runtime_image(self) -> str:
        return self.image or f"opeva-runtime:{project_version()}"

    @property
    def prefect_api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def token_set(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.api_tokens.split(",") if t.strip())


# -- what `make up` runs with, for `make setup` ---------------------------------------------
# `make setup` (deployments.setup) must re-create pools with the same runtime image, data root,
# hosts file and ports as the running platform, even when the shell that runs it lacks the
# OPEVA_* variables `make up` was given: `make up` records them in <home>/platform.json.

RUNNING_FILE = "platform.json"
RECORDED = ("image", "data_dir", "hosts_file", "prefect_port", "api_port", "mongo_port")


class SettingsMismatch(RuntimeError):
    """``make setup`` cannot know, or would contradict, the configuration ``make up`` runs with."""


def record_running(settings: PlatformSettings, **extra: str) -> Path:
    """Written by ``make up`` once its services answer; removed when it stops."""
    import json
    import os

    data = {"image": settings.runtime_image, "data_dir": str(settings.shared_data_dir), "hosts_file": str(Path(settings.hosts_file).resolve()),
            "prefect_port": settings.prefect_port, "api_port": settings.api_port, "mongo_port": settings.mongo_port, "pid": os.getpid(), **extra}
    path = settings.home / RUNNING_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)
    return path


def _given(env: dict[str, str], field: str) -> bool:
    return f"OPEVA_{field.upper()}" in env


def running_settings(env: dict[str, str] | None = None) -> tuple[PlatformSettings, dict]:
    """The settings of the platform ``make up`` runs under ``OPEVA_HOME`` (default var/), and its record.

    SettingsMismatch when nothing is recorded there, or when an ``OPEVA_*`` variable set now
    differs from what ``make up`` runs with (a pool would silently move to another image)."""
    import json
    import os

    env = dict(os.environ if env is None else env)
    current = PlatformSettings()
    path = current.home / RUNNING_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        raise SettingsMismatch(
            f"no running platform recorded in {path}: start it with `make up` (with the same OPEVA_HOME), "
            "or, for a platform started otherwise (docker compose), set PREFECT_API_URL and the OPEVA_* variables it uses"
        ) from None
    now = {"image": current.runtime_image, "data_dir": str(current.shared_data_dir), "hosts_file": str(Path(current.hosts_file).resolve()),
           "prefect_port": current.prefect_port, "api_port": current.api_port, "mongo_port": current.mongo_port}
    differ = [f"OPEVA_{k.upper()}={now[k]} (make up runs with {data.get(k)})" for k in RECORDED if _given(env, k) and str(now[k]) != str(data.get(k))]
    if differ:
        raise SettingsMismatch(f"these differ from the platform recorded in {path}: {'; '.join(differ)}. "
                               "Unset them (make setup reads the running platform's), or restart make up with them")
    recorded = PlatformSettings(home=current.home, **{k: data[k] for k in RECORDED if k in data})
    return recorded, data
