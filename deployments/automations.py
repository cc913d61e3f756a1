"""The platform's own Prefect automations, made by ``make setup`` (deployments/setup.py).

Why automations: Prefect's server already watches every event; a rule about runs or pools is an
automation there (shown, paused and edited in its UI), not a watcher process of ours.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from core.hosts import HostsFile

HEARTBEAT_SECONDS = 30  # flow-run heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY in every run's environment)
ZOMBIE_AUTOMATION = "opeva: crash runs whose heartbeats stopped"
LOST_HOST_AUTOMATION = "opeva: move the queued jobs of a lost host"


async def ensure_zombie_automation() -> None:
    """Runs whose worker or host died stay Running forever (Prefect #16746); missing
    heartbeats mark them Crashed instead (Prefect docs, "Detect zombie flows")."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    try:
        await Automation.aread(name=ZOMBIE_AUTOMATION)
        return
    except ValueError:
        pass
    await Automation(
        name=ZOMBIE_AUTOMATION,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=3 * HEARTBEAT_SECONDS),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message="No heartbeat for 90 s: the worker or host died.")],
    ).acreate()


async def ensure_lost_host_automation(client: Any, hosts: HostsFile) -> None:
    """When a host's pool loses its last worker (Prefect's foreman: ``prefect.work-pool.not-ready``),
    run ``move-lost-host-jobs/control`` for it (flows/move_lost_host_jobs.py). Made again at each
    setup: the hosts it watches are the hosts file's."""
    from prefect.automations import Automation
    from prefect.events.actions import RunDeployment
    from prefect.events.schemas.automations import EventTrigger, Posture

    deployment = await client.read_deployment_by_name("move-lost-host-jobs/control")
    try:
        old = await Automation.aread(name=LOST_HOST_AUTOMATION)
        await old.adelete()
    except ValueError:
        pass
    await Automation(
        name=LOST_HOST_AUTOMATION,
        description="A host whose last worker stopped heart-beating: its automatically placed queued jobs move to online hosts.",
        trigger=EventTrigger(expect={"prefect.work-pool.not-ready"},
                             match={"prefect.resource.id": "prefect.work-pool.*", "prefect.resource.name": hosts.names},  # type: ignore[arg-type]
                             posture=Posture.Reactive, threshold=1, within=timedelta(0)),
        actions=[RunDeployment(source="selected", deployment_id=deployment.id,
                               parameters={"host": {"__prefect_kind": "jinja", "template": "{{ event.resource.name }}"}})],
    ).acreate()
