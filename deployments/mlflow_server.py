"""The platform's MLflow tracking server, and the relay that lets jobs (and only jobs' MLflow
clients) reach it: two services of :class:`deployments.platform.Platform` (docs/mlflow.md).

- ``mlflow``: ``mlflow server`` from its own venv (``.ci/install_mlflow.sh``; its pins clash
  with Prefect's), bound to ``127.0.0.1:<OPEVA_MLFLOW_PORT>`` for browsers, the API and set-up,
  and, through a forwarder (``mlflow-socket``), on a Unix socket in ``<home>/run/mlflow/`` for the relay.
  Store: SQLite ``<home>/mlflow/mlflow.db`` and artifacts in ``<home>/mlflow/artifacts`` by
  default (outside the data root: jobs can neither read nor write it), or
  ``OPEVA_MLFLOW_BACKEND_URI`` / ``OPEVA_MLFLOW_ARTIFACTS`` (PostgreSQL in production).
- ``mlflow-relay``: a container on the jobs network (flows/job_network.py) answering as
  ``opeva-mlflow:5000``; ``docker run`` in the foreground, so the platform supervises and
  stops it like any child (SIGTERM is proxied to the container, which is auto-removed).
"""

from __future__ import annotations

import os
import shlex
import sys
from functools import lru_cache
from pathlib import Path

from core.settings import PlatformSettings
from deployments.platform import Platform, Service, StartupError, http_ok, port_open

RELAY_SOCKET_DIR = "/run/opeva-mlflow"
START_TIMEOUT = 600  # the first start imports ~850 MB of packages; minutes on a loaded 2-core machine


def mlflow_python() -> Path:
    venv = os.environ.get("OPEVA_MLFLOW_VENV") or f"{os.environ.get('OPEVA_CACHE', '/var/cache/opeva')}/mlflow-venv"
    return Path(venv) / "bin" / "python"


def socket_path(platform: Platform) -> Path:
    return platform.home / "run" / "mlflow" / "mlflow.sock"


def relay_name(platform: Platform) -> str:
    return f"opeva-mlflow-relay-{platform.mlflow_port}"


def server_command(platform: Platform) -> list[str]:
    store = platform.home / "mlflow"
    backend = os.environ.get("OPEVA_MLFLOW_BACKEND_URI") or f"sqlite:///{store / 'mlflow.db'}"
    artifacts = os.environ.get("OPEVA_MLFLOW_ARTIFACTS") or str(store / "artifacts")
    # Host headers MLflow accepts (its DNS-rebinding guard): loopback for browsers, the relay's alias for jobs.
    allowed = f"localhost:*,127.0.0.1:*,opeva-mlflow:*,{os.environ.get('OPEVA_MLFLOW_ALLOWED_HOSTS', '')}".rstrip(",")
    return [
        str(mlflow_python()), "-m", "mlflow", "server", "--backend-store-uri", backend,
        "--artifacts-destination", artifacts, "--serve-artifacts", "--host", "127.0.0.1", "--port", str(platform.mlflow_port),
        "--workers", "1", "--allowed-hosts", allowed,
    ]


def start_mlflow(platform: Platform, *, wait: bool = False) -> Service | None:
    """Start the MLflow server (returns at once unless ``wait``: it starts beside the others;
    :meth:`Platform.wait_ready` waits for its health later). None when OPEVA_MLFLOW=0 or it
    already answers."""
    if not PlatformSettings().mlflow:
        return None
    url = f"http://127.0.0.1:{platform.mlflow_port}"
    if http_ok(f"{url}/health"):
        print(f"MLflow already answers on {url}; using it")
        return None
    if port_open(platform.mlflow_port):
        raise StartupError(f"port {platform.mlflow_port} is taken by something that is not MLflow (OPEVA_MLFLOW_PORT)")
    if not mlflow_python().exists():
        raise StartupError(f"no MLflow venv at {mlflow_python().parent.parent}: run `bash .ci/install_mlflow.sh` (or set OPEVA_MLFLOW=0)")
    (platform.home / "mlflow").mkdir(parents=True, exist_ok=True, mode=0o700)
    sock = socket_path(platform)
    sock.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(sock.parent, 0o755)  # the relay (uid 65534) must reach the socket (made 0666)
    return platform.start(
        "mlflow", server_command(platform), lambda: http_ok(f"{url}/health"), timeout=START_TIMEOUT, wait=wait,
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",  # no job-runner process (250 MB) for a feature we do not use
    )


def relay_command(platform: Platform, image: str, network: str) -> list[str]:
    name = relay_name(platform)
    run = [
        "docker", "run", "--rm", "--name", name, "--network", network, "--network-alias", "opeva-mlflow",
        "--user", "65534:65534", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true", "--read-only",
        "--memory", "128m", "--pids-limit", "64", "--label", "opeva.role=mlflow-relay",
        "-v", f"{socket_path(platform).parent}:{RELAY_SOCKET_DIR}:ro",
        image, "python", "-m", "flows.mlflow_relay", "--listen", "0.0.0.0:5000", "--to", f"unix:{RELAY_SOCKET_DIR}/mlflow.sock",
    ]
    # a relay left by a killed platform holds the name: remove it first
    return ["sh", "-c", f"docker rm -f {shlex.quote(name)} >/dev/null 2>&1; exec {shlex.join(run)}"]


def start_socket(platform: Platform) -> Service:
    """The host end: MLflow's Unix socket, forwarded to its loopback port."""
    sock = socket_path(platform)
    target = f"127.0.0.1:{platform.mlflow_port}"
    return platform.start(
        "mlflow-socket", [sys.executable, "-m", "flows.mlflow_relay", "--listen", f"unix:{sock}", "--to", target], sock.exists, timeout=30
    )


def start_relay(platform: Platform, image: str) -> Service:
    """MLflow's socket, the jobs network (created when missing) and the relay on it; ready when it listens."""
    import docker

    socket_path(platform).unlink(missing_ok=True)
    start_socket(platform)
    from flows.job_network import ensure_network, network_name

    client = docker.from_env(timeout=30)
    try:
        network = ensure_network(client, network_name()).name
    finally:
        client.close()
    log = platform.logs_dir / "mlflow-relay.log"

    def listening() -> bool:  # a line written since this start (the log is appended to)
        with open(log, "rb") as f:
            f.seek(offset)
            return b"relay listening" in f.read()

    offset = log.stat().st_size if log.exists() else 0
    service = platform.start("mlflow-relay", relay_command(platform, image, network), listening, timeout=60, wait=False)
    platform.wait_ready(service)
    return service


@lru_cache(maxsize=4)
def pool_env(docker: bool, remote_engine: bool = False) -> dict[str, str]:
    """What a pool's flow runs learn about jobs' networking and MLflow (deployments/setup.py).

    MLflow is advertised only when it answers now, so a platform without it (OPEVA_MLFLOW=0,
    the test platforms that do not start it) gives jobs no tracking URI that leads nowhere;
    nor to a host on another engine (``docker_url``), where no relay runs (docs/mlflow.md).
    """
    from flows.job_network import MLFLOW_URI_FOR_JOBS, NETWORK_ENV

    s = PlatformSettings()
    env = {NETWORK_ENV: s.jobs_network}
    if s.mlflow and not remote_engine and http_ok(f"{s.mlflow_url}/health"):
        env["OPEVA_MLFLOW_TRACKING_URI"] = MLFLOW_URI_FOR_JOBS if docker else s.mlflow_url
        env["OPEVA_MLFLOW_UI_URL"] = s.mlflow_browser_url
        env["OPEVA_MLFLOW_PLATFORM_URL"] = s.mlflow_url  # the flow's own calls (it runs on the host's network)
    return env


def main() -> int:
    """``python -m deployments.mlflow_server``: print the server command (for operators)."""
    s = PlatformSettings()
    platform = Platform.from_settings(s)
    print(shlex.join(server_command(platform)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
