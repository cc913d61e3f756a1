"""The ``control`` pool's worker: a Prefect process worker that runs the short platform actions
(:data:`IN_PROCESS`: ``deploy-bundle``) inside itself instead of in a new Python process.

Why: a process worker starts every flow run as a fresh ``python -m prefect.engine``; importing
Prefect alone takes 1.7 s of CPU, 3.5-5 s of wall time on this 2-core machine under load, which made
a switch-bundle take 6-16 s for a 10 ms load on the target. Here the flow's module is imported
once, when the worker starts, and each run is Prefect's own flow engine (``run_flow_async``) on
the worker's event loop: same states, logs and UI as any run, about a second end to end. Any
other flow of the pool (sweeps) still gets its own process, as Prefect's process worker does.

    python -m deployments.control_worker --name control@host
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import warnings
from typing import Any, ClassVar

import anyio
from prefect.workers.process import ProcessWorker, ProcessWorkerResult

from deployments.control_pool import CONTROL_FLOWS, CONTROL_POOL

IN_PROCESS = frozenset({"deploy-bundle"})  # async flows that only do HTTP and small file reads


def _load(import_path: str) -> Any:
    module, attr = import_path.split(":")
    return getattr(importlib.import_module(module), attr)


warnings.filterwarnings("ignore", message="Type 'ControlWorker'.*overridden", category=UserWarning)  # same pool type, on purpose


class ControlWorker(ProcessWorker):
    """Runs :data:`IN_PROCESS` flows in this process; the others as Prefect's process worker does."""

    _in_process: ClassVar[dict[str, Any]] = {}  # deployment entrypoint -> flow object, imported at start

    @classmethod
    def warm(cls) -> None:
        cls._in_process = {entry: _load(path) for name, (entry, path) in CONTROL_FLOWS.items() if name in IN_PROCESS}

    async def run(self, flow_run: Any, configuration: Any, task_status: Any = None) -> ProcessWorkerResult:
        flow_obj = None
        if flow_run.deployment_id is not None:
            deployment = await self.client.read_deployment(flow_run.deployment_id)
            flow_obj = self._in_process.get(deployment.entrypoint or "")
        if flow_obj is None:
            return await super().run(flow_run, configuration, task_status)
        from prefect.flow_engine import run_flow_async

        (task_status or anyio.TASK_STATUS_IGNORED).started(os.getpid())
        state = await run_flow_async(flow_obj, flow_run=flow_run, parameters=flow_run.parameters, return_type="state")
        # the engine has set the run's final state itself; a non-zero code would have the worker mark it crashed
        return ProcessWorkerResult(status_code=0 if state is not None and state.is_final() else 1, identifier=f"in-process:{flow_run.id}")


async def serve(name: str) -> None:
    ControlWorker.warm()
    async with ControlWorker(work_pool_name=CONTROL_POOL, name=name) as worker:
        await worker.start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    asyncio.run(serve(parser.parse_args().name))


if __name__ == "__main__":
    main()
