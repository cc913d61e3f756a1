"""The command a run's container starts with: one Python, one import of Prefect,
and cancellation of started runs kept working.

Why not Prefect's default container command, ``prefect flow-run execute``: it
imports Prefect's CLI and runner, then starts a second Python that imports
Prefect again to run the flow. On a 2-core host each import costs about 2.5 s,
and the pair is most of the time between submit and Running (bench/submit_latency.py).

Why not ``python -m prefect.engine`` on its own: in Prefect 3.8 the worker only
cancels runs whose container never started; a started run is cancelled by the
runner inside ``prefect flow-run execute``. With the engine alone, a Cancel in the
UI, ``prefect flow-run cancel`` or ``POST /stop`` would leave the job running.

So this entry point imports Prefect's engine once, then forks. The child
runs ``prefect.engine`` exactly as ``python -m prefect.engine`` would, with
those imports already in memory. The parent is the container's PID 1: it watches
the run's state and, when cancellation is asked for, records Cancelled and sends
the engine SIGUSR1 (the simulation flow then removes its simulator's container,
ships its logs and exits without proposing a state; SIGTERM would make Prefect's
engine force Crashed over Cancelled), then SIGKILL after a grace period. It also forwards SIGTERM/SIGINT (``docker stop``) to the child.

The parent is also the simulator's keeper (flows/sandbox.py): the simulator's
container shares this container's PID namespace, so when this PID 1 ends, the
kernel kills whatever the simulator still runs; before ending, unless the engine
exited 0 by itself, the parent force-removes the run's simulator containers (in case
the engine was killed before its own ``finally``). Once per start the engine's side
removes OPEVA leftovers on the engine (:func:`flows.sandbox.reap`, in the thread that
warms docker-py). Being PID 1 of a namespace the simulator shares, the parent also
reaps the simulator's orphaned processes.

    command: python -m flows.container_entry      (set by deployments/setup.py)
"""

from __future__ import annotations

import logging
import os
import runpy
import signal
import sys
import threading
import time
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY, PREFECT_API_REQUEST_TIMEOUT, PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings
from prefect.states import Cancelled

from core.prefect_rest import PrefectRest

STATE_POLL_SECONDS = 1.0  # how soon a cancellation is seen (a stop must read `stopped` within 3 s); one small GET per poll
RECORD_RETRY_SECONDS = 2.0
KILL_GRACE_SECONDS = 10.0  # SIGTERM first, SIGKILL after this
WAIT_STEP_SECONDS = 0.1
REQUEST_TIMEOUT_SECONDS = 10.0
RECORD_ATTEMPTS = 15  # about 30 s to record Cancelled across a server restart

log = logging.getLogger("opeva.container")


def _preload() -> None:
    """Import Prefect's engine before the fork, so the child inherits it.

    The flow's own module is left to the engine: which flow runs is only known
    once the engine reads the run, and importing every flow here would cost
    the dataset flow's pandas (~0.4 s) to each simulation.
    """
    import prefect.engine  # noqa: F401
    import prefect.flow_engine  # noqa: F401

    from flows.client_tls import install

    install()  # the run's Prefect clients share one TLS context (flows/client_tls.py)


def _warm_docker_and_reap() -> None:
    """Import docker-py while the engine waits on the API (reading the run, the deployment,
    proposing Running), then remove OPEVA's leftovers on the engine (once per start).

    Why here: a simulation needs docker-py right after Running, and importing it then cost
    ~0.12 s on the way to the simulator's first line (bench/overhead.py); before the fork it
    would only move that time before Running. Why the reaping is here and not in the parent:
    the parent then needs docker-py only after an unclean end (:func:`main`), so a run imports
    it once, not twice (a run's CPU is the platform's throughput on a small host, bench/lab.py).
    This thread imports docker-py and flows.sandbox, which import nothing that imports the
    engine's flow modules, so it cannot deadlock with the engine's imports."""
    try:
        import docker  # noqa: F401
        import docker.types  # noqa: F401
    except Exception:  # the engine imports it again where it is needed and says what failed
        return
    _reap_leftovers()


def _run_engine_in_child() -> None:
    """Become the flow engine; never returns to the caller's code."""
    os.setpgid(0, 0)  # own process group: the parent can signal the engine and its simulator at once
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    sys.argv = [sys.argv[0]]
    threading.Thread(target=_warm_docker_and_reap, daemon=True, name="warm-imports").start()
    try:
        runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    # a normal interpreter exit, so Prefect's log shipper flushes at exit
    sys.exit(code)


class StateReader:
    """Whether the run is Cancelling: one small GET of the run (core/prefect_rest.py), its state type read.

    Why not Prefect's client, as before: building it under temporary settings (no retries: a poll
    that fails is simply made again at the next poll, and a retrying call would keep this process
    and the container alive long after the engine ended whenever the server is down) cost 0.16 CPU-s
    per run, and every poll then validated a whole FlowRun model (py-spy, GIL held, of the run
    containers under bench/lab.py). The address, credentials and TLS rule are Prefect's own settings."""

    def __init__(self, flow_run_id: UUID) -> None:
        from flows.client_tls import shared_context

        self.run_id = str(flow_run_id)
        self.rest = PrefectRest(str(PREFECT_API_URL.value() or ""), _secret(PREFECT_API_AUTH_STRING.value()) or None,
                                api_key=_secret(PREFECT_API_KEY.value()) or None, verify=shared_context(),
                                timeout=REQUEST_TIMEOUT_SECONDS)

    def __enter__(self) -> StateReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.rest.close()

    def is_cancelling(self) -> bool:
        try:
            return self.rest.state_type(self.run_id) == "CANCELLING"
        except (httpx.HTTPError, ValueError) as exc:  # the server may be restarting: the next poll
            log.debug("could not read the flow run's state: %s", exc)
            return False


def _secret(value: Any) -> str:
    """A setting's plain text whether Prefect hands it over as a SecretStr or a str."""
    if value is None:
        return ""
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


class Supervisor:
    """The parent: wait for the engine, act on cancellation and stop signals."""

    def __init__(self, flow_run_id: UUID, child_pid: int) -> None:
        self.flow_run_id = flow_run_id
        self.child_pid = child_pid
        self.terminated_at: float | None = None
        self.cancel_seen = False
        self.ended_cleanly = False  # the engine exited 0 by itself: its flow's ``finally`` ran

    def _signal_child(self, sig: int) -> None:
        try:
            os.killpg(self.child_pid, sig)
        except ProcessLookupError:
            pass

    def terminate(self, reason: str, sig: int = signal.SIGTERM) -> None:
        if self.terminated_at is None:
            log.info("%s: stopping the flow run's processes", reason)
            self.terminated_at = time.monotonic()
            if sig == signal.SIGTERM:
                self._signal_child(sig)
            else:
                try:
                    os.kill(self.child_pid, sig)
                except ProcessLookupError:
                    pass

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.terminate(f"received {signal.Signals(signum).name}")

    def wait(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        with StateReader(self.flow_run_id) as reader:
            return self._wait(reader)

    def _child_status(self) -> int | None:
        """Reap every exited process (orphans of the simulator land here); the engine's status."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return 0
            if pid == 0:
                return None
            if pid == self.child_pid:
                return status

    def _wait(self, reader: StateReader) -> int:
        next_poll = time.monotonic() + STATE_POLL_SECONDS
        while True:
            status = self._child_status()
            if status is not None:
                break
            now = time.monotonic()
            if now >= next_poll and not self.cancel_seen:
                next_poll = now + STATE_POLL_SECONDS
                if reader.is_cancelling():
                    self.cancel_seen = True
                    self._record_cancelled()
                    # SIGUSR1, not SIGTERM: the engine answers SIGTERM by forcing Crashed over
                    # Cancelled. The flow stops its simulator, ships its logs and exits without
                    # proposing a state; a flow that does not handle SIGUSR1 just ends.
                    self.terminate("cancellation requested", signal.SIGUSR1)
            if self.terminated_at is not None and now - self.terminated_at > KILL_GRACE_SECONDS:
                self._signal_child(signal.SIGKILL)
            time.sleep(WAIT_STEP_SECONDS)
        self.ended_cleanly = self.terminated_at is None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        self._signal_child(signal.SIGKILL)  # the simulator must not outlive the engine
        if self.cancel_seen:
            return 0
        if reader.is_cancelling():  # cancelled before the engine ran: it exited without a final state
            self._record_cancelled()
            return 0
        return os.waitstatus_to_exitcode(status)

    def _record_cancelled(self) -> None:
        """With Prefect's client (only a cancelled run gets here), no client retries: the attempts are ours."""
        with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 0, PREFECT_API_REQUEST_TIMEOUT: REQUEST_TIMEOUT_SECONDS}):
            with get_client(sync_client=True) as client:
                self._record_cancelled_with(client)

    def _record_cancelled_with(self, client: Any) -> None:
        for attempt in range(RECORD_ATTEMPTS):
            try:
                client.set_flow_run_state(
                    self.flow_run_id, Cancelled(message="Cancelled on request; the job's files are kept."), force=True
                )
                log.info("flow run %s recorded as Cancelled", self.flow_run_id)
                return
            except Exception as exc:
                log.warning("could not record the cancellation of %s (attempt %d): %s", self.flow_run_id, attempt + 1, exc)
                time.sleep(RECORD_RETRY_SECONDS)
        log.error("gave up recording the cancellation of %s: it stays Cancelling unless the OPEVA API's stop check records it", self.flow_run_id)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    raw_id = os.environ.get("PREFECT__FLOW_RUN_ID", "")
    try:
        flow_run_id = UUID(raw_id)
    except ValueError:
        log.error("PREFECT__FLOW_RUN_ID must hold a flow run id, got %r", raw_id)
        return 1
    _preload()
    pid = os.fork()
    if pid == 0:
        _run_engine_in_child()
    try:
        os.setpgid(pid, pid)  # also here, so no signal can precede the child's own setpgid
    except (PermissionError, ProcessLookupError):
        pass  # the child got there first (or already exited)
    supervisor = Supervisor(flow_run_id, pid)
    try:
        return supervisor.wait()
    finally:
        if not supervisor.ended_cleanly:  # a clean end already removed its simulator (flows/simulation.py)
            _remove_simulators(flow_run_id)


def _reap_leftovers() -> None:
    from flows.sandbox import reachable_docker, reap

    client = reachable_docker()
    if client is None:
        return

    try:
        removed = reap(client)
        if removed:
            log.info("removed leftover containers: %s", ", ".join(removed))
    except Exception as exc:  # best effort: the next start tries again
        log.warning("could not reap leftover containers: %s", exc)


def _remove_simulators(flow_run_id: UUID) -> None:
    """The simulator must not outlive its supervisor, even if the engine never ran its ``finally``."""
    from flows.sandbox import reachable_docker, remove_for_run

    client = reachable_docker()
    if client is None:
        return

    try:
        if (n := remove_for_run(client, str(flow_run_id))):
            log.info("removed %d simulator container(s) of flow run %s", n, flow_run_id)
    except Exception as exc:
        log.warning("could not remove the simulator containers of %s: %s", flow_run_id, exc)


def _leave(code: int) -> None:
    """Exit at once, once the simulators are removed: a normal interpreter exit with Prefect's client
    loaded spent about 4 s in teardown here (measured in the runtime image: 3.9-4.3 s against
    0.04-0.3 s with ``os._exit``), and a stopped job's container must be gone within seconds. This
    process ships nothing to Prefect itself (its lines go to stderr), so nothing is lost."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    try:
        exit_code = main()
    except SystemExit:
        # Only the engine's child raises it (_run_engine_in_child): it must leave through a normal
        # interpreter exit, whose thread-exit hooks drain Prefect's log shipper. Caught below, it was
        # printed as a traceback and left through os._exit(1): every supervisor exited 1 and a
        # run's last log batch could be lost.
        raise
    except BaseException:  # noqa: BLE001 - said on stderr, then the same fast exit
        import traceback

        traceback.print_exc()
        exit_code = 1
    _leave(exit_code)
