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
    mlflow: bool = Field(True, description="Run the platform's MLflow tracking server (docs/mlflow.md); OPEVA_MLFLOW=0 turns it off.")
    mlflow_port: int = 5000
    mlflow_ui_url: str = Field("", description="MLflow's address in a user's browser; default http://127.0.0.1:<mlflow_port>.")
    jobs_network: str = Field("opeva-jobs", description="The Docker network jobs join (docs/sandbox-network.md).")

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
    def mlflow_url(self) -> str:
        """Where the platform's own processes (the API, set-up) reach MLflow."""
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def mlflow_browser_url(self) -> str:
        return (self.mlflow_ui_url or self.mlflow_url).rstrip("/")

    @property
    def token_set(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.api_tokens.split(",") if t.strip())
