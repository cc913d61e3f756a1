"""What ``make up`` does, in order: Docker engine and image (or process pools), the
database, the Prefect server, MongoDB, pools and deployments, workers, the API; then
it supervises the children until Ctrl-C (deployments/supervisor.py).

Stopping leaves running jobs' containers running; the next start re-attaches them or makes
their runs final (deployments/reconcile.py, docs/reliability.md).

Kept apart from :mod:`deployments.platform`, which holds the services themselves and
is also what the tests start, so each file reads on its own.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

from core.settings import RUNNING_FILE, PlatformSettings, record_running
from deployments.platform import Platform, StartupError, http_ok, port_open


def _use_docker(settings: PlatformSettings) -> bool:
    from deployments.runtime import ensure_docker_engine, ensure_image

    if ensure_docker_engine():
        ensure_image(settings.runtime_image)
        return True
    reason = "OPEVA_DOCKER=0" if os.environ.get("OPEVA_DOCKER") == "0" else "no Docker engine answers (docker info failed)"
    print(
        f"{reason}: falling back to PROCESS work pools of the same names.\n"
        "Jobs run as local processes, without container isolation. Start an engine and run make up again for Docker pools."
    )
    return False


def _start(platform: Platform, use_docker: bool) -> tuple[dict[str, str], str, Any]:
    """Every service, in dependency order; returns each host's pool type, the AMQP URL to show and the jobs' reconcile tick."""
    from core.hosts import load_hosts
    from deployments.postgres import DatabaseSettings

    from deployments.mlflow_server import start_mlflow, start_relay

    mlflow = start_mlflow(platform)  # slow to import: it starts first and is waited for below
    from deployments.scaled import Layout, ScaleSettings, describe, start_apis, start_platform_front

    db = DatabaseSettings()
    scale = ScaleSettings()
    layout = Layout.plan(scale)
    if db.prefect_db_url:
        platform.database_url = db.prefect_db_url
    elif db.database == "postgres" or scale.scaled:
        print("Starting PostgreSQL for the Prefect server...", flush=True)
        platform.start_postgres(int(os.environ.get("OPEVA_POSTGRES_PORT", "0")) or None)
    print(f"Starting the Prefect server on {'PostgreSQL' if platform.database_url else 'SQLite'} (first start runs migrations, ~15 s; "
          f"{describe(layout)})...", flush=True)
    start_platform_front(platform, scale, layout)  # deployments/scaled.py: one server, or the scaled layout
    platform.start_mongo()
    os.environ.update({"PREFECT_API_URL": platform.prefect_api_url})
    if mlflow is not None:
        print("Waiting for MLflow...", flush=True)
        platform.wait_ready(mlflow)
        print(f"MLflow answered {time.monotonic() - mlflow.started_at:.1f} s after its start", flush=True)
        if use_docker:
            start_relay(platform, PlatformSettings().runtime_image)
    types = platform.setup_pools(docker=use_docker)  # after MLflow: set-up tells the pools whether it answers
    reconcilers = _reconcile_at_start(platform) if use_docker else []  # before any worker: each left job re-attached or made final
    reattacher = _reattach_at_start(platform)  # Slurm jobs whose watcher died: followed again (deployments/reconcile_slurm.py)
    for host in load_hosts().hosts:
        if host.start_worker:
            platform.start_worker(host.name, types[host.name])
    from deployments.control_pool import start_control_worker

    start_control_worker(platform)  # the control pool's runs (sweeps' parents, bundle switches) never hold a host's slot
    target_sync = None
    if use_docker:  # the hosts' inference targets, no bundle loaded (docs/inference.md); not fatal
        from deployments.inference_sync import TargetSync
        from deployments.inference_targets import start_inference_targets

        try:
            start_inference_targets(platform, PlatformSettings().runtime_image)
        except Exception as exc:  # noqa: BLE001 (jobs and the API work without them)
            print(f"Inference targets not started: {exc}", flush=True)
        target_sync = TargetSync(platform, PlatformSettings().runtime_image)  # the API's targets, started/stopped in the loop
    from deployments.rabbitmq_server import ensure_broker

    amqp_url, amqp_shown = ensure_broker(platform, PlatformSettings())  # live site data (docs/live-data.md)
    start_apis(platform, layout, OPEVA_AMQP_URL=amqp_url)
    ticks = [r.tick for r in (*reconcilers, reattacher, target_sync) if r is not None]

    def tick() -> None:
        for each in ticks:
            each()

    return types, amqp_shown, tick


def _reconcile_at_start(platform: Platform) -> list:
    """Jobs left by a previous ``make up`` (deployments/reconcile.py): live ones re-attached, the others
    made final and their containers removed. Returns the reconcilers the supervisor loop runs, one per
    engine of this machine (the default one, and each lab host's); an engine or Prefect that cannot be
    asked is printed, not fatal (the zombie automation still crashes its jobs)."""
    from deployments.reconcile import Reconciler, local_docker_pools

    out = []
    for engine_url, pools in local_docker_pools().items():
        started = time.monotonic()
        where = "" if engine_url is None else f" on {engine_url}"
        reconciler = None
        try:
            reconciler = Reconciler(platform.prefect_api_url, platform.prefect_auth_string, pools, engine_url)
            report = reconciler.at_start()
        except Exception as exc:  # noqa: BLE001
            print(f"Could not reconcile the jobs left by the last run{where}: {exc}", flush=True)
            if reconciler is not None:
                reconciler.close()
            continue
        print(f"Jobs left by the last run{where}: {report} ({time.monotonic() - started:.1f} s)", flush=True)
        out.append(reconciler)
    return out


def _reattach_at_start(platform: Platform):
    """The Slurm hosts' re-attacher after its first pass, or None without Slurm hosts here."""
    from deployments.reconcile_slurm import SlurmReattacher, local_slurm_pools

    pools = local_slurm_pools()
    if not pools:
        return None
    reattacher = SlurmReattacher(platform.prefect_api_url, platform.prefect_auth_string, pools, platform.data_dir)
    try:
        moved = reattacher.at_start()
    except Exception as exc:  # noqa: BLE001 (the next pass tries again)
        print(f"Could not look for Slurm jobs left without a watcher: {exc}", flush=True)
        return reattacher
    print(f"Slurm jobs left without a watcher: {len(moved)} re-attached", flush=True)
    return reattacher


def _auth_hint(platform: Platform) -> str:
    """How a shell gets Prefect's credentials: never the secret itself on the terminal."""
    if os.environ.get("OPEVA_PREFECT_AUTH_STRING"):
        return '"$OPEVA_PREFECT_AUTH_STRING"'
    return f'"$(cat {platform.home / "prefect" / "auth_string"})"'


def _banner(platform: Platform, settings: PlatformSettings, types: dict[str, str], amqp: str) -> str:
    ui = f"http://127.0.0.1:{settings.prefect_port}"
    return (
        f"\nOPEVA platform is up.\n"
        f"  Prefect UI:   {ui}\n"
        f"  Prefect API:  {platform.prefect_api_url}   (export PREFECT_API_URL={platform.prefect_api_url})\n"
        f"  OPEVA API:    {platform.api_url}   (docs: {platform.api_url}/docs)\n"
        f"  MongoDB:      {platform.mongo_uri}\n"
        f"  MLflow:       {settings.mlflow_browser_url if settings.mlflow else 'off (OPEVA_MLFLOW=0)'}\n"
        f"  RabbitMQ:     {amqp}\n"
        f"  Work pools:   {', '.join(f'{h} ({t})' for h, t in types.items())}, control (process: sweeps, bundle switches)\n"
        f"  Shared data:  {platform.data_dir}\n"
        f"  Logs:         {platform.logs_dir}\n"
        f"Try: export PREFECT_API_URL={platform.prefect_api_url} PREFECT_API_AUTH_STRING={_auth_hint(platform)}\n"
        f"     prefect deployment run 'run-simulation/local'\n"
        f"A child that dies is restarted (see Logs); Ctrl-C stops everything started here.\n"
        f"Running jobs keep running across a stop and are re-attached at the next start (docs/reliability.md)."
    )


def _ignore_stop_signals() -> None:
    """From here on the platform is stopping: more signals must not interrupt the clean-up half way."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def run() -> int:
    argparse.ArgumentParser(description="Run the OPEVA platform in the foreground (Ctrl-C stops it).").parse_args()
    settings = PlatformSettings()
    platform = Platform.from_settings(settings)
    if port_open(settings.api_port) and http_ok(f"{platform.api_url}/health") and http_ok(f"{platform.prefect_api_url}/health"):
        print(f"The platform is already running: API {platform.api_url}, Prefect UI http://127.0.0.1:{settings.prefect_port}")
        return 0

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        types, amqp, tick = _start(platform, _use_docker(settings))
        record_running(settings, mongo_uri=platform.env()["MONGO_URI"])  # what `make setup` reads
        print(_banner(platform, settings, types, amqp), flush=True)
        from deployments.supervisor import ChildKeepsDying, supervise

        try:
            # restarts dead children with back-off, removes containers of final runs; returns only by an exception
            supervise(platform, tick=tick)
        except ChildKeepsDying as exc:
            print(f"Stopping the platform: {exc}", file=sys.stderr, flush=True)
            return 1
    except KeyboardInterrupt:
        _ignore_stop_signals()  # a second Ctrl-C (or make's copy of it) must not cut the clean-up short
        print("\nStopping...", flush=True)
        return 0
    except StartupError as exc:
        print(f"Start-up failed: {exc}", file=sys.stderr)
        return 1
    finally:
        # stop() itself escalates to SIGKILL for children that linger.
        _ignore_stop_signals()
        (settings.home / RUNNING_FILE).unlink(missing_ok=True)
        platform.stop()
        print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run())
