"""The gateway's notification door: a channel is a Prefect automation plus a block.

Part of the one Prefect gateway (``PrefectGateway.notifications``). Why Prefect's automations
and not a watcher of ours: Prefect's server already evaluates every flow-run state event against
its automations' triggers and runs their actions (prefect/server/events), so the rule "a job of
alice's on host local failed" is an event trigger, shown and editable in the Prefect UI, and the
delivery is Prefect's ``send-notification`` / ``call-webhook`` action on a block of ours
(blocks/notifications.py). Nothing is stored here: the channel is the automation (its rule and
tags) and the block (its destination); the delivery log is the blocks' artifacts.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect.blocks.core import Block
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType
from prefect.client.schemas.objects import Artifact
from prefect.client.schemas.sorting import ArtifactSort
from prefect.events.actions import CallWebhook, SendNotification
from prefect.events.schemas.automations import Automation, AutomationCore, EventTrigger
from prefect.exceptions import ObjectNotFound

from blocks.notifications import OpevaEmail, OpevaWebhook, artifact_body
from core.notify import ARTIFACT_TYPE

CHANNEL_TAG = "opeva-notification"
ID_TAG, OWNER_TAG, KIND_TAG = "channel:", "owner:", "kind:"


class ChannelNotFound(LookupError):
    """No automation of ours carries that channel id."""


async def restricted_url_problem(url: str) -> str | None:
    """Why Prefect's SSRF check refuses ``url`` (it resolves the name: run off the event loop), or None."""
    import asyncio

    from prefect.utilities.urls import validate_restricted_url

    try:
        await asyncio.to_thread(validate_restricted_url, url)
    except ValueError as exc:
        return str(exc).split("URL.", 1)[-1].strip() or str(exc)
    return None


def tag_value(automation: Automation, prefix: str) -> str | None:
    return next((t[len(prefix):] for t in automation.tags if t.startswith(prefix)), None)


class NotificationGateway:
    def __init__(self, client: PrefectClient) -> None:
        self.client = client

    async def create(self, channel_id: str, kind: str, destination: dict[str, Any], *, name: str, owner: str | None,
                     parts: list[tuple[str, dict[str, Any], str]]) -> list[Automation]:
        """The block (the destination: ``destination`` are its fields), then one automation per
        part ``(kind of rule, trigger fields, payload template)``, each with one action on that
        block. The trigger fields are expect/after/match/match_related/posture/within; one bucket
        per flow run, threshold 1: a reactive rule notifies once per event, a proactive one once
        per run whose expected event did not come. All or nothing: a failure removes what was made."""
        block = (OpevaEmail if kind == "email" else OpevaWebhook)(**destination, channel_id=channel_id)
        block_id = await block.asave(name=f"opeva-channel-{channel_id}", client=self.client)
        made: list[UUID] = []
        try:
            for about, rule, payload in parts:
                action = (SendNotification(block_document_id=block_id, subject="OPEVA job notice", body=payload) if isinstance(block, OpevaEmail)
                          else CallWebhook(block_document_id=block_id, payload=payload))
                trigger = EventTrigger(**rule, for_each={"prefect.resource.id"}, threshold=1)
                tags = [CHANNEL_TAG, f"{ID_TAG}{channel_id}", f"{KIND_TAG}{about}", *([f"{OWNER_TAG}{owner}"] if owner else [])]
                core = AutomationCore(name=f"{name} [{about}]"[:200] if len(parts) > 1 else name, enabled=True, tags=tags, trigger=trigger,
                                      description=f"OPEVA notification channel {channel_id}, {about} rule (made through the OPEVA API)",
                                      actions=[action])
                made.append(await self.client.create_automation(core))
        except Exception:
            for automation_id in made:
                await self.client.delete_automation(automation_id)
            await self.client.delete_block_document(block_id)
            raise
        return [await self.client.read_automation(a) for a in made]  # type: ignore[misc]

    def prefect_ui_url(self) -> str:
        """Prefect's UI, for links in notices: PREFECT_UI_URL, else the API's address without ``/api``."""
        from prefect.settings import PREFECT_UI_URL

        configured = PREFECT_UI_URL.value()
        return str(configured) if configured else str(self.client.api_url).rstrip("/").removesuffix("/api")

    async def channels(self) -> list[Automation]:
        return [a for a in await self.client.read_automations() if CHANNEL_TAG in a.tags]

    async def channel(self, channel_id: str) -> list[Automation]:
        """The channel's automations (one per kind of rule)."""
        found = [a for a in await self.channels() if tag_value(a, ID_TAG) == channel_id]
        if not found:
            raise ChannelNotFound(f"no notification channel {channel_id!r}")
        return found

    async def test_send(self, automation: Automation, notice: dict[str, Any]) -> dict[str, Any]:
        """Deliver ``notice`` from this process with the channel's own block, record it, return the record."""
        block = await self.block_of(automation)
        record = await block.deliver(notice)  # type: ignore[attr-defined]
        await self.record(record)
        return record

    async def block_of(self, automation: Automation) -> Block:
        """The channel's block, secrets included (what the server loads for the action)."""
        block_id = getattr(automation.actions[0], "block_document_id", None)
        try:
            document = await self.client.read_block_document(block_id, include_secrets=True)
        except (ObjectNotFound, TypeError):
            raise ChannelNotFound(f"the block of channel {tag_value(automation, ID_TAG)!r} is gone; delete the channel") from None
        return Block._from_block_document(document)

    async def delete(self, automations: list[Automation]) -> None:
        """Every automation of the channel, then its block."""
        block_ids = {getattr(a.actions[0], "block_document_id", None) for a in automations if a.actions}
        for automation in automations:
            await self.client.delete_automation(automation.id)
        for block_id in block_ids - {None}:
            try:
                await self.client.delete_block_document(block_id)  # type: ignore[arg-type]
            except ObjectNotFound:
                pass

    async def record(self, record: dict[str, Any]) -> None:
        """Store an attempt made in this process (a test send) as the blocks do in the server."""
        response = await self.client.request("POST", "/artifacts/", json=artifact_body(record))  # type: ignore[arg-type]
        response.raise_for_status()

    async def records(self, job_ids: list[UUID] | None = None, limit: int = 200) -> list[Artifact]:
        """Delivery records, newest first (of the given jobs' runs only, when given)."""
        flt = ArtifactFilter(type=ArtifactFilterType(any_=[ARTIFACT_TYPE]))
        if job_ids is not None:
            flt.flow_run_id = ArtifactFilterFlowRunId(any_=job_ids)
        return await self.client.read_artifacts(artifact_filter=flt, sort=ArtifactSort.CREATED_DESC, limit=limit)
