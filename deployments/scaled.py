"""The scaled control plane: N Prefect API servers and one services process on
PostgreSQL + Redis, and N OPEVA API replicas, behind one haproxy.

Why: one Prefect server process is one event loop for every client and every
background service; SQLite refuses ``--workers``. Prefect documents the scaled layout
(several ``prefect server start --no-services`` behind a load balancer, one
``prefect server services start``, PostgreSQL, Redis through ``prefect-redis``); this is
that layout, switched on with ``OPEVA_PREFECT_SERVERS=N`` (N >= 2) and
``OPEVA_API_REPLICAS=N``. With neither, ``make up`` runs as before (one server, SQLite
unless OPEVA_DATABASE=postgres, one API).

Order: PostgreSQL, Redis, the migrations (``prefect server database upgrade``, once),
server 1 (registers the block types, once), servers 2..N (neither migrate nor register),
the services process, haproxy. The API replicas start last, on ports fixed here so
haproxy's config is written once; its health checks take a replica in when it answers.
haproxy retries a request whose server refused or dropped the connection on another
server (``retry-on``, ``redispatch``), so killing one server (or replica) costs no request.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.settings import PROJECT_ROOT
from deployments.file_modes import private_dir
from deployments.platform import Platform, Service, StartupError, free_port, http_ok, port_open, prefect_cli


class ScaleSettings(BaseSettings):
    """``OPEVA_PREFECT_SERVERS`` and ``OPEVA_API_REPLICAS`` (1 = the single-process default)."""

    model_config = SettingsConfigDict(env_prefix="OPEVA_", extra="ignore")

    prefect_servers: int = Field(1, ge=1, le=16, description="Prefect API servers; 2 or more runs the scaled layout.")
    api_replicas: int = Field(1, ge=1, le=16, description="OPEVA API processes behind haproxy.")

    @property
    def scaled(self) -> bool:
        return self.prefect_servers > 1

    @property
    def balanced(self) -> bool:
        return self.prefect_servers > 1 or self.api_replicas > 1


def redis_env(redis_url: str) -> dict[str, str]:
    """prefect-redis for everything Prefect keeps in memory per process (names checked in
    Prefect 3.8.8's settings and prefect-redis 0.3.0's RedisMessagingSettings)."""
    return {
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_URL": redis_url,
        "PREFECT_SERVER_DOCKET_URL": redis_url,
    }


@dataclass
class Layout:
    """The ports behind haproxy, fixed before anything starts."""

    server_ports: list[int] = field(default_factory=list)
    api_ports: list[int] = field(default_factory=list)

    @classmethod
    def plan(cls, scale: ScaleSettings) -> "Layout":
        return cls([free_port() for _ in range(scale.prefect_servers)] if scale.scaled else [],
                   [free_port() for _ in range(scale.api_replicas)] if scale.api_replicas > 1 else [])


def haproxy_config(platform: Platform, layout: Layout, user: str | None) -> str:
    """Two frontends on loopback: Prefect (OPEVA_PREFECT_PORT) and the OPEVA API (OPEVA_API_PORT)."""
    lines = [
        "global", "    maxconn 4096", *([f"    user {user}", f"    group {user}"] if user else []),
        "defaults", "    mode http", "    timeout connect 2s", "    timeout client 1h", "    timeout server 1h",
        "    timeout tunnel 1h", "    timeout http-request 30s", "    timeout queue 30s",
        # A request the chosen server refused or dropped before answering goes to another one.
        # (a request must be buffered whole to be sent again: http-buffer-request).
        "    option http-buffer-request", "    retries 3", "    option redispatch 1",
        "    retry-on conn-failure empty-response response-timeout",
        # A connection error takes the server out at once, not after two failed checks.
        "    default-server inter 1s fastinter 250ms fall 2 rise 1 observe layer4 error-limit 1 on-error mark-down",
    ]
    if layout.server_ports:
        lines += ["frontend prefect", f"    bind 127.0.0.1:{platform.prefect_port}", "    default_backend prefect_servers",
                  "backend prefect_servers", "    balance leastconn", "    option httpchk GET /api/health", "    http-check expect status 200",
                  *(f"    server s{i} 127.0.0.1:{p} check" for i, p in enumerate(layout.server_ports, 1))]
    if layout.api_ports:
        lines += ["frontend opeva_api", f"    bind 127.0.0.1:{platform.api_port}", "    default_backend opeva_apis",
                  "backend opeva_apis", "    balance leastconn",
                  *(f"    server a{i} 127.0.0.1:{p} check" for i, p in enumerate(layout.api_ports, 1))]
    return "\n".join(lines) + "\n"


def start_haproxy(platform: Platform, layout: Layout) -> Service:
    exe = shutil.which("haproxy")
    if not exe:
        raise StartupError("haproxy not found: apt-get install haproxy (OPEVA_PREFECT_SERVERS / OPEVA_API_REPLICAS need it)")
    for port in ([platform.prefect_port] if layout.server_ports else []) + ([platform.api_port] if layout.api_ports else []):
        if port_open(port):
            raise StartupError(f"port {port} is already in use: is the platform already running?")
    root = private_dir(platform.home / "haproxy")
    user = "haproxy" if os.geteuid() == 0 and _account("haproxy") else None  # binds as root, then drops to it
    cfg = root / "haproxy.cfg"
    cfg.write_text(haproxy_config(platform, layout, user))
    subprocess.run([exe, "-c", "-q", "-f", str(cfg)], check=True)
    ready = (lambda: http_ok(f"{platform.prefect_api_url}/health")) if layout.server_ports else (lambda: port_open(platform.api_port))
    return platform.start("haproxy", [exe, "-db", "-f", str(cfg)], ready, timeout=60)


def _account(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def start_redis(platform: Platform) -> str:
    from deployments.redis_server import LocalRedis

    redis = LocalRedis(platform.home / "redis", int(os.environ.get("OPEVA_REDIS_PORT", "0")) or free_port())
    redis.init()
    platform.start("redis", redis.command(), redis.ready, timeout=30, user=redis.user)
    return redis.url


def migrate(platform: Platform, env: dict[str, str]) -> None:
    """Prefect's migrations, once, before any server starts (each server skips its own)."""
    from core.child_env import child_env

    out = subprocess.run(prefect_cli() + ["server", "database", "upgrade", "-y"], env=child_env("prefect-server", platform.env(**env)),
                         cwd=str(PROJECT_ROOT), capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise StartupError(f"prefect server database upgrade failed:\n{out.stdout[-1500:]}\n{out.stderr[-1500:]}")


def start_control_plane(platform: Platform, scale: ScaleSettings, layout: Layout) -> None:
    """PostgreSQL (unless OPEVA_PREFECT_DB_URL names one), Redis, migrations, N servers, services, haproxy."""
    if not platform.database_url:
        platform.start_postgres(int(os.environ.get("OPEVA_POSTGRES_PORT", "0")) or None)
    env = {**platform.server_env(), **redis_env(start_redis(platform)), "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false"}
    migrate(platform, env)
    timeout = float(os.environ.get("OPEVA_PREFECT_START_TIMEOUT", "180"))
    for i, port in enumerate(layout.server_ports, 1):
        url = f"http://127.0.0.1:{port}/api/health"
        platform.start(
            f"prefect-server-{i}",
            [sys.executable, "-m", "deployments.prefect_server", "server", "start", "--no-services", "--host", "127.0.0.1", "--port", str(port)],
            (lambda url=url: http_ok(url)), timeout=timeout,
            PREFECT_SERVER_REGISTER_BLOCKS_ON_START="true" if i == 1 else "false",  # once, by the first
            **env,
        )
    services = platform.start("prefect-services", [sys.executable, "-m", "deployments.prefect_server", "server", "services", "start"],  # it runs
                              lambda: True, wait=False, **env)  # the automations' actions: it must import our notification blocks
    _services_started(services, timeout)
    if layout.server_ports or layout.api_ports:
        start_haproxy(platform, layout)


def _services_started(service: Service, timeout: float) -> None:
    """The services process has no port: it is up when it says so and is still alive."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise StartupError(f"prefect server services exited with code {service.proc.returncode}; see {service.log_path}")
        if "Starting services" in service.log_path.read_text(errors="replace"):
            return
        time.sleep(0.3)
    raise StartupError(f"prefect server services did not start within {timeout:.0f} s; see {service.log_path}")


def start_api_replicas(platform: Platform, layout: Layout, **env: str) -> None:
    """N uvicorn processes of the OPEVA API on the planned ports; haproxy (already up) fronts them."""
    for i, port in enumerate(layout.api_ports, 1):
        url = f"http://127.0.0.1:{port}/health"
        platform.start(
            f"api-{i}",
            [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            (lambda url=url: http_ok(url)), **env,
        )
    import time

    deadline = time.monotonic() + 30
    while not http_ok(f"{platform.api_url}/health"):  # haproxy's check has taken a replica in
        if time.monotonic() > deadline:
            raise StartupError(f"haproxy does not answer for the API on {platform.api_url}")
        time.sleep(0.3)


def start_platform_front(platform: Platform, scale: ScaleSettings, layout: Layout) -> None:
    """The Prefect side of ``make up``: the scaled control plane, or the single server (with
    haproxy in front of the API only, when just the API is replicated)."""
    if scale.scaled:
        start_control_plane(platform, scale, layout)
        return
    platform.start_prefect_server()
    if layout.api_ports:
        start_haproxy(platform, layout)


def start_apis(platform: Platform, layout: Layout, **env: str) -> None:
    if layout.api_ports:
        start_api_replicas(platform, layout, **env)
    else:
        platform.start_api(**env)


def describe(layout: Layout) -> str:
    parts = []
    if layout.server_ports:
        parts.append(f"{len(layout.server_ports)} Prefect API servers + services on PostgreSQL and Redis")
    if layout.api_ports:
        parts.append(f"{len(layout.api_ports)} OPEVA API replicas")
    return " and ".join(parts) + " behind haproxy" if parts else "single server"




COMPOSE_LAYOUT = Layout(server_ports=[4201, 4202], api_ports=[8001, 8002])  # docker-compose.yml


def compose_haproxy_config() -> str:
    """deployments/haproxy.cfg: the config above for docker-compose.yml's ports (haproxy's image runs as its own user)."""
    from pathlib import Path

    front = Platform(home=Path("/nonexistent"), prefect_port=4200, mongo_port=27017, api_port=8000, data_dir=Path("/nonexistent"))
    return "# Written by `python -m deployments.scaled` (deployments/scaled.py); do not edit.\n" + haproxy_config(front, COMPOSE_LAYOUT, None)


if __name__ == "__main__":
    (PROJECT_ROOT / "deployments" / "haproxy.cfg").write_text(compose_haproxy_config())
