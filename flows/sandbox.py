"""The simulator's container: a sibling of the supervisor, started through the Docker API.

Why a sibling container (the way Argo Workflows' executor wraps user containers):
an upstream simulator image has its own ENTRYPOINT, its own Python and pins that
conflict with Prefect's, so it cannot run inside the flow's container. The flow
(the supervisor, in the runtime image, holding Prefect's credentials and the
Docker socket) starts the user's image *unchanged* next to itself and watches it.
The simulator's container gets none of that:

- runs as an unprivileged uid (the host's ``run_as``), ``no-new-privileges``, no capabilities;
- no Docker socket, no Prefect URL or credentials, no platform environment: only the
  contract's ``OPEVA_*`` variables, MLflow's addresses and the host's ``simulator_env``;
- not the host's network: the jobs network, where the only service is the platform's MLflow
  (flows/job_network.py, docs/sandbox-network.md), or no network at all;
- the data root mounted **read-only** at the host's ``data_mount`` (``/data``), with only the
  job's own folder read-write on top (and its ``mlflow/`` over ``<data_mount>/mlflow``),
  so it cannot write outside its job folder;
- it joins the supervisor's PID namespace (``pid_mode=container:<supervisor>``): when the
  supervisor's PID 1 dies for any reason (killed, OOM, engine restart), the kernel kills
  every process of that namespace, so no simulator outlives its supervisor. A uid-65534
  process cannot read the environment of the supervisor's root processes (ptrace rules);
- labels ``opeva.job_id``, ``opeva.flow_run_id``, ``opeva.role``, ``opeva.supervisor`` so
  :func:`reap` finds leftovers.

No Prefect import here: :mod:`flows.simulation` turns what happens into Prefect state and logs.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import docker
from docker.errors import APIError, ImageNotFound, NotFound
from docker.types import DeviceRequest

from core import containers
from core.job_io import CHUNK, LineSplitter
from flows.engine_log import LogMark, follow_frames, rest_of_log

STOP_TIMEOUT_SECONDS = 3  # docker stop: SIGTERM, then SIGKILL after this
LINE_QUEUE = 2000  # lines read ahead of the mirror; the engine keeps the rest on disk (bounded memory)
OOM_EVENT_GRACE = 2.0  # seconds a 137 without the OOMKilled mark waits for the engine's late ``oom`` event
EXITED_KEEP_SECONDS = 60  # exited containers older than this are removed by reap()

log = logging.getLogger("opeva.sandbox")


class SimulatorImageMissing(RuntimeError):
    """The image is not on the host; images are never pulled at run time."""


class SimulatorImageRefused(RuntimeError):
    """The image's repository is not in the host's allow-list."""


@dataclass
class SimulatorSpec:
    """Everything the simulator's container is made of (built by flows.simulation)."""

    image: str
    job_id: str
    flow_run_id: str
    host: str
    data_root: str  # host path of the shared data root (the same path in the supervisor)
    data_mount: str  # where the simulator sees it
    job_dir: str  # host path of the job's folder
    run_as: str
    env: dict[str, str]
    command: list[str] | None = None  # None: the image's own CMD
    limits: dict[str, Any] = field(default_factory=dict)  # mem_limit, nano_cpus, device_requests
    supervisor_id: str | None = None  # the supervisor's container id (for pid_mode)
    network: str = "none"  # the jobs network's name (flows/job_network.py), or "none": no network
    mlflow_dir: str | None = None  # host path of the job's own folder seen at <data_mount>/mlflow

    @property
    def name(self) -> str:
        return f"opeva-sim-{self.job_id}"

    def create_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``containers.create``; the one place that says what it may do."""
        job_in_container = f"{self.data_mount}/{_relative(self.job_dir, self.data_root)}"
        kwargs: dict[str, Any] = {
            "image": self.image,
            "command": self.command,
            "name": self.name,
            "user": self.run_as,
            "environment": dict(self.env),
            "security_opt": ["no-new-privileges:true"],
            "cap_drop": ["ALL"],
            "privileged": False,
            "volumes": {
                self.data_root: {"bind": self.data_mount, "mode": "ro"},
                self.job_dir: {"bind": job_in_container, "mode": "rw"},
                # upstream always writes <base>/mlflow/mlruns: the job's own folder, never the shared root
                **({self.mlflow_dir: {"bind": f"{self.data_mount}/mlflow", "mode": "rw"}} if self.mlflow_dir else {}),
            },
            "labels": {
                containers.ROLE: containers.SIMULATOR_ROLE,
                containers.JOB_ID: self.job_id,
                containers.FLOW_RUN_ID: self.flow_run_id,
                containers.HOST: self.host,
                containers.SUPERVISOR: self.supervisor_id or "",
            },
            "detach": True,
            "stdin_open": False,
            "tty": False,
        }
        # Never the host's network: the jobs network (no host address, only MLflow's relay on it) or none
        kwargs["network_mode" if self.network == "none" else "network"] = self.network
        if self.supervisor_id:
            kwargs["pid_mode"] = f"container:{self.supervisor_id}"
        for key in ("mem_limit", "memswap_limit", "nano_cpus", "pids_limit", "ulimits", "log_config", "tmpfs"):
            if self.limits.get(key):
                kwargs[key] = self.limits[key]
        if self.limits.get("device_requests"):
            kwargs["device_requests"] = [_device_request(r) for r in self.limits["device_requests"]]
        return kwargs


def _relative(path: str, root: str) -> str:
    from pathlib import Path

    return str(Path(path).relative_to(root))


def _device_request(raw: dict[str, Any]) -> DeviceRequest:
    return DeviceRequest(
        driver=raw.get("Driver", ""), count=raw.get("Count", 0), device_ids=raw.get("DeviceIDs"),
        capabilities=raw.get("Capabilities"), options=raw.get("Options"),
    )


def docker_client() -> docker.DockerClient:
    return docker.from_env(timeout=30)


def reachable_docker() -> docker.DockerClient | None:
    """The engine when this process was given one and it answers; None on process pools or
    without a socket (callers then run without containers, or have nothing to clean)."""
    try:
        client = docker_client()
        client.ping()
        return client
    except Exception:
        return None


class SimulatorContainer:
    """One started simulator container: its output lines, its exit code, its stop."""

    def __init__(self, client: docker.DockerClient, spec: SimulatorSpec, before_start: Any = None) -> None:
        """``before_start(container_id)`` runs between create and start (the job's files name the container
        before the simulator can write them)."""
        self.client = client
        self.spec = spec
        self.lines: queue.Queue[str | None] = queue.Queue(maxsize=LINE_QUEUE)
        self.exit_code: int | None = None
        self.wait_error: str | None = None
        self.oom_killed = False
        self._done = threading.Event()
        self.container = _create(client, spec)  # one engine call on the way to the first line (bench/overhead.py)
        if before_start is not None:
            before_start(self.container.id)
        self.container.start()
        threading.Thread(target=self._pump, daemon=True, name="sim-logs").start()
        threading.Thread(target=self._wait, daemon=True, name="sim-wait").start()

    @property
    def id(self) -> str:
        return self.container.id

    def _pump(self) -> None:
        """stdout and stderr, line by line (long lines cut), until the container ends, then
        what the engine's follow stream may have missed (flows/engine_log.py).

        The queue is bounded: when the mirror falls behind, this thread waits and the
        engine keeps the output in its (rotated) log file, so memory stays bounded.
        """
        splitter, mark = LineSplitter(), LogMark()

        def feed(payload: bytes) -> None:
            for start in range(0, len(payload), CHUNK):
                for line in splitter.feed(payload[start:start + CHUNK]):
                    self.lines.put(line)

        try:
            for frame in follow_frames(self.container):
                feed(mark.passed(frame))
        except (APIError, OSError) as exc:  # removed under us: the wait thread reports it
            log.debug("log stream of %s ended: %s", self.spec.name, exc)
        try:
            self._done.wait()  # ended: the engine's log now holds all of the container's output
            for payload in rest_of_log(self.client, self.container.id, mark):
                feed(payload)
        except Exception as exc:  # removed (a stop) or the engine gone, even mid-read: nothing more to read
            log.debug("log of %s not read again: %s", self.spec.name, exc)
        finally:
            for line in splitter.flush():
                self.lines.put(line)
            self.lines.put(None)

    def _wait(self) -> None:
        """The exit code, read from the container we did not auto-remove (no race)."""
        try:
            self.exit_code = int(self.container.wait()["StatusCode"])
            self.oom_killed = self._state().get("OOMKilled") is True
        except NotFound:
            self.wait_error = "the simulator's container was removed before it ended"
            self.exit_code = -1
        except Exception as exc:  # the engine restarted, the socket went away...
            self.wait_error = f"lost the simulator's container: {exc}"
            self.exit_code = self._exit_code_after_error()
        finally:
            self._done.set()

    def _exit_code_after_error(self) -> int:
        for _ in range(10):
            try:
                self.container.reload()
                state = self.container.attrs["State"]
                if not state.get("Running"):
                    return int(state.get("ExitCode", -1))
            except NotFound:
                return -1
            except Exception:
                pass
            time.sleep(1)
        return -1

    def _state(self) -> dict[str, Any]:
        try:
            return self.client.api.inspect_container(self.container.id).get("State") or {}
        except (APIError, NotFound):
            return {}

    def settle_oom_mark(self) -> bool:
        """True when the kernel's OOM killer ended the simulator; call it after the container ended.

        Why not only ``State.OOMKilled``: Docker 20.10 (Debian 12's) sets that mark only when
        containerd's OOM event reaches it before the exit event; under load the order flips and the
        mark stays false (CI saw a memory hog end 137 without it). The engine still logs an ``oom``
        event for the container, late or not, so a 137 without the mark looks there, waiting up to
        ``OOM_EVENT_GRACE`` seconds for a late one.
        """
        if self.oom_killed or self.exit_code != 137:
            return self.oom_killed
        self.oom_killed = oom_event_logged(self.client, self.container.id, self._state().get("StartedAt") or "")
        return self.oom_killed

    def pids(self) -> tuple[int, int] | None:
        """(processes now, limit) of the container, from the engine; None when unknown."""
        try:
            stats = self.client.api.stats(self.container.id, stream=False, one_shot=True)
        except Exception:
            return None
        pids = stats.get("pids_stats") or {}
        return (int(pids["current"]), int(pids.get("limit") or 0)) if "current" in pids else None

    @property
    def ended(self) -> bool:
        return self._done.is_set()

    def stop_and_remove(self) -> None:
        """SIGTERM, SIGKILL after STOP_TIMEOUT_SECONDS, then remove: a stopped job leaves no container."""
        if self.ended:  # exited by itself: nothing to stop, remove at once
            _remove_quietly(self.client, self.container.id)
            return
        try:
            self.container.stop(timeout=STOP_TIMEOUT_SECONDS)
        except NotFound:
            return
        except APIError as exc:
            log.warning("could not stop %s: %s", self.spec.name, exc)
        self._done.wait(timeout=5)
        _remove_quietly(self.client, self.container.id)


def oom_event_logged(client: docker.DockerClient, container_id: str, started_at: str, grace: float = OOM_EVENT_GRACE) -> bool:
    """Whether the engine logged an ``oom`` event for this container, waiting ``grace`` seconds for a late one."""
    started = _engine_time(started_at) or time.time() - 24 * 3600
    stream = None
    try:
        stream = client.events(since=int(started) - 1, until=round(time.time() + grace, 3), decode=True,
                               filters={"type": "container", "container": container_id, "event": "oom"})
        return any(True for _ in stream)
    except (APIError, OSError, ValueError) as exc:
        log.debug("could not read the engine's events for %s: %s", container_id, exc)
        return False
    finally:
        if stream is not None:
            stream.close()


def _engine_time(value: str) -> float | None:
    """Seconds since the epoch of an engine timestamp (RFC 3339, nanoseconds cut); None when unset."""
    if not value or value[:4] == "0001":
        return None
    try:
        return datetime.fromisoformat(value[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return None


def _create(client: docker.DockerClient, spec: SimulatorSpec) -> Any:
    """Create the container; the missing image and a retry's leftover of the same name are
    handled when the engine says so, not looked up before every start."""
    try:
        return client.containers.create(**spec.create_kwargs())
    except ImageNotFound:
        raise SimulatorImageMissing(
            f"image {spec.image!r} is not present on host {spec.host!r}; images are never pulled: "
            f"build or `docker load` it on {spec.host!r} first"
        ) from None
    except APIError as exc:
        if exc.status_code != 409:
            raise
    _remove_quietly(client, spec.name)  # a retry of the same job reuses the name
    return client.containers.create(**spec.create_kwargs())


def _remove_quietly(client: docker.DockerClient, name_or_id: str) -> None:
    try:
        client.api.remove_container(name_or_id, force=True)
    except NotFound:
        pass
    except APIError as exc:
        if "already in progress" not in str(exc):
            log.warning("could not remove container %s: %s", name_or_id, exc)


def remove_for_run(client: docker.DockerClient, flow_run_id: str) -> int:
    """Force-remove every simulator container of one flow run (the supervisor's last act)."""
    found = client.containers.list(ignore_removed=True, all=True, filters=containers.simulators_of(flow_run_id))
    for c in found:
        _remove_quietly(client, c.id)
    return len(found)


def _finished_seconds_ago(attrs: dict[str, Any]) -> float:
    finished = _engine_time((attrs.get("State") or {}).get("FinishedAt") or "")
    return time.time() - finished if finished else 0.0


def reap(client: docker.DockerClient) -> list[str]:
    """Remove OPEVA's leftovers on this engine; returns the names removed.

    - a running simulator whose supervisor is not running (cannot happen while the PID
      namespace is shared; kept for engines where it is not);
    - exited simulator and supervisor containers that ended over EXITED_KEEP_SECONDS ago
      (supervisors are not auto-removed, so the worker always reads their exit code).
    """
    removed = []
    for c in client.containers.list(ignore_removed=True, all=True, filters={"label": containers.ROLE}):
        role = c.labels.get(containers.ROLE)
        running = c.status in ("running", "restarting", "paused", "created")
        if role == "simulator" and running:
            sup = c.labels.get(containers.SUPERVISOR)
            if sup and _running(client, sup):
                continue
            if not sup:
                continue  # started outside a container (process pool): its supervisor removes it
        elif running or _finished_seconds_ago(c.attrs) < EXITED_KEEP_SECONDS:
            continue
        _remove_quietly(client, c.id)
        removed.append(c.name)
    return removed


def _running(client: docker.DockerClient, container_id: str) -> bool:
    try:
        return client.api.inspect_container(container_id)["State"]["Running"]
    except NotFound:
        return False
