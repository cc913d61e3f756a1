"""The production compose files, checked for what would break at `docker compose up`:
`docker-compose config` accepts them (Debian's docker-compose; .ci/run installs it;
PyYAML's merge keys otherwise), every service runs the runtime image of this
version, every command's module is in the image or mounted into the container,
the Prefect server talks to the compose PostgreSQL with the settings `make up`
uses, and every client points at that server. The images are not started here
(no registry for postgres:15): tests/e2e/test_postgres.py runs the same server
settings on Debian's PostgreSQL."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from core.settings import project_version
from deployments.platform import Platform

ROOT = Path(__file__).resolve().parents[2]
ENV = {"POSTGRES_PASSWORD": "pw", "REDIS_PASSWORD": "rpw", "OPEVA_HOST": "gpu-1", "PREFECT_API_URL": "http://main:4200/api", "OPEVA_PREFECT_AUTH_STRING": "opeva:pw",
       "MONGO_URI": "mongodb://opeva:pw@db.example:27017/?authSource=admin"}
IN_IMAGE = "/opt/opeva"


def compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


def resolved(name: str, env: dict[str, str] = ENV) -> dict:
    """The file as compose sees it: anchors merged and ${VARS} filled in."""
    cli = compose_cli()
    if cli is None:
        if os.environ.get("OPEVA_REQUIRE_DOCKER") == "1":
            pytest.fail("no docker-compose in CI: .ci/run installs Debian's docker-compose")
        return yaml.safe_load((ROOT / name).read_text())  # merge keys resolved, variables left as written
    clean = {k: v for k, v in os.environ.items() if k != "OPEVA_IMAGE"}  # the files' own default image
    out = subprocess.run([*cli, "-f", str(ROOT / name), "config"], capture_output=True, text=True, env={**clean, **env}, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def image_dirs() -> set[str]:
    """Top-level source directories the Dockerfile copies into the image."""
    return set(re.findall(r"^COPY (\w+)/ \1/", (ROOT / "Dockerfile").read_text(), flags=re.M))


def mounted_dirs(service: dict) -> set[str]:
    dirs = set()
    for volume in service.get("volumes", []):
        source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) else volume.split(":")[:2]
        if target.startswith(IN_IMAGE + "/"):
            assert Path(source).resolve() == (ROOT / Path(target).relative_to(IN_IMAGE)).resolve() or source.startswith("./"), volume
            dirs.add(Path(target).relative_to(IN_IMAGE).parts[0])
    return dirs


def command_module(command: str | list[str]) -> str | None:
    argv = shlex.split(command) if isinstance(command, str) else command
    if argv[:2] == ["python", "-m"]:
        return argv[2]
    if argv[0] == "uvicorn":
        return argv[1].split(":")[0]
    assert argv[0] == "prefect", f"unexpected command {argv}"
    return None


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.host.yml"])
def test_every_opeva_service_has_its_image_its_code_and_host_networking(name):
    spec = resolved(name)
    for service_name, service in spec["services"].items():
        if service_name == "mlflow-relay":  # the one on the jobs network, never the host's (test below)
            continue
        assert service.get("network_mode") == "host", service_name
        if service_name in ("postgres", "mlflow", "redis", "haproxy"):  # their own images
            continue
        assert service["image"] in (f"opeva-runtime:{project_version()}", "${OPEVA_IMAGE:-opeva-runtime:%s}" % project_version()), service_name
        module = command_module(service["command"])
        if module:
            top = module.split(".")[0]
            assert (ROOT / Path(*module.split("."))).with_suffix(".py").is_file(), f"{service_name}: no module {module}"
            assert top in image_dirs() | mounted_dirs(service), f"{service_name}: {top}/ is neither in the image nor mounted"
        assert service["restart"] == ("no" if service_name == "prefect-migrate" else "unless-stopped"), service_name


def test_prefect_server_runs_on_the_compose_postgres_with_make_ups_settings():
    spec = resolved("docker-compose.yml")["services"]
    pg, server = spec["postgres"], spec["prefect-server-1"]
    url = urlsplit(server["environment"]["PREFECT_SERVER_DATABASE_CONNECTION_URL"])
    assert url.scheme == "postgresql+asyncpg" and url.hostname == "127.0.0.1" and (url.port or 5432) == 5432
    assert url.username == pg["environment"]["POSTGRES_USER"] and url.path == "/" + pg["environment"]["POSTGRES_DB"]
    if compose_cli():
        assert url.password == ENV["POSTGRES_PASSWORD"]
    embedded = Platform(home=ROOT, prefect_port=1, mongo_port=1, api_port=1, data_dir=ROOT, database_url="postgresql+asyncpg://x").server_env()
    for key in ("PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE", "PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW"):
        assert str(server["environment"][key]) == embedded[key], key
    assert server["depends_on"]["prefect-migrate"]["condition"] == "service_completed_successfully"
    assert spec["prefect-migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])


def test_every_client_points_at_the_prefect_server_and_workers_at_known_pools():
    spec = resolved("docker-compose.yml")["services"]
    from deployments.scaled import COMPOSE_LAYOUT

    port = 4200  # haproxy's Prefect frontend (deployments/haproxy.cfg), in front of the servers' own ports
    assert "bind 127.0.0.1:4200" in (ROOT / "deployments" / "haproxy.cfg").read_text()
    for i, server_port in enumerate(COMPOSE_LAYOUT.server_ports, 1):
        command = spec[f"prefect-server-{i}"]["command"]
        assert (shlex.split(command) if isinstance(command, str) else command)[-1] == str(server_port)
    hosts = {h["name"] for h in yaml.safe_load((ROOT / "deployments" / "hosts.yaml").read_text())["hosts"]}
    for name, service in spec.items():
        if name in ("postgres", "mlflow", "mlflow-relay", "redis", "haproxy"):  # no Prefect client
            continue
        assert service["environment"]["PREFECT_API_URL"] == f"http://127.0.0.1:{port}/api", name
        argv = shlex.split(service["command"]) if isinstance(service["command"], str) else service["command"]
        if argv[:2] == ["prefect", "worker"] and argv[argv.index("--pool") + 1] == "control":  # deployments/control_pool.py
            assert argv[argv.index("--type") + 1] == "process" and "/var/run/docker.sock" not in str(service.get("volumes")), name
        elif argv[:2] == ["prefect", "worker"]:
            assert argv[argv.index("--pool") + 1] in hosts, name
            mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in service["volumes"]]
            assert any(m.startswith("/var/run/docker.sock:/var/run/docker.sock") for m in mounts), name
    hosts_file = Path(spec["api-1"]["environment"]["OPEVA_HOSTS_FILE"])
    assert hosts_file.relative_to(IN_IMAGE).parts[0] in mounted_dirs(spec["api-1"])


def test_compute_host_compose_requires_its_pool_and_server():
    spec = resolved("docker-compose.host.yml")["services"]["worker"]
    argv = shlex.split(spec["command"]) if isinstance(spec["command"], str) else spec["command"]
    if compose_cli():
        assert argv[argv.index("--pool") + 1] == ENV["OPEVA_HOST"]
        assert spec["environment"]["PREFECT_API_URL"] == ENV["PREFECT_API_URL"]
        missing = subprocess.run([*compose_cli(), "-f", str(ROOT / "docker-compose.host.yml"), "config"], capture_output=True, text=True,
                                 env={k: v for k, v in os.environ.items() if k not in ENV}, cwd=ROOT)
        assert missing.returncode != 0 and "OPEVA_HOST" in missing.stderr
        assert spec["environment"]["PREFECT_API_AUTH_STRING"] == ENV["OPEVA_PREFECT_AUTH_STRING"]


def test_production_prefect_server_requires_credentials_that_every_client_holds():
    """The server's auth string is the one the API and the worker send; without it compose refuses to start."""
    spec = resolved("docker-compose.yml")["services"]
    if not compose_cli():
        return
    assert spec["prefect-server-1"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"] == ENV["OPEVA_PREFECT_AUTH_STRING"]
    for name in ("api-1", "api-2", "worker-local"):
        assert spec[name]["environment"]["PREFECT_API_AUTH_STRING"] == ENV["OPEVA_PREFECT_AUTH_STRING"], name
    env = {k: v for k, v in os.environ.items() if k != "OPEVA_IMAGE"} | {k: v for k, v in ENV.items() if k != "OPEVA_PREFECT_AUTH_STRING"}
    env.pop("OPEVA_PREFECT_AUTH_STRING", None)
    missing = subprocess.run([*compose_cli(), "-f", str(ROOT / "docker-compose.yml"), "config"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert missing.returncode != 0 and "OPEVA_PREFECT_AUTH_STRING" in missing.stderr


def test_production_mongodb_needs_credentials():
    """No open default: compose refuses to resolve without MONGO_URI, and no service falls
    back to an unauthenticated MongoDB (issue 21: MongoDB with auth on in production)."""
    cli = compose_cli()
    assert cli is not None or os.environ.get("OPEVA_REQUIRE_DOCKER") != "1"
    if cli is not None:
        clean = {k: v for k, v in os.environ.items() if k not in ("OPEVA_IMAGE", "MONGO_URI")}
        env = {k: v for k, v in ENV.items() if k != "MONGO_URI"}
        out = subprocess.run([*cli, "-f", str(ROOT / "docker-compose.yml"), "config"], capture_output=True, text=True, env={**clean, **env}, cwd=ROOT)
        assert out.returncode != 0 and "MONGO_URI" in out.stderr, out.stderr
    text = (ROOT / "docker-compose.yml").read_text()
    assert "mongodb://127.0.0.1:27017}" not in text and "${MONGO_URI:?" in text
    for name, service in resolved("docker-compose.yml")["services"].items():
        uri = (service.get("environment") or {}).get("MONGO_URI")
        if uri:
            assert urlsplit(uri).username and urlsplit(uri).password, name


def test_mlflow_on_the_compose_postgres_and_its_relay_alone_on_the_internal_jobs_network():
    """docs/mlflow.md, docs/sandbox-network.md: jobs reach MLflow only through the relay."""
    spec = resolved("docker-compose.yml")
    services, network = spec["services"], spec["networks"]["jobs"]
    assert "--backend-store-uri postgresql://prefect:" in services["mlflow"]["command"] and "127.0.0.1:5432/mlflow" in services["mlflow"]["command"]
    assert any("postgres-init" in str(v) for v in services["postgres"]["volumes"])
    relay = services["mlflow-relay"]
    assert "network_mode" not in relay and list(relay["networks"]) == ["jobs"] and relay["networks"]["jobs"]["aliases"] == ["opeva-mlflow"]
    assert relay["user"] == "65534:65534" and relay["cap_drop"] == ["ALL"] and relay["read_only"] is True
    assert network["internal"] is True and network["driver_opts"]["com.docker.network.bridge.inhibit_ipv4"] == "true"
    assert not [v for v in relay["volumes"] if "docker.sock" in str(v)]
