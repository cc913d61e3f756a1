"""Inference targets (``/deploy/inferences*``): list, health, switch-bundle (a ``deploy-bundle`` flow
run on the control pool, waited for), logs; and the guard that keeps a served bundle from deletion.

Targets and their addresses are core/inference_targets.py's; the switch itself is the flow's
(flows/deploy_bundle.py), so the Prefect UI shows every switch. Refusals are checked here first
(unknown target or bundle: 404 with no run made); a target that does not answer or refuses the
load fails the run, and its message becomes the 502.

Targets made or removed here (admins only when tokens are on) go to the registry file
(core/inference_registry.py); ``make up`` starts and stops their containers in its loop
(deployments/inference_sync.py), so this answers at once and never touches Docker itself.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from api.errors import ApiError
from api.gateway import FlowRun, PrefectGateway
from api.models_inference import (
    InferenceHealthOut,
    InferenceTargetIn,
    InferenceTargetOut,
    LogChunkOut,
    LogLine,
    SwitchOut,
)
from api.security import User
from core import bundle_store, inference_logs, inference_registry
from core.hosts import CONTROL_POOL, HostsFile
from core.inference_targets import Target, TargetError, get_target, probe, target_of, targets

SWITCH_FLOW = "deploy-bundle"  # flows/deploy_bundle.py, deployed on the control pool
SWITCH_TIMEOUT = 120.0
POLL_SECONDS = 0.1
DEFAULT_WINDOW = timedelta(hours=1)
_FAILED = re.compile(r"SwitchFailed: (\d{3}): (.*)", re.DOTALL)


def _target(hosts: HostsFile, home: Path, target_id: str) -> Target:
    try:
        return get_target(hosts, home, target_id)
    except TargetError as exc:
        raise ApiError(exc.status, exc.detail) from None


def list_targets(hosts: HostsFile, home: Path) -> list[InferenceTargetOut]:
    return [InferenceTargetOut(**t.public()) for t in targets(hosts, home)]


def _require_admin(user: User) -> None:
    if not user.admin:
        raise ApiError(403, "creating or removing inference targets needs an admin token (OPEVA_API_ADMINS)")


async def create(user: User, hosts: HostsFile, home: Path, body: InferenceTargetIn) -> InferenceTargetOut:
    """Check the host, then record the target (409 on a taken id); ``make up`` starts a platform one."""
    _require_admin(user)
    host = hosts.get(body.host)
    if host is None:
        raise ApiError(400, f"unknown host {body.host!r}; known hosts: {', '.join(hosts.names)}", known_hosts=hosts.names)
    if body.base_url is None and host.docker_url is not None:
        raise ApiError(400, f"host {host.name} is another machine's engine ({host.docker_url}): the platform runs targets on "
                            "this machine's engine only; give the target a base_url (a service running there) instead")
    declared = {t.id for h in hosts.hosts for t in h.inference_targets}
    entry = inference_registry.RegisteredTarget(**body.model_dump(exclude_unset=True))
    try:
        await asyncio.to_thread(inference_registry.add, home, entry, declared)
    except inference_registry.RegistryError as exc:
        raise ApiError(exc.status, exc.detail) from None
    return InferenceTargetOut(**target_of(entry, entry.host, home, "api").public())


async def delete(user: User, hosts: HostsFile, home: Path, target_id: str) -> InferenceTargetOut:
    """Forget an API-made target (``make up`` then stops its container); a hosts.yaml one is the operator's (409)."""
    _require_admin(user)
    found = next((t for t in targets(hosts, home) if t.id == target_id), None)
    if found is not None and found.declared == "hosts.yaml":
        raise ApiError(409, f"inference target {target_id!r} is declared in hosts.yaml (host {found.host}): remove it there, not through the API")
    try:
        removed = await asyncio.to_thread(inference_registry.remove, home, target_id)
    except inference_registry.RegistryError as exc:
        raise ApiError(exc.status, exc.detail) from None
    if removed is None:
        raise ApiError(404, f"inference target {target_id!r} not found")
    return InferenceTargetOut(**(found or target_of(removed, removed.host, home, "api")).public())


async def health(hosts: HostsFile, home: Path, target_id: str) -> InferenceHealthOut:
    return InferenceHealthOut(**await probe(_target(hosts, home, target_id)))


async def switch(gateway: PrefectGateway, hosts: HostsFile, home: Path, root: Path, target_id: str, bundle_id: str) -> SwitchOut:
    target = _target(hosts, home, target_id)
    try:
        entry = await asyncio.to_thread(bundle_store.get_bundle, root, bundle_id)
    except bundle_store.BundleError as exc:
        raise ApiError(exc.status, exc.detail) from None
    started = time.monotonic()
    run = await _run_and_wait(gateway, {"target_id": target.id, "bundle_id": bundle_id})
    assert run.state is not None
    if not run.state.is_completed():
        message = run.state.message or run.state.name
        found = _FAILED.search(message)
        status, detail = (int(found.group(1)), found.group(2).strip()) if found else (502, f"Inference load failed: {message}")
        raise ApiError(status, f"{detail} (flow run {run.name})", flow_run_id=str(run.id), flow_run_name=run.name)
    health_now = await probe(target)
    manifest_path, _ = target.manifest_path(entry["storage_dir_name"])
    raw = health_now.get("raw") or {}
    return SwitchOut(target_id=target.id, bundle_id=bundle_id, requested_manifest_path=manifest_path,
                     load_response=raw.get("last_load") if isinstance(raw.get("last_load"), dict) else None,
                     health=InferenceHealthOut(**health_now), flow_run_id=str(run.id), flow_run_name=run.name,
                     duration_seconds=round(time.monotonic() - started, 3))


async def _run_and_wait(gateway: PrefectGateway, parameters: dict[str, Any]) -> FlowRun:
    """A deploy-bundle run, in its final state (504 when it is not done in SWITCH_TIMEOUT)."""
    run = await gateway.start_action(SWITCH_FLOW, CONTROL_POOL, parameters)
    deadline = time.monotonic() + SWITCH_TIMEOUT
    while run.state is None or not run.state.is_final():
        if time.monotonic() > deadline:
            raise ApiError(504, f"the switch's flow run {run.name} did not finish within {SWITCH_TIMEOUT:.0f} s; is the control pool's worker running?",
                           flow_run_id=str(run.id))
        await asyncio.sleep(POLL_SECONDS)
        run = await gateway.read_run(str(run.id))
    return run


async def serving(hosts: HostsFile, home: Path, bundle_id: str) -> list[str]:
    """The reachable targets that serve ``bundle_id`` now (probed at once)."""
    all_targets = targets(hosts, home)
    healths = await asyncio.gather(*(probe(t) for t in all_targets))
    return [h["id"] for h in healths if h["reachable"] and h.get("active_bundle_id") == bundle_id]


def _platform_container(hosts: HostsFile, home: Path, target_id: str) -> Target:
    target = _target(hosts, home, target_id)
    if target.external:
        raise ApiError(409, f"inference target {target.id} is external ({target.base_url}): its logs are not the platform's to read")
    return target


async def log_stream(hosts: HostsFile, home: Path, target_id: str, tail: int) -> AsyncIterator[bytes]:
    target = _platform_container(hosts, home, target_id)
    assert target.container_name is not None
    if not await inference_logs.exists(target.container_name):
        raise ApiError(502, f"inference target {target.id} is not running (container {target.container_name})")
    return inference_logs.stream(target.container_name, tail)


async def log_chunk(hosts: HostsFile, home: Path, target_id: str, since_ts: str, until_ts: str | None,
                    cursor: str | None, limit: int, search: str | None) -> LogChunkOut:
    target = _target(hosts, home, target_id)
    try:
        until = inference_logs.utc(until_ts, "until_ts") or datetime.now(UTC)
        since = inference_logs.utc(since_ts, "since_ts") or until - DEFAULT_WINDOW
    except inference_logs.LogError as exc:
        raise ApiError(400, str(exc)) from None
    if since > until:
        raise ApiError(400, "since_ts is after until_ts")
    base = {"target_id": target.id, "since_ts": since.isoformat().replace("+00:00", "Z"), "until_ts": until.isoformat().replace("+00:00", "Z")}
    empty: dict[str, Any] = {"lines": [], "next_cursor": None, "prev_cursor": None, "has_more_before": False, "has_more_after": False}
    if target.external or target.container_name is None:
        return LogChunkOut(**base, **empty, available=False, message=f"{target.id} is external: its logs are not kept by the platform")
    if not await inference_logs.exists(target.container_name):
        return LogChunkOut(**base, **empty, available=False, message=f"container {target.container_name} is not running")
    lines = await inference_logs.window(target.container_name, since, until)
    if search:
        needle = search.lower()
        lines = [line for line in lines if needle in line["text"].lower()]
    try:
        paged = inference_logs.page(lines, cursor, limit)
    except inference_logs.LogError as exc:
        raise ApiError(400, str(exc)) from None
    paged["lines"] = [LogLine(**line) for line in paged["lines"]]
    return LogChunkOut(**base, **paged, available=True, message=None if paged["lines"] else "No logs found in this window.")
