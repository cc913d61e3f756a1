"""A Prefect server fix: state events of runs made by Prefect's scheduler reach automations at once.

Why: Prefect 3.8.8's scheduler inserts its runs in bulk (``_insert_scheduled_flow_runs``) and
emits no ``prefect.flow-run.Scheduled`` event for them. Each state-change event names the
event of the state it leaves in ``follows`` when that state is less than 5 minutes old
(``models/events._timing_is_tight``), and the triggers service holds an event until the one it
follows has been seen, for up to 15 minutes (``events/ordering``: PRECEDING_EVENT_LOOKBACK).
So a scheduled run made less than 5 minutes before its slot (every run of a short cron, and a
nightly build whose schedule was just created) sends its first event, ``Late`` or ``Pending``,
into that wait, and every later event of the run follows it: automations (``build_missed``,
``failed``, the zombie watch) hear of the run 15 minutes late. Measured here: a one-minute cron's
``Late`` event never reached a ``build_missed`` trigger within 60 s; with this fix the notice
came grace + 5 s after it (tests/fast/test_notify_missed_builds.py).

The fix: an event that leaves the scheduler's own ``Scheduled`` state of an auto-scheduled run
does not claim to follow it (there is nothing to follow). Every other event keeps Prefect's
ordering. Applied with the other server patches (deployments/prefect_server.py), so only on
the Prefect version they were checked on.
"""

from __future__ import annotations

from typing import Any

from prefect.server.schemas.states import StateType


def leaves_an_unannounced_state(flow_run: Any, initial_state: Any) -> bool:
    """True for the first transition of a run Prefect's scheduler inserted without an event."""
    return bool(getattr(flow_run, "auto_scheduled", False) and initial_state is not None
                and initial_state.type == StateType.SCHEDULED and initial_state.name == "Scheduled")


def install() -> None:
    """Wrap the state-change event builder where the instrumentation policy calls it."""
    import prefect.server.models  # noqa: F401 (first: instrumentation_policies alone is a circular import in 3.8.8)
    from prefect.server.orchestration import instrumentation_policies

    original = instrumentation_policies.flow_run_state_change_event

    async def state_change_event(session: Any, occurred: Any, flow_run: Any, initial_state_id: Any, initial_state: Any,
                                 validated_state_id: Any, validated_state: Any) -> Any:
        event = await original(session=session, occurred=occurred, flow_run=flow_run, initial_state_id=initial_state_id,
                               initial_state=initial_state, validated_state_id=validated_state_id, validated_state=validated_state)
        if leaves_an_unannounced_state(flow_run, initial_state):
            event.follows = None
        return event

    instrumentation_policies.flow_run_state_change_event = state_change_event  # type: ignore[assignment]
