"""The job's phase as a flow-run label (``opeva.phase``): how ``setup`` is told from ``running``.

core/states.py says why a label and not a state name. Best effort: a label that cannot be
written (the API briefly away) must not fail the job; the status then reads ``running`` early
(or ``setup`` until the next write), never a wrong terminal state.
"""

from __future__ import annotations

import logging
from uuid import UUID

from core.states import PHASE_LABEL, SETUP_PHASE

log = logging.getLogger("opeva.flows")


def mark_phase(phase: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    run_id = flow_run.id
    if not run_id:  # called outside a flow run (a unit test calling the function directly)
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(UUID(run_id), {PHASE_LABEL: phase})
    except Exception as exc:  # noqa: BLE001 — see the module docstring
        log.warning("could not set the %s label to %s: %s", PHASE_LABEL, phase, exc)


def mark_setup() -> None:
    """The run's phase ``setup``, written only when the run does not already start in it.

    A run the platform created carries ``setup`` from birth (core/states.py ``fresh_labels``): no
    write then, so nothing can land after the flow's ``running``. A run from ``prefect deployment
    run``, or a retry (whose label still reads ``running`` from its first attempt), gets it here.
    """
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    labels = (ctx.flow_run.labels if ctx is not None and ctx.flow_run is not None else None) or {}
    if labels.get(PHASE_LABEL) == SETUP_PHASE and (ctx.flow_run.run_count or 1) <= 1:
        return
    mark_phase(SETUP_PHASE)
