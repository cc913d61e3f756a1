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

    @property
    def shared_data_dir(self) -> Path:
        return (self.data_dir or self.home / "data").resolve()

    @property
    def runtime_image(self) -> str:
        return self.image or f"opeva-runtime:{project_version()}"

    @property
    def prefect_api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"
