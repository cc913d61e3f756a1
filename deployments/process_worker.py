"""A process pool's worker (Slurm hosts, hosts without Docker): Prefect's process worker whose
runs are forked from a warm fork server instead of started as new Pythons.

Prefect's process worker starts each run as its workspace supervisor, a Python that imports
Prefect, resolves the run's folder and then execs ``python -m prefect.engine``, which imports
Prefect and the flow again: two cold interpreters per run, about 3.5 CPU-seconds here under load
(docs/slurm.md, "Many short jobs"). This worker starts one fork server with its own environment
(deployments/forkserver.py) and gives each run the command ``<python> -m flows.fork_launch``,
Prefect's explicit ``command`` job setting, so the runner's own machinery (its pid, output,
cancellation channel and kill) is unchanged. Runs whose pool sets its own command keep it.

    python -m deployments.process_worker --pool deucalion --name deucalion@host [--limit 2]
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import anyio
from prefect.workers.process import ProcessWorker, ProcessWorkerResult

from deployments.worker_channel import QuickChannelReconnect, serve_main
from flows.fork_launch import SOCKET_ENV

PROJECT_ROOT = Path(__file__).resolve().parent.parent
READY_SECONDS = 60.0  # importing Prefect and the flows on a loaded 2-core machine

warnings.filterwarnings("ignore", message="Type 'OpevaProcessWorker'.*overridden", category=UserWarning)  # same pool type, on purpose


class ForkServer:
    """The fork server's process: started with the worker, stopped with it."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="opeva-forkserver-"))  # 0700: only this user reaches the socket
        self.socket = self.folder / "sock"
        self.proc = subprocess.Popen([sys.executable, "-m", "deployments.forkserver", "--socket", str(self.socket)],
                                     cwd=str(PROJECT_ROOT), stdin=subprocess.DEVNULL,
                                     env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))})

    def ready(self) -> bool:
        return self.proc.poll() is None and self.socket.exists()

    async def wait_ready(self, timeout: float = READY_SECONDS) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None and not self.socket.exists():
            await asyncio.sleep(0.1)
        return self.ready()

    def close(self) -> None:
        """Its listener goes; runs it still serves end as their launchers do (or with it, on SIGKILL)."""
        try:
            self.socket.unlink()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=0)
        except subprocess.TimeoutExpired:
            pass  # it ends on its own once its last run has (it sees the socket gone with its parent)
        shutil.rmtree(self.folder, ignore_errors=True)


class _OneSlotPerRun:
    """The worker's limiter, refusing (WouldBlock: "no free slot, next poll") a run that still holds a
    slot instead of raising. Prefect's worker takes a slot per run id and frees it once the run's
    submission has ended, crash handling included; a run put back to Scheduled meanwhile (the Slurm
    re-attach pass, an operator) reached the worker first once and anyio's RuntimeError ended the
    worker. It is taken at a later poll, once its slot is free."""

    def __init__(self, inner: anyio.CapacityLimiter) -> None:
        self._inner = inner

    def acquire_on_behalf_of_nowait(self, borrower: object) -> None:
        if borrower in self._inner.statistics().borrowers:
            raise anyio.WouldBlock
        self._inner.acquire_on_behalf_of_nowait(borrower)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class OpevaProcessWorker(QuickChannelReconnect, ProcessWorker):
    """Prefect's process worker, its runs forked from :class:`ForkServer` (falls back to Prefect's engine command),
    its channel to the server reconnecting a few seconds apart (deployments/worker_channel.py)."""

    _forkserver: ForkServer | None = None
    _depth: int = 0  # start() enters the worker again: one server for the outermost entry

    async def __aenter__(self) -> OpevaProcessWorker:
        await super().__aenter__()
        self._depth += 1
        if self._limiter is not None and not isinstance(self._limiter, _OneSlotPerRun):
            self._limiter = _OneSlotPerRun(self._limiter)
        if self._forkserver is None:
            self._forkserver = ForkServer()
            if not await self._forkserver.wait_ready():
                self._logger.warning("the fork server did not start: runs start as new Pythons")
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await super().__aexit__(*exc_info)
        finally:
            self._depth -= 1
            if self._forkserver is not None and self._depth == 0:
                self._forkserver.close()
                self._forkserver = None

    async def run(self, flow_run: Any, configuration: Any, task_status: Any = None) -> ProcessWorkerResult:
        if not configuration._command_configured:  # Prefect's default (its workspace supervisor): ours instead
            server = self._forkserver
            launcher = "flows.fork_launch" if server is not None and server.ready() else "prefect.engine"
            configuration.command = f"{sys.executable} -m {launcher}"
            configuration._command_configured = True  # ProcessJobConfiguration's own flag for a set command
            configuration.env = {**(configuration.env or {}), **({SOCKET_ENV: str(server.socket)} if server is not None else {})}
        return await super().run(flow_run, configuration, task_status)


def main() -> None:
    serve_main(OpevaProcessWorker, __doc__.splitlines()[0], forward_signals=False)


if __name__ == "__main__":
    main()
