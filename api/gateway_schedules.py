"""The gateway's schedule door: dataset-build schedules are Prefect deployment schedules.

Part of the one Prefect gateway (``PrefectGateway.schedules``), in its own file because it is
its own subject. Why Prefect's schedules and not ours: Prefect's scheduler already creates the
runs ahead of time, shows them in its UI (each schedule with its parameters and slug), and
pauses, resumes and deletes them; a schedule of ours would be a second clock that could
disagree. The dates listed as "next runs" come from Prefect's own schedule maths, so what the
API promises is what the scheduler does.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import DeploymentScheduleCreate, DeploymentUpdate
from prefect.client.schemas.objects import DeploymentSchedule
from prefect.client.schemas.schedules import CronSchedule
from prefect.exceptions import ObjectNotFound

class ScheduleNotFound(LookupError):
    """No deployment holds a schedule of that id."""


class ScheduleGateway:
    def __init__(self, client: PrefectClient) -> None:
        self.client = client

    async def create(self, deployment_id: UUID, cron: str, tz: str, parameters: dict[str, Any], slug: str) -> DeploymentSchedule:
        """One cron schedule on the deployment, with the run parameters it passes."""
        schedule = DeploymentScheduleCreate(
            schedule=CronSchedule(cron=cron, timezone=tz), active=True, parameters=parameters, slug=slug,
        )
        [created] = await self.client.create_deployment_schedules(deployment_id, [schedule])
        await self._nudge(deployment_id)
        return created

    async def _nudge(self, deployment_id: UUID) -> None:
        """Touch the deployment so Prefect's recent-deployments scheduler (every 5 s) creates the
        new runs now, instead of the main scheduler's next pass (every 60 s) possibly missing the
        first slot."""
        deployment = await self.client.read_deployment(deployment_id)
        await self.client.update_deployment(deployment_id, DeploymentUpdate(description=deployment.description or ""))

    async def read(self, deployment_ids: dict[str, UUID]) -> list[tuple[str, UUID, DeploymentSchedule]]:
        """Every schedule of the given deployments (host -> deployment id), with its host."""
        found = []
        for host, deployment_id in deployment_ids.items():
            try:
                schedules = await self.client.read_deployment_schedules(deployment_id)
            except ObjectNotFound:
                continue
            found.extend((host, deployment_id, s) for s in schedules)
        return found

    async def find(self, deployment_ids: dict[str, UUID], schedule_id: UUID) -> tuple[str, UUID, DeploymentSchedule]:
        for host, deployment_id, schedule in await self.read(deployment_ids):
            if schedule.id == schedule_id:
                return host, deployment_id, schedule
        raise ScheduleNotFound(f"no dataset schedule {schedule_id}")

    async def set_active(self, deployment_id: UUID, schedule: DeploymentSchedule, active: bool) -> None:
        """Pausing drops the runs Prefect had already created for it (the server does that on
        every schedule update), so a paused schedule starts nothing. The parameters and slug are
        sent again: Prefect 3.8's client sends them as null when left out, which wipes them."""
        await self.client.update_deployment_schedule(deployment_id, schedule.id, active=active, parameters=schedule.parameters or {},
                                                     slug=schedule.slug)
        if active:
            await self._nudge(deployment_id)

    async def delete(self, deployment_id: UUID, schedule_id: UUID) -> None:
        await self.client.delete_deployment_schedule(deployment_id, schedule_id)

    @staticmethod
    async def dates(schedule: DeploymentSchedule, n: int, start: datetime | None = None, end: datetime | None = None) -> list[datetime]:
        """Occurrences from Prefect's own schedule maths (the server's CronSchedule, DST rules
        included): the next ``n`` after ``start`` (default now), or all in [start, end]."""
        from prefect.server.schemas.schedules import CronSchedule as ServerCron

        cron = schedule.schedule
        if not isinstance(cron, CronSchedule):
            return []
        server = ServerCron(cron=cron.cron, timezone=cron.timezone, day_or=cron.day_or)
        dates = await server.get_dates(n=n, start=start or datetime.now(timezone.utc), end=end)
        return [datetime.fromtimestamp(d.timestamp(), timezone.utc) for d in dates]  # plain datetimes, not pendulum's
