"""Notification channels: an e-mail or webhook destination plus the rule of which runs notify.

A channel is made of Prefect objects only (api/gateway_notifications.py): one block (the
destination, which Prefect's server uses to deliver) and one automation per kind of rule its
events need, tagged ``channel:<id>`` (an automation has one trigger: core.notify.kinds_of says
why). Three kinds of rule (:func:`rule`): job events (``prefect.flow-run.Failed``/``Crashed``/
``TimedOut`` of job flows, narrowed when asked to a user's ``submitted-by:<user>`` tag, a host's
work pool or a sweep's ``sweep:<id>`` tag); ``sweep_done`` (a ``run-sweep`` run ended Completed,
Failed or Crashed); ``build_missed`` (a proactive trigger: a scheduled ``build-dataset`` run
marked Late by Prefect's late-runs service that is not Running ``grace`` seconds later). A user
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
from api.gateway import DATASET_FLOW, SIMULATION_FLOW, SWEEP_FLOW, PrefectGateway, parse_job_id
from api.gateway_notifications import ID_TAG, OWNER_TAG, ChannelNotFound, restricted_url_problem, tag_value
from api.models_notifications import ChannelCreated, ChannelFilters, ChannelOut, ChannelRequest, NotificationAttempt, NotificationFields, attempts
from api.security import User
from core.hosts import HostsFile
from core.notify import (ALL_EVENTS, BUILD_MISSED_GRACE, FILTERS_OF_KIND, JOB_EVENTS, LATE_STATE, STARTED_STATE, SWEEP_DONE_STATES, NotifySettings, payload_template,
                         redacted_url, test_notice)

EVENT_PREFIX = "prefect.flow-run."
USER_TAG, SWEEP_TAG, SCHEDULED_TAG = "submitted-by:", "sweep:", "auto-scheduled"  # the last: Prefect's, on its scheduler's runs
ANY_RUN = "prefect.flow-run.*"
MAX_CHANNELS = 200
READ_PAGE = 200  # the Prefect server's largest page


def _owner_filters(body: ChannelRequest, user: User) -> ChannelFilters:
    """A user's channel watches that user's jobs; only admins may watch anyone's (or everyone's)."""
    filters = body.filters
    if user.admin:
        return filters
    if "build_missed" in body.events:
        raise ApiError(403, "build_missed watches every scheduled build: an admin's to make")
    if filters.user not in (None, user.name):
        raise ApiError(403, f"a channel of {user.name!r} may only watch {user.name!r}'s jobs; ask an admin for others'")
    return filters.model_copy(update={"user": user.name})


def _related(flows: list[str], filters: ChannelFilters, *tags: str) -> list[dict[str, Any]]:
    """The trigger's related-resource labels: every one must match (Prefect ANDs the list)."""
    related: list[dict[str, Any]] = [{"prefect.resource.role": "flow", "prefect.resource.name": flows}]
    if filters.host:
        related.append({"prefect.resource.role": "work-pool", "prefect.resource.name": filters.host})
    wanted = [*tags, *(f"{prefix}{value}" for prefix, value in ((USER_TAG, filters.user), (SWEEP_TAG, filters.sweep_id)) if value)]
    related.extend({"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{tag}"} for tag in wanted)
    return related


def rule(kind: str, body: ChannelRequest, filters: ChannelFilters) -> dict[str, Any]:
    """One kind's event trigger (its fields; the gateway adds one bucket per run, threshold 1),
    narrowed by the filters that apply to that kind (core.notify.FILTERS_OF_KIND)."""
    filters = ChannelFilters(**{k: v for k, v in filters.model_dump().items() if k in FILTERS_OF_KIND[kind]})
    if kind == "sweep_done":  # the sweep's own run: its id is the sweep id
        run = f"prefect.flow-run.{filters.sweep_id}" if filters.sweep_id else ANY_RUN
        return {"expect": {f"{EVENT_PREFIX}{s}" for s in SWEEP_DONE_STATES}, "match": {"prefect.resource.id": run},
                "match_related": _related([SWEEP_FLOW], filters.model_copy(update={"sweep_id": None})), "posture": "Reactive", "within": 0}
    if kind == "build_missed":
        return {"after": {f"{EVENT_PREFIX}{LATE_STATE}"}, "expect": {f"{EVENT_PREFIX}{STARTED_STATE}"}, "match": {"prefect.resource.id": ANY_RUN},
                "match_related": _related([DATASET_FLOW], filters, SCHEDULED_TAG), "posture": "Proactive",
                "within": body.grace_seconds or BUILD_MISSED_GRACE}
    return {"expect": {f"{EVENT_PREFIX}{JOB_EVENTS[e]}" for e in body.events if e in JOB_EVENTS}, "match": {"prefect.resource.id": ANY_RUN},
            "match_related": _related([SIMULATION_FLOW, DATASET_FLOW], filters), "posture": "Reactive", "within": 0}


def events_of(trigger: Any) -> list[str]:
    """The channel's events back from its trigger (made by :func:`rule`)."""
    states = {e[len(EVENT_PREFIX):] for e in trigger.expect}
    if str(getattr(trigger.posture, "value", trigger.posture)) == "Proactive":
        return ["build_missed"]
    if "Completed" in states:
        return ["sweep_done"]
    by_state = {v: k for k, v in JOB_EVENTS.items()}
    return sorted((by_state[s] for s in states if s in by_state), key=list(JOB_EVENTS).index)


def filters_of(trigger: Any) -> ChannelFilters:
    """The filters back from a trigger made by :func:`rule`."""
    out: dict[str, str] = {}
    related = trigger.match_related
    for spec in related if isinstance(related, list) else [related]:
        labels = {k: v for k, v in (spec.items() if isinstance(spec, dict) else getattr(spec, "root", {}).items())}
        value = labels.get("prefect.resource.name") if labels.get("prefect.resource.role") == "work-pool" else None
        if isinstance(value, str):
            out["host"] = value
        tag = str(labels.get("prefect.resource.id") or "").removeprefix("prefect.tag.")
        for prefix, key in ((USER_TAG, "user"), (SWEEP_TAG, "sweep_id")):
            if labels.get("prefect.resource.role") == "tag" and tag.startswith(prefix):
                out[key] = tag[len(prefix):]
    match = getattr(trigger.match, "root", trigger.match) or {}
    run = str(match.get("prefect.resource.id") or ANY_RUN) if isinstance(match, dict) else ANY_RUN
    if run != ANY_RUN:
        out["sweep_id"] = run.removeprefix("prefect.flow-run.")
    return ChannelFilters(**out)


async def _destination(body: ChannelRequest, settings: NotifySettings, user: User) -> dict[str, Any]:
    """The block's fields. A webhook is called by the Prefect server, from inside the platform's
    network: a user's webhook may only reach public addresses (Prefect's own SSRF check, at
    creation and again at each call with its pinned-address transport); an admin's may reach
    any, since admins run the platform (and without tokens everyone is one)."""
    if body.kind == "webhook":
        if not user.admin and (why := await restricted_url_problem(body.url or "")):
            raise ApiError(400, f"url {redacted_url(body.url or '')} is refused: {why}; "
                                "a webhook to a private, loopback or link-local address is an admin's to make")
        return {"url": body.url, "method": "POST", "headers": {"Content-Type": "application/json"}, "allow_private_urls": user.admin}
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
    destination = await _destination(body, NotifySettings(), user)
    if len({tag_value(a, ID_TAG) for a in await gateway.notifications.channels()}) >= MAX_CHANNELS:
        raise ApiError(409, f"at most {MAX_CHANNELS} notification channels; delete some first")
    channel_id = uuid.uuid4().hex
    ui, prefect_ui = NotifySettings().ui_base_url, gateway.notifications.prefect_ui_url()
    parts = [(kind, rule(kind, body, filters), payload_template(channel_id, ui, prefect_ui, kind)) for kind in body.kinds]
    await gateway.notifications.create(channel_id, body.kind, destination, name=_name(body, filters), owner=user.name, parts=parts)
    return ChannelCreated(channel_id=channel_id)


async def _out(gateway: PrefectGateway, automations: list[Any]) -> ChannelOut:
    """The channel as one answer: its automations' events and filters merged, its block's destination."""
    first = automations[0]
    block = await gateway.notifications.block_of(first)
    kind = "email" if first.actions[0].type == "send-notification" else "webhook"
    events = {e for a in automations for e in events_of(a.trigger)}
    filters: dict[str, str] = {}
    for a in automations:
        filters.update(filters_of(a.trigger).model_dump(exclude_none=True))
    missed = next((a.trigger for a in automations if events_of(a.trigger) == ["build_missed"]), None)
    return ChannelOut(
        channel_id=tag_value(first, ID_TAG) or "", kind=kind, to=getattr(block, "to", None) if kind == "email" else None,
        url=redacted_url(block.url.get_secret_value()) if kind == "webhook" else None,  # type: ignore[attr-defined]
        events=[e for e in ALL_EVENTS if e in events], filters=ChannelFilters(**filters),
        grace_seconds=int(missed.within.total_seconds()) if missed is not None else None,
        owner=tag_value(first, OWNER_TAG), enabled=all(a.enabled for a in automations),
        automation_name=" | ".join(a.name for a in automations)[:500],
        block_document_id=str(first.actions[0].block_document_id),
    )


def _grouped(automations: list[Any]) -> list[list[Any]]:
    """Automations by channel, in the order their channels first appear."""
    groups: dict[str, list[Any]] = {}
    for a in automations:
        groups.setdefault(tag_value(a, ID_TAG) or str(a.id), []).append(a)
    return list(groups.values())


def _visible(automation: Any, user: User) -> bool:
    return user.admin or tag_value(automation, OWNER_TAG) == user.name


async def _mine(gateway: PrefectGateway, channel_id: str, user: User) -> list[Any]:
    try:
        automations = await gateway.notifications.channel(channel_id)
    except ChannelNotFound as exc:
        raise ApiError(404, str(exc)) from None
    if not _visible(automations[0], user):
        raise ApiError(404, f"no notification channel {channel_id!r}")  # another user's: not even its existence
    return automations


async def list_all(gateway: PrefectGateway, user: User) -> list[ChannelOut]:
    mine = _grouped([a for a in await gateway.notifications.channels() if _visible(a, user)])
    found = await asyncio.gather(*(_out(gateway, group) for group in mine), return_exceptions=True)
    return [c for c in found if isinstance(c, ChannelOut)]  # a channel whose block was deleted in Prefect's UI is left out


async def read(gateway: PrefectGateway, channel_id: str, user: User) -> ChannelOut:
    try:
        return await _out(gateway, await _mine(gateway, channel_id, user))
    except ChannelNotFound as exc:
        raise ApiError(404, str(exc)) from None


async def delete(gateway: PrefectGateway, channel_id: str, user: User) -> ChannelOut:
    automations = await _mine(gateway, channel_id, user)
    try:
        out = await _out(gateway, automations)
    except ChannelNotFound:
        out = None
    await gateway.notifications.delete(automations)
    first = automations[0]
    kind = "email" if first.actions and first.actions[0].type == "send-notification" else "webhook"
    return out or ChannelOut(channel_id=channel_id, kind=kind, events=[], filters=filters_of(first.trigger),
                             automation_name=first.name, block_document_id="")  # its block was already gone


async def test(gateway: PrefectGateway, channel_id: str, user: User) -> NotificationAttempt:
    automations = await _mine(gateway, channel_id, user)
    try:
        record = await gateway.notifications.test_send(automations[0], test_notice(channel_id, NotifySettings().ui_base_url))
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
