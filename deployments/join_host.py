"""``make host NAME=<name>``: a compute host joins the platform from its own machine.

It needs only the Prefect server's URL and credentials (``OPEVA_PREFECT_API_URL``,
``OPEVA_PREFECT_AUTH_STRING``); everything else comes from the server, so nothing is copied by
hand: the host's entry of the hosts file (``make setup`` put it in the host's pool template),
its runtime image, and the data root's id (a Prefect variable). Before it starts the worker, it
checks what would otherwise fail later, one job at a time:

1. the server answers with these credentials and has a pool for this host (else: add the host to
   the server's hosts.yaml and run ``make setup`` there);
2. this machine's Docker engine answers and holds the runtime image; which of the simulator
   images the host may run are present (a job naming a missing one is refused at submit);
3. one of the host's volumes holds the platform's data root: the same id as the server's
   (core/data_root_id.py), not an empty folder of the same name.

Then it becomes the host's worker (Prefect's, through deployments/docker_worker.py or deployments/process_worker.py), in the foreground. ``--check``
stops after the checks (exit 0 when all passed, 2 when one failed).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core.data_root_id import VARIABLE, read_marker
from core.hosts import Host
from deployments.platform import WORKER_HEARTBEAT_SECONDS, worker_cli, worker_query_seconds
from core.prefect_rest import PrefectRest


class JoinRefused(Exception):
    """A check failed: the message says what and what to do."""


@dataclass
class Pool:
    host: Host
    kind: str  # docker | process
    runtime_image: str | None
    data_root_id: str | None
    concurrency_limit: int | None = None  # the pool's, as the server holds it (the worker holds it too: platform.worker_cli)


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def ok(self, line: str) -> None:
        self.lines.append(f"ok    {line}")

    def warn(self, line: str) -> None:
        self.lines.append(f"note  {line}")

    def fail(self, line: str) -> None:
        self.lines.append(f"FAIL  {line}")
        self.problems.append(line)


def read_pool(api_url: str, auth: str | None, name: str) -> Pool:
    """The host as the server knows it; JoinRefused when the server or the pool is not there."""
    prefect = PrefectRest(api_url, auth)  # the same plain-HTTP client `make up`'s reconciler uses
    http = prefect.http
    try:
        try:
            health = http.get("/health")
        except httpx.HTTPError as exc:
            raise JoinRefused(f"the Prefect server at {api_url} does not answer: {exc}") from None
        pool = http.get(f"/work_pools/{name}")
        if 401 in (health.status_code, pool.status_code):
            raise JoinRefused(f"the Prefect server at {api_url} refused the credentials (OPEVA_PREFECT_AUTH_STRING)")
        if pool.status_code == 404:
            raise JoinRefused(f"the server has no pool {name!r}: add the host to its hosts.yaml and run `make setup` there")
        if pool.status_code != 200:
            raise JoinRefused(f"the Prefect server at {api_url} answered {pool.status_code} for pool {name!r}: {pool.text[:200]}")
        var = http.get(f"/variables/name/{VARIABLE}")
        root_id = var.json().get("value") if var.status_code == 200 else None
    finally:
        prefect.close()
    body = pool.json()
    config = (body.get("base_job_template") or {}).get("job_configuration") or {}
    settings = (config.get("env") or {}).get("OPEVA_HOST_SETTINGS")
    if not settings:
        raise JoinRefused(f"pool {name!r} was not made by `make setup` (no host settings in its template)")
    return Pool(Host.model_validate_json(settings), body.get("type") or "docker", config.get("image"), root_id, body.get("concurrency_limit"))


def check_engine(pool: Pool, report: Report) -> None:
    """This machine's engine answers and holds the images the host runs."""
    import docker

    try:
        engine = docker.from_env(timeout=15)
        engine.ping()
    except Exception as exc:  # noqa: BLE001 (any failure to reach it says the same)
        report.fail(f"no Docker engine answers here ({exc}); jobs on host {pool.host.name} run as containers")
        return
    try:
        tags = {t for image in engine.images.list() for t in image.tags}
    finally:
        engine.close()
    if pool.runtime_image and pool.runtime_image not in tags:
        report.fail(f"runtime image {pool.runtime_image} is not on this engine: build it here (`make image` with the same OPEVA_IMAGE)")
    elif pool.runtime_image:
        report.ok(f"runtime image {pool.runtime_image}")
    for repo in dict.fromkeys([r for r in [pool.host.simulator_image, *pool.host.allowed_images] if r]):
        present = sorted(t.rsplit(":", 1)[1] for t in tags if t.rsplit(":", 1)[0] == repo)
        if present:
            report.ok(f"simulator image {repo}: tags {', '.join(present)}")
        else:
            report.warn(f"simulator image {repo}: no tag here (jobs naming it are refused at submit until it is loaded)")


def check_data_root(pool: Pool, report: Report) -> None:
    """One of the host's volumes is the platform's data root (same id as the server's)."""
    sources = [v.split(":", 1)[0] for v in pool.host.volumes if ":" in v]
    if pool.host.data == "local":  # its own folder at the data root's path; each job's files are copied (core/host_data.py)
        report.ok(f"data: local: the platform copies each job's files to {', '.join(sources) or 'the volumes'} through this engine")
        return
    if pool.data_root_id is None:
        report.warn("the server publishes no data-root id (run `make setup` there): the data root was not checked")
        return
    for src in sources:
        if read_marker(Path(src)) == pool.data_root_id:
            report.ok(f"data root {src} is the platform's (id {pool.data_root_id[:8]}…)")
            return
    report.fail(f"none of host {pool.host.name}'s volumes ({', '.join(sources) or 'none'}) holds the platform's data root here "
                f"(.opeva-data-root with id {pool.data_root_id[:8]}…): mount the shared data root at that path")


def worker_command(name: str, kind: str, limit: int | None) -> list[str]:
    return worker_cli(name, kind, f"{name}@{socket.gethostname()}", limit)


def worker_env(api_url: str, auth: str | None) -> dict[str, str]:
    """The worker's settings: the server's URL as this machine reaches it (the runs it starts get the same)."""
    env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_WORKER_QUERY_SECONDS": worker_query_seconds(),
           "PREFECT_WORKER_HEARTBEAT_SECONDS": WORKER_HEARTBEAT_SECONDS}
    if auth:
        env["PREFECT_API_AUTH_STRING"] = auth
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Join this machine to the platform as host NAME (docs/hosts.md).")
    parser.add_argument("--name", required=True, help="the host's name in the server's hosts.yaml")
    parser.add_argument("--check", action="store_true", help="only check; do not start the worker")
    args = parser.parse_args(argv)
    api_url = os.environ.get("OPEVA_PREFECT_API_URL") or os.environ.get("PREFECT_API_URL")
    if not api_url:
        print("make host: set OPEVA_PREFECT_API_URL to the Prefect server's API (e.g. http://server:4200/api)", file=sys.stderr)
        return 2
    auth = os.environ.get("OPEVA_PREFECT_AUTH_STRING") or os.environ.get("PREFECT_API_AUTH_STRING")
    try:
        pool = read_pool(api_url, auth, args.name)
    except JoinRefused as exc:
        print(f"make host: {exc}", file=sys.stderr)
        return 2
    report = Report()
    report.ok(f"Prefect server {api_url}: pool {args.name} ({pool.kind})")
    if pool.kind == "docker":
        check_engine(pool, report)
    check_data_root(pool, report)
    print("\n".join(report.lines), flush=True)
    if report.problems:
        print(f"make host: {len(report.problems)} check(s) failed; the worker was not started", file=sys.stderr)
        return 2
    if args.check:
        return 0
    cmd = worker_command(args.name, pool.kind, pool.concurrency_limit)
    print(f"make host: starting the worker of {args.name}: {' '.join(cmd[-6:])}", flush=True)
    os.execvpe(cmd[0], cmd, worker_env(api_url, auth))
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
