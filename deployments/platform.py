"""Start the embedded platform: Prefect server, MongoDB-compatible server, work
pools and workers, and the REST API, all on 127.0.0.1.

``make up`` runs ``python -m deployments.up`` in the foreground; the test
suite starts the same services through :class:`Platform`, on free ports, so the
tests exercise exactly what users run.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import threading
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core.settings import PROJECT_ROOT, PlatformSettings
from deployments.file_modes import open_private_log, private_dir, private_secret
from deployments.postgres import drop_to

WORKER_QUERY_SECONDS = "0.5"  # Prefect's default (10 s) makes submit->Running 5-15 s; see bench/submit_latency.py
# A lost host shows offline (and its automatic jobs move) once Prefect's foreman sees 3 missed worker
# beats: 3 x 7 s + a 5 s foreman loop is <= 26 s after the worker dies (Prefect's 30 s beat and 15 s
# loop made it 20-45 s; issue 22 asks <= 35 s). A beat is one small API call per worker.
WORKER_HEARTBEAT_SECONDS = "7"
FOREMAN_LOOP_SECONDS = "5"


def worker_query_seconds() -> str:
    """How often each worker asks the server for runs: Prefect's own ``PREFECT_WORKER_QUERY_SECONDS``
    when the caller set it, else 0.5 s. Why it may be worth raising: every poll costs the server about
    15 ms of CPU (two sessions and the runs' query; its two bookkeeping writes run at most every 5 s
    per pool, deployments/poll_bookkeeping.py), so 6 workers at 0.5 s keep an idle SQLite server
    busy (bench/lab.py --idle-seconds); each doubling adds half an interval to the mean submit -> Running."""
    value = os.environ.get("PREFECT_WORKER_QUERY_SECONDS") or WORKER_QUERY_SECONDS
    try:
        if float(value) > 0:
            return value
    except ValueError:
        pass
    raise ValueError(f"PREFECT_WORKER_QUERY_SECONDS must be a positive number of seconds, not {value!r}")


class StartupError(RuntimeError):
    pass


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so ``finally`` blocks and atexit handlers run."""
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def mongo_ok(uri: str) -> bool:
    import pymongo

    try:
        with pymongo.MongoClient(uri, serverSelectionTimeoutMS=1000) as c:
            c.admin.command("ping")
        return True
    except Exception:
        return False


def prefect_cli() -> list[str]:
    exe = shutil.which("prefect")
    return [exe] if exe else [sys.executable, "-m", "prefect"]


@dataclass
class Service:
    """A child process and how to start it again (the supervisor restarts it with the same spec)."""

    name: str
    proc: subprocess.Popen
    log_path: Path
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ready: Callable[[], bool] = lambda: True
    timeout: float = 90
    user: str | None = None
    deaths: list[float] = field(default_factory=list)  # monotonic times of recent deaths
    restart_at: float | None = None  # set while waiting out the back-off
    started_at: float = 0.0  # monotonic time of the last spawn
    vital: bool = True  # False: when it keeps dying the supervisor gives up on it alone, the platform goes on


@dataclass
class Platform:
    """Child processes of one embedded platform, stopped in reverse order."""

    home: Path
    prefect_port: int
    mongo_port: int
    api_port: int
    data_dir: Path
    services: list[Service] = field(default_factory=list)
    database_url: str | None = None  # PostgreSQL for the Prefect server; None = SQLite in <home>/prefect
    mlflow_port: int = 5000  # deployments/mlflow_server.py

    @classmethod
    def from_settings(cls, s: PlatformSettings) -> "Platform":
        return cls(home=s.home, prefect_port=s.prefect_port, mongo_port=s.mongo_port, api_port=s.api_port, data_dir=s.shared_data_dir,
                   mlflow_port=s.mlflow_port)

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def prefect_api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def mongo_uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongo_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def prefect_auth_string(self) -> str:
        """Prefect's server credentials (``user:password``): OPEVA_PREFECT_AUTH_STRING, else one
        generated per platform home (0600). Only the platform's processes get it (this env):
        the server requires it on every route but /health (and on its websockets), the
        workers pass it to the flows' supervisor containers, simulators never see it."""
        explicit = os.environ.get("OPEVA_PREFECT_AUTH_STRING")
        if explicit:
            return explicit
        path = self.home / "prefect" / "auth_string"
        if not path.exists():
            private_dir(path.parent)
        return private_secret(path, lambda: f"opeva:{secrets.token_urlsafe(24)}")

    def env(self, **extra: str) -> dict[str, str]:
        """Environment shared by every child (and by tests that call the Prefect client)."""
        env = dict(os.environ)
        env.update(
            {
                "PREFECT_API_AUTH_STRING": self.prefect_auth_string,
                "PREFECT_SERVER_API_AUTH_STRING": self.prefect_auth_string,
                "PREFECT_API_URL": self.prefect_api_url,
                "PREFECT_HOME": str(self.home / "prefect"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "DO_NOT_TRACK": "1",
                "OPEVA_DATA_DIR": str(self.data_dir),
                "OPEVA_HOME": str(self.home),
                "OPEVA_PREFECT_PORT": str(self.prefect_port),
                "OPEVA_API_PORT": str(self.api_port),
                "OPEVA_MONGO_PORT": str(self.mongo_port),
                "OPEVA_MLFLOW_PORT": str(self.mlflow_port),
                "MONGO_URI": env.get("MONGO_URI") or self.mongo_uri,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])),
            }
        )
        env.update(extra)
        return env

    def start(
        self, name: str, cmd: list[str], ready: Callable[[], bool], timeout: float = 90, user: str | None = None, wait: bool = True,
        vital: bool = True, **env: str
    ) -> Service:
        if not self.services:
            # Children live in their own sessions (Ctrl-C reaches only us); make sure
            # they go with us however we exit, a failed start-up or SIGTERM included.
            atexit.register(self.stop)
            stop_on_sigterm()
        private_dir(self.logs_dir)  # logs name the platform's URLs and credentials' users: not world-readable
        from core.child_env import child_env  # each child gets only the secrets its service needs

        service = Service(name, None, self.logs_dir / f"{name}.log", cmd=cmd, env=child_env(name, self.env(**env)), ready=ready, timeout=timeout, user=user, vital=vital)  # type: ignore[arg-type]
        self.services.append(service)
        self.spawn(service, wait=wait)
        return service

    def spawn(self, service: Service, wait: bool = True) -> None:
        """(Re)start ``service``'s process and (unless not ``wait``) wait until it answers; StartupError if it dies or hangs."""
        with open_private_log(service.log_path) as log:
            service.proc = subprocess.Popen(
                service.cmd, env=service.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=str(PROJECT_ROOT), start_new_session=True, **drop_to(service.user),
            )
        self.write_pids()
        service.started_at = time.monotonic()
        if wait:
            self.wait_ready(service)

    def wait_ready(self, service: Service) -> None:
        """Wait until ``service`` answers, counting its timeout from its start."""
        deadline = service.started_at + service.timeout
        while not service.ready():
            if service.proc.poll() is not None:
                tail = service.log_path.read_text(errors="replace")[-2000:]
                raise StartupError(f"{service.name} exited with code {service.proc.returncode} while starting; end of {service.log_path}:\n{tail}")
            if time.monotonic() > deadline:
                kill_group(service.proc)
                raise StartupError(f"{service.name} did not become ready within {service.timeout:.0f} s; see {service.log_path}")
            time.sleep(0.3)

    def write_pids(self) -> None:
        """``<home>/children.json``: name -> pid of every child, for operators (and the fault tests)."""
        pids = {s.name: s.proc.pid for s in self.services if s.proc is not None}
        tmp = self.home / "children.json.tmp"
        tmp.write_text(json.dumps(pids, indent=1))
        tmp.replace(self.home / "children.json")

    # -- the components -------------------------------------------------

    def start_postgres(self, port: int | None = None) -> str:
        """A private PostgreSQL cluster in <home>/postgres for the Prefect server; returns its URL."""
        from deployments.postgres import LocalPostgres

        pg = LocalPostgres(self.home / "postgres", port or free_port())
        pg.init()
        service = self.start("postgres", pg.command(), pg.ready, timeout=60, user=pg.user)
        pg.require_passwords(service.proc.pid)  # a cluster made with trust by an older version
        pg.create_database()
        self.database_url = pg.url
        return pg.url

    def server_env(self) -> dict[str, str]:
        """The Prefect server's settings: its database (see README "Production (PostgreSQL)") and the foreman's loop."""
        liveness = {"PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS": FOREMAN_LOOP_SECONDS}
        if not self.database_url:
            # SQLite: one writer at a time; a longer lock wait beats "database is locked" errors in bursts.
            return {**liveness, "PREFECT_SERVER_DATABASE_TIMEOUT": "30"}
        return {
            **liveness,
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": self.database_url,
            "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": "20",  # bursts of submissions (Prefect #22314)
            "PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW": "20",
        }

    def start_prefect_server(self, **settings: str) -> None:
        """The Prefect server; ``settings`` are extra ``PREFECT_SERVER_*`` values for this start (tests)."""
        if http_ok(f"{self.prefect_api_url}/health"):
            print(f"Prefect server already answers on {self.prefect_api_url}; using it")
            return
        if port_open(self.prefect_port):
            raise StartupError(f"port {self.prefect_port} is taken by something that is not a Prefect server")
        private_dir(self.home / "prefect")  # prefect.db and the auth string
        self.start(
            "prefect-server",
            # Prefect's CLI with the per-run schema re-check memoised (see deployments/prefect_server.py)
            [sys.executable, "-m", "deployments.prefect_server", "server", "start", "--host", "127.0.0.1", "--port", str(self.prefect_port)],
            lambda: http_ok(f"{self.prefect_api_url}/health"),
            timeout=float(os.environ.get("OPEVA_PREFECT_START_TIMEOUT", "180")),  # first start runs migrations: slow on a busy machine
            **self.server_env(), **settings,
        )

    def start_mongo(self) -> None:
        if mongo_ok(self.mongo_uri):
            print(f"MongoDB-compatible server already answers on {self.mongo_uri}; using it")
            return
        store = self.home / "mongo"
        private_dir(store)
        self.start(
            "mongo",
            [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(self.mongo_port), "--storage-path", str(store), "--log-level", "WARNING"],
            lambda: mongo_ok(self.mongo_uri),
        )

    def setup_pools(self, hosts_file: Path | None = None, docker: bool | None = None) -> dict[str, str]:
        cmd = [sys.executable, "-m", "deployments.setup", "--mongo-uri", self.env()["MONGO_URI"]]
        if docker is False:
            cmd.append("--process")
        env = self.env(**({"OPEVA_HOSTS_FILE": str(hosts_file)} if hosts_file else {}))
        from core.child_env import child_env

        out = subprocess.run(cmd, env=child_env("setup", env), cwd=str(PROJECT_ROOT), capture_output=True, text=True)
        if out.returncode != 0:
            raise StartupError(f"deployment set-up failed:\n{out.stdout}\n{out.stderr[-3000:]}")
        types = {}
        for line in out.stdout.splitlines():
            if line.startswith("host "):
                host, rest = line[5:].split(":", 1)
                types[host] = rest.split()[0]
        return types

    def start_worker(self, pool: str, pool_type: str, name: str | None = None) -> Service:
        worker_name = name or f"{pool}@{socket.gethostname()}"

        return self.start(
            f"worker-{worker_name.replace('@', '-')}",
            worker_cli(pool, pool_type, worker_name, pool_limit(self.prefect_api_url, pool, self.prefect_auth_string)),
            lambda: worker_online(self.prefect_api_url, pool, worker_name, auth=self.prefect_auth_string),
            PREFECT_WORKER_QUERY_SECONDS=worker_query_seconds(),
            PREFECT_WORKER_HEARTBEAT_SECONDS=WORKER_HEARTBEAT_SECONDS,
        )

    def start_api(self, **env: str) -> None:
        if port_open(self.api_port):
            raise StartupError(f"port {self.api_port} is already in use: is the platform already running?")
        self.start(
            "api",
            [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(self.api_port), "--log-level", "warning"],
            lambda: http_ok(f"{self.api_url}/health"),
            **env,
        )

    def stop(self) -> None:
        for service in reversed(self.services):
            try:
                os.killpg(service.proc.pid, signal.SIGTERM)  # the group: grandchildren too
            except (ProcessLookupError, PermissionError):
                continue
        for service in reversed(self.services):
            try:
                service.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            kill_group(service.proc)
        self.services.clear()


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL what is left of a child's session (e.g. the uvicorn under a killed `prefect server start`)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def worker_cli(pool: str, kind: str, worker_name: str, limit: int | None) -> list[str]:
    """``prefect worker start`` for one host's pool, with ``--limit`` the pool's own concurrency limit.

    Why the worker holds the limit a second time: Prefect enforces a pool's limit only in the query a
    worker polls with, and on PostgreSQL (the scaled layout) that query skips a run whose Pending is
    being written (``FOR UPDATE SKIP LOCKED``) and hands out the next run in its slot. Measured with
    OPEVA_PREFECT_SERVERS=2: 3 to 4 Pending + Running runs on pools limited to 2 (bench/lab.py). The
    worker's limiter frees a slot only when the run's container or process has exited.

    A process pool's worker is Prefect's process worker with its runs forked from a warm fork server
    (deployments/process_worker.py): the same options, one Python per host instead of two per run.
    A Docker pool's is Prefect's Docker worker whose channel to the server reconnects within a few
    seconds after a lost link (deployments/docker_worker.py)."""
    if kind in ("process", "docker"):
        cmd = [sys.executable, "-m", f"deployments.{kind}_worker", "--pool", pool, "--name", worker_name]
    else:
        cmd = prefect_cli() + ["worker", "start", "--pool", pool, "--type", kind, "--name", worker_name]
    return cmd + (["--limit", str(limit)] if limit else [])


def _basic_auth(auth: str | None) -> httpx.BasicAuth | None:
    auth = auth or os.environ.get("PREFECT_API_AUTH_STRING")
    return httpx.BasicAuth(*auth.split(":", 1)) if auth and ":" in auth else None


def pool_limit(api_url: str, pool: str, auth: str | None = None) -> int | None:
    """The pool's concurrency limit as the server holds it now (set by ``make setup``, or changed in
    the Prefect UI since); None when it has none."""
    r = httpx.get(f"{api_url}/work_pools/{pool}", timeout=10, auth=_basic_auth(auth))
    r.raise_for_status()
    return r.json().get("concurrency_limit")


def worker_online(api_url: str, pool: str, worker_name: str | None = None, auth: str | None = None) -> bool:
    """Plain HTTP, so it works from sync and async callers alike."""
    try:
        r = httpx.post(f"{api_url}/work_pools/{pool}/workers/filter", json={}, timeout=5, auth=_basic_auth(auth))
        r.raise_for_status()
    except httpx.HTTPError:
        return False
    return any(w["status"] == "ONLINE" and (worker_name is None or w["name"] == worker_name) for w in r.json())
