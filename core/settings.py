"""Platform settings read from the environment: the one place for ports, paths and names.

Why here and not in each entry point: `make up`, the API, the deployment
set-up and the tests must agree on the data root, the Prefect API URL, the
image tag and the hosts file; each reads them from this model.
"""

from __future__ import annotations

import json
import re
import tomllib
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
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
    api_public_url: str = Field("", description="The API's address in a user's browser (artifact image links, docs/compare.md); default http://127.0.0.1:<api_port>.")
    cors_origins: str = Field(
        "", validation_alias=AliasChoices("OPEVA_CORS_ORIGINS", "CORS_ALLOWED_ORIGINS"),
        description="Browser origins allowed to call the API cross-origin (comma list or JSON list); "
                    "upstream's CORS_ALLOWED_ORIGINS is read too. Empty: none (same-origin and non-browser clients only).",
    )
    mlflow: bool = Field(True, description="Run the platform's MLflow tracking server (docs/mlflow.md); OPEVA_MLFLOW=0 turns it off.")
    mlflow_port: int = 5000
    mlflow_ui_url: str = Field("", description="MLflow's address in a user's browser; default http://127.0.0.1:<mlflow_port>.")
    jobs_network: str = Field("opeva-jobs", description="The Docker network jobs join (docs/sandbox-network.md).")
    amqp_url: str = Field("", description="The RabbitMQ whose fanout exchanges WS /ws/data relays (docs/live-data.md); "
                          "empty: make up starts its own on amqp_port and gives the API its URL.")
    amqp_port: int = Field(0, description="AMQP port of the RabbitMQ make up starts when OPEVA_AMQP_URL is empty; 0: a free port (the banner shows it).")

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
    def cors_origin_list(self) -> tuple[str, ...]:
        """The allowed origins; ValueError (with a message for the operator) when malformed."""
        return parse_origins(self.cors_origins)

    @property
    def api_browser_url(self) -> str:
        return (self.api_public_url or f"http://127.0.0.1:{self.api_port}").rstrip("/")

    @property
    def mlflow_url(self) -> str:
        """Where the platform's own processes (the API, set-up) reach MLflow."""
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def mlflow_browser_url(self) -> str:
        return (self.mlflow_ui_url or self.mlflow_url).rstrip("/")


_ORIGIN = re.compile(r"(https?)://([A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?")


def parse_origins(value: str) -> tuple[str, ...]:
    """``http://ui:5173,https://ui.example.org`` or ``["http://ui:5173"]`` -> normalised origins.

    Why strict: an origin is compared byte for byte with the browser's ``Origin`` header, so a
    path, a wildcard or a typo would silently allow nothing (or everything); refusing to start
    says so at once. A trailing ``/`` (as copied from an address bar) is dropped.
    """
    text = value.strip()
    if not text:
        return ()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON list of origins ({exc.msg} at column {exc.colno})") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError("a JSON list of origins must hold strings only")
    else:
        items = text.split(",")
    origins: list[str] = []
    for raw in (i.strip() for i in items):
        if not raw:
            continue
        origin = raw[:-1] if raw.endswith("/") and raw.count("/") == 3 else raw
        match = _ORIGIN.fullmatch(origin)
        if not match or (match.group(3) and not 0 < int(match.group(3)) < 65536):
            shown = raw if len(raw) <= 100 else raw[:100] + "..."
            raise ValueError(f"{shown!r} is not an origin: write scheme://host[:port] (http or https, no path, no wildcard), "
                             "e.g. http://ui-host:5173")
        scheme, port = match.group(1), match.group(3)
        if (scheme, port) in (("http", "80"), ("https", "443")):  # browsers leave a default port out of Origin
            origin = origin.rsplit(":", 1)[0]
        origins.append(origin.lower())
    return tuple(dict.fromkeys(origins))


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
