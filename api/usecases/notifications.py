"""Notification channels: an e-mail or webhook destination plus the rule of which jobs notify.

A channel is made of Prefect objects only (api/gateway_notifications.py): the rule is an event
trigger on flow-run state events (``prefect.flow-run.Failed``/``Crashed``/``TimedOut``) narrowed
to job flows and, when asked, to a user's ``submitted-by:<user>`` tag, a host's work pool or a
sweep's ``sweep:<id>`` tag; the destination is a block Prefect's server uses to deliver. A user
stop ends Cancelled, which no channel listens to. Without tokens everyone is an admin; with
tokens a user's channels watch that user's jobs only, and only admins see every channel.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from uuid import UUID

from api.deps import known_host
from api.errors import ApiError
from api.gateway import DATASET_FLOW, SIMULATION_FLOW, PrefectGateway, parse_job_id
from api.gateway_notifications import ID_TAG, OWNER_TAG, ChannelNotFound, tag_value
from api.models_notifications import ChannelCreated, ChannelFilters, ChannelOut, ChannelRequest, NotificationAttempt, NotificationFields, attempts
from api.security import User
from core.hosts import HostsFile
from core.notify import JOB_EVENTS, NotifySettings, payload_template, redacted_url, test_notice

EVENT_PREFIX = "prefect.flow-run."
USER_TAG, SWEEP_TAG = "submitted-by:", "sweep:"
MAX_CHANNELS = 200
READ_PAGE = 200  # the Prefect server's largest page


def _owner_filters(body: ChannelRequest, user: User) -> ChannelFilters:
    """A user's channel watches that user's jobs; only admins may watch anyone's (or everyone's)."""
    filters = body.filters
    if user.admin:
        return filters
    if filters.user not in (None, user.name):
        raise ApiError(403, f"a channel of {user.name!r} may only watch {user.name!r}'s jobs; ask an admin for others'")
    return filters.model_copy(update={"user": user.name})


def match_related(filters: ChannelFilters) -> list[dict[str, Any]]:
    """The trigger's related-resource labels: every one must match (Prefect ANDs the list)."""
    related: list[dict[str, Any]] = [{"prefect.resource.role": "flow", "prefect.resource.name": [SIMULATION_FLOW, DATASET_FLOW]}]
    if filters.host:
        related.append({"prefect.resource.role": "work-pool", "prefect.resource.name": filters.host})
    for prefix, value in ((USER_TAG, filters.user), (SWEEP_TAG, filters.sweep_id)):
        if value:
            related.append({"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{prefix}{value}"})
    return related


def filters_of(related: Any) -> ChannelFilters:
    """The filters back from a trigger made by :func:`match_related`."""
    out: dict[str, str] = {}
    for spec in related if isinstance(related, list) else [related]:
        labels = {k: v for k, v in (spec.items() if isinstance(spec, dict) else getattr(spec, "root", {}).items())}
        value = labels.get("prefect.resource.name") if labels.get("prefect.resource.role") == "work-pool" else None
        if isinstance(value, str):
            out["host"] = value
        tag = str(labels.get("prefect.resource.id") or "").removeprefix("prefect.tag.")
        for prefix, key in ((USER_TAG, "user"), (SWEEP_TAG, "sweep_id")):
            if labels.get("prefect.resource.role") == "tag" and tag.startswith(prefix):
                out[key] = tag[len(prefix):]
    return ChannelFilters(**out)


def _destination(body: ChannelRequest, settings: NotifySettings) -> dict[str, Any]:
    if body.kind == "webhook":
        return {"url": body.url, "method": "POST", "headers": {"Content-Type": "application/json"}}
    if not settings.smtp_host:
        raise ApiError(400, "e-mail channels need an SMTP server: set OPEVA_SMTP_HOST (and OPEVA_SMTP_PORT, OPEVA_SMTP_FROM) for the API")
    if settings.smtp_security not in ("none", "starttls", "ssl"):
        raise ApiError(400, "OPEVA_SMTP_SECURITY must be none, starttls or ssl")
    return {"to": body.to, "smtp_host": settings.smtp_host, "smtp_port": settings.smtp_port, "from_address": settings.smtp_from,
            "security": settings.smtp_security, "username": settings.smtp_user, "password": settings.smtp_password}


def _name(body: ChannelRequest, filters: ChannelFilters) -> str:
    where = body.url and redacted_url(body.url) if body.kind == "webhook" else ", ".join(body.to or [])
    narrowed = ", ".join(f"{k}={v}" for k, v in filters.model_dump(exclude_none=True).items()) or "all jobs"
    return f"OPEVA {body.kind} {where}: {', '.join(body.events)} ({narrowed})"[:200]


async def create(gateway: PrefectGateway, body: ChannelRequest, user: User, hosts: HostsFile) -> ChannelCreated:
    filters = _owner_filters(body, user)
    if filters.host:
        known_host(filters.host, hosts)
    destination = _destination(body, NotifySettings())
    if len(await gateway.notifications.channels()) >= MAX_CHANNELS:
        raise ApiError(409, f"at most {MAX_CHANNELS} notification channels; delete some first")
    channel_id = uuid.uuid4().hex
    await gateway.notifications.create(
        channel_id, body.kind, destination, name=_name(body, filters), owner=user.name,
        expect=[f"{EVENT_PREFIX}{JOB_EVENTS[e]}" for e in body.events], match_related=match_related(filters),
        payload=payload_template(channel_id, NotifySettings().ui_base_url, gateway.notifications.prefect_ui_url()),
    )
    return ChannelCreated(channel_id=channel_id)


async def _out(gateway: PrefectGateway, automation: Any) -> ChannelOut:
    block = await gateway.notifications.block_of(automation)
    kind = "email" if automation.actions[0].type == "send-notification" else "webhook"
    by_state = {v: k for k, v in JOB_EVENTS.items()}
    events = [by_state[e[len(EVENT_PREFIX):]] for e in sorted(automation.trigger.expect) if e[len(EVENT_PREFIX):] in by_state]
    return ChannelOut(
        channel_id=tag_value(automation, ID_TAG) or "", kind=kind, to=getattr(block, "to", None) if kind == "email" else None,
        url=redacted_url(block.url.get_secret_value()) if kind == "webhook" else None,  # type: ignore[attr-defined]
        events=sorted(events, key=list(JOB_EVENTS).index), filters=filters_of(automation.trigger.match_related),
        owner=tag_value(automation, OWNER_TAG), enabled=automation.enabled, automation_name=automation.name,
        block_document_id=str(automation.actions[0].block_document_id),
    )


def _visible(automation: Any, user: User) -> bool:
    return user.admin or tag_value(automation, OWNER_TAG) == user.name


async def _mine(gateway: PrefectGateway, channel_id: str, user: User) -> Any:
    try:
        automation = await gateway.notifications.channel(channel_id)
    except ChannelNotFound as exc:
        raise ApiError(404, str(exc)) from None
    if not _visible(automation, user):
        raise ApiError(404, f"no notification channel {channel_id!r}")  # another user's: not even its existence
    return automation


async def list_all(gateway: PrefectGateway, user: User) -> list[ChannelOut]:
    mine = [a for a in await gateway.notifications.channels() if _visible(a, user)]
    found = await asyncio.gather(*(_out(gateway, a) for a in mine), return_exceptions=True)
    return [c for c in found if isinstance(c, ChannelOut)]  # a channel whose block was deleted in Prefect's UI is left out


async def read(gateway: PrefectGateway, channel_id: str, user: User) -> ChannelOut:
    try:
        return await _out(gateway, await _mine(gateway, channel_id, user))
    except ChannelNotFound as exc:
        raise ApiError(404, str(exc)) from None


async def delete(gateway: PrefectGateway, channel_id: str, user: User) -> ChannelOut:
    automation = await _mine(gateway, channel_id, user)
    try:
        out = await _out(gateway, automation)
    except ChannelNotFound:
        out = None
    await gateway.notifications.delete(automation)
    kind = "email" if automation.actions and automation.actions[0].type == "send-notification" else "webhook"
    return out or ChannelOut(channel_id=channel_id, kind=kind, events=[], filters=filters_of(automation.trigger.match_related),
                             automation_name=automation.name, block_document_id="")  # its block was already gone


async def test(gateway: PrefectGateway, channel_id: str, user: User) -> NotificationAttempt:
    automation = await _mine(gateway, channel_id, user)
    try:
        record = await gateway.notifications.test_send(automation, test_notice(channel_id, NotifySettings().ui_base_url))
    except ChannelNotFound as exc:
        raise ApiError(404, str(exc)) from None
    return NotificationAttempt(**record)


async def deliveries(gateway: PrefectGateway, user: User, job_id: str | None, channel_id: str | None, limit: int) -> list[NotificationAttempt]:
    """The delivery log, newest first; a user sees the attempts of their own channels."""
    runs = [parse_job_id(job_id)] if job_id else None
    scan = limit if user.admin and not channel_id else READ_PAGE  # filtered here: read a page, keep ``limit``
    records = [a.data for a in await gateway.notifications.records(runs, limit=min(scan, READ_PAGE)) if isinstance(a.data, dict)]
    if not user.admin:
        own = {tag_value(a, ID_TAG) for a in await gateway.notifications.channels() if _visible(a, user)}
        records = [r for r in records if r.get("channel_id") in own]
    if channel_id:
        records = [r for r in records if r.get("channel_id") == channel_id]
    return [NotificationAttempt(**r) for r in records[:limit]]


async def job_attempts(gateway: PrefectGateway, run_id: UUID) -> NotificationFields:
    """What ``/job-info`` and ``/status`` carry: this job's attempts, oldest first."""
    artifacts = await gateway.notifications.records([run_id], limit=200)
    return attempts([a.data for a in reversed(artifacts) if isinstance(a.data, dict)])
