"""Inference targets: where a policy bundle is served, how to reach one, probe it and load a bundle.

A target is declared under a host in the hosts file (``inference_targets:``, the one list of hosts
and what runs on them). Two kinds:

- **platform** (no ``base_url``): a container of the inference image that ``make up`` runs on this
  machine's engine (deployments/inference_targets.py), with no network at all: the service listens
  on a Unix socket in ``<OPEVA_HOME>/run/inference/<id>/``, the one writable mount, and reads the
  bundle store mounted read-only. Its ``base_url`` is ``unix:<socket path>``.
- **external** (``base_url: http(s)://...``): an inference service someone else runs (upstream's
  sites); probed and switched the same way, its logs are not the platform's to read.

Targets created through the API (``POST /deploy/inferences``) are kept in one registry file under
the home (core/inference_registry.py) and listed here beside hosts.yaml's (``declared: "api"``), so
every route and the switch treat both alike. Both the REST API (listing, health, the DELETE guard)
and the ``deploy-bundle`` flow (the switch) use this module, so they agree on every target's
address. No Prefect import.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from core import inference_registry
from core.hosts import HostsFile, InferenceTargetSpec

SOCKET_NAME = "inference.sock"
SOCKET_DIR_IN_CONTAINER = "/run/opeva-inference"
REMEMBERED_NAME = "last-load.json"  # the target's last successful load, reloaded when it restarts (inference/service.py)
MANIFEST = "artifact_manifest.json"
PROBE_SECONDS = 2.0
LOAD_SECONDS = 60.0
MAX_ERROR = 300
log = logging.getLogger("opeva.inference")


class TargetError(Exception):
    """``status`` is the HTTP answer: 404 unknown target, 502 a target that does not answer or refuses."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def socket_path(home: Path, target_id: str) -> Path:
    return Path(home) / "run" / "inference" / target_id / SOCKET_NAME


def container_name(home: Path, target_id: str) -> str:
    """One name per platform home, so two platforms on one engine (tests, helpers) never clash."""
    return f"opeva-inference-{target_id}-{hashlib.sha1(str(Path(home).resolve()).encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Target:
    id: str
    name: str
    host: str
    base_url: str
    container_name: str | None
    bundle_mount_path: str
    spec: InferenceTargetSpec
    declared: str = "hosts.yaml"  # or "api": created through POST /deploy/inferences (core/inference_registry.py)

    @property
    def external(self) -> bool:
        return self.container_name is None

    def public(self) -> dict[str, Any]:
        """Upstream's target fields, plus the host and the kind."""
        return {"id": self.id, "name": self.name, "base_url": self.base_url, "container_name": self.container_name,
                "bundle_mount_path": self.bundle_mount_path, "host": self.host, "kind": "external" if self.external else "platform"}

    def manifest_path(self, storage_dir_name: str) -> tuple[str, str]:
        """(manifest_path, artifacts_dir) of a stored bundle as the target sees them."""
        folder = f"{self.bundle_mount_path.rstrip('/')}/{storage_dir_name}"
        return f"{folder}/{MANIFEST}", folder


def target_of(spec: InferenceTargetSpec, host: str, home: Path, declared: str) -> Target:
    external = spec.base_url is not None
    return Target(
        id=spec.id, name=spec.name or spec.id, host=host,
        base_url=spec.base_url.rstrip("/") if external else f"unix:{socket_path(home, spec.id)}",
        container_name=None if external else container_name(home, spec.id),
        bundle_mount_path=spec.bundle_mount_path, spec=spec, declared=declared,
    )


def targets(hosts: HostsFile, home: Path) -> list[Target]:
    """hosts.yaml's targets, then the API's (an API target whose id hosts.yaml took since is not listed;
    an unreadable registry lists none of them and is logged: hosts.yaml's still work)."""
    out = [target_of(spec, host.name, home, "hosts.yaml") for host in hosts.hosts for spec in host.inference_targets]
    try:
        registered = inference_registry.read(home)
    except inference_registry.RegistryError as exc:
        log.warning("%s", exc.detail)
        return out
    taken = {t.id for t in out}
    for entry in registered:
        if entry.id in taken:
            log.warning("inference target %s of %s is shadowed by hosts.yaml's", entry.id, inference_registry.registry_path(home))
            continue
        out.append(target_of(entry, entry.host, home, "api"))
    return out


def get_target(hosts: HostsFile, home: Path, target_id: str) -> Target:
    for target in targets(hosts, home):
        if target.id == target_id:
            return target
    raise TargetError(404, f"inference target {target_id!r} not found")


def client(target: Target, timeout: float) -> httpx.AsyncClient:
    """An HTTP client to the target: over its Unix socket, or to its URL."""
    if target.base_url.startswith("unix:"):
        return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=target.base_url[5:]), base_url="http://inference", timeout=timeout)
    return httpx.AsyncClient(base_url=target.base_url, timeout=timeout, follow_redirects=False)


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR else text[:MAX_ERROR] + "..."


async def probe(target: Target) -> dict[str, Any]:
    """``GET <base_url>/health`` in upstream's health shape; never raises (unreachable is an answer)."""
    out: dict[str, Any] = {**target.public(), "reachable": False, "configured": False, "healthy": False,
                           "active_manifest_path": None, "active_bundle_id": None}
    try:
        async with client(target, PROBE_SECONDS) as c:
            r = await c.get("/health")
        raw = r.json()
    except (httpx.HTTPError, OSError, ValueError) as exc:
        return {**out, "error": _short(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)}
    if r.status_code != 200 or not isinstance(raw, dict):
        return {**out, "reachable": True, "error": _short(f"GET /health answered {r.status_code}")}
    manifest = raw.get("manifest_path")
    bundle = raw.get("bundle_id")
    return {**out, "reachable": True, "configured": bool(raw.get("configured")), "healthy": raw.get("status") in ("ok", "healthy"),
            "active_manifest_path": manifest if isinstance(manifest, str) else None,
            "active_bundle_id": bundle if isinstance(bundle, str) else None, "raw": raw}


async def load(target: Target, storage_dir_name: str, bundle_id: str) -> tuple[str, dict[str, Any]]:
    """``POST <base_url>/admin/load``; (requested manifest path, the service's answer). The target
    keeps its previous bundle on any failure, which is a TargetError(502, 'Inference load failed: ...')."""
    manifest_path, artifacts_dir = target.manifest_path(storage_dir_name)
    body = {"manifest_path": manifest_path, "artifacts_dir": artifacts_dir, "bundle_id": bundle_id}
    try:
        async with client(target, LOAD_SECONDS) as c:
            r = await c.post("/admin/load", json=body)
    except (httpx.HTTPError, OSError) as exc:
        raise TargetError(502, _short(f"Inference load failed: target {target.id} does not answer ({type(exc).__name__}: {exc})")) from None
    try:
        answer = r.json()
    except ValueError:
        answer = {"text": _short(r.text)}
    if r.status_code != 200:
        detail = answer.get("detail") if isinstance(answer, dict) else answer
        raise TargetError(502, _short(f"Inference load failed: target {target.id} answered {r.status_code}: {detail}"))
    return manifest_path, answer if isinstance(answer, dict) else {"answer": answer}
