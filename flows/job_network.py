"""The network a job's container joins: a Docker ``--internal`` bridge with no address on the host.

Why this shape (docs/sandbox-network.md has the measurements): on an engine started with
``--iptables=false`` an internal network is not enforced by anything, and the host's bridge
gets the network's gateway address, so a container reaches every host service that listens
on 0.0.0.0 and, with ``ip_forward=1``, sends packets off the machine through the host.
``com.docker.network.bridge.inhibit_ipv4`` leaves the bridge without an address: the host is
not on the network at all, nothing is routed, and the only peers are other containers on it.
The platform's MLflow server is put on it by one relay container (:mod:`flows.mlflow_relay`)
that answers as ``opeva-mlflow:5000`` and forwards to MLflow's Unix socket on the host.

One network per engine, named by ``OPEVA_JOBS_NETWORK`` (default ``opeva-jobs``), created
idempotently by ``make up`` or, when missing, by the first supervisor that needs it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from docker.errors import APIError

DEFAULT_NAME = "opeva-jobs"
NETWORK_ENV = "OPEVA_JOBS_NETWORK"
MLFLOW_ALIAS = "opeva-mlflow"  # the relay's name on the jobs network
MLFLOW_RELAY_PORT = 5000
MLFLOW_URI_FOR_JOBS = f"http://{MLFLOW_ALIAS}:{MLFLOW_RELAY_PORT}"
OPTIONS = {"com.docker.network.bridge.inhibit_ipv4": "true"}
LABEL = "opeva.role"

log = logging.getLogger("opeva.job_network")


def network_name() -> str:
    return os.environ.get(NETWORK_ENV) or DEFAULT_NAME


def _find(client, name: str):
    """The network called exactly ``name`` (Docker's filter matches substrings; names may repeat:
    the oldest wins, so every caller picks the same one)."""
    found = [n for n in client.networks.list(filters={"name": name}) if n.name == name]
    return min(found, key=lambda n: (n.attrs.get("Created", ""), n.id)) if found else None


def ensure_network(client, name: str | None = None):
    """The jobs network, created when missing (internal, no host address); returns the Network."""
    name = name or network_name()
    existing = _find(client, name)
    if existing is not None:
        if existing.attrs.get("Internal") is not True or (existing.attrs.get("Options") or {}).get(next(iter(OPTIONS))) != "true":
            raise RuntimeError(f"Docker network {name!r} exists but is not an internal network without a host address; remove it")
        return existing
    try:
        client.networks.create(
            name, driver="bridge", internal=True, options=dict(OPTIONS), check_duplicate=True,
            labels={LABEL: "jobs-network"},
        )
        log.info("created the jobs network %s", name)
    except APIError as exc:  # created by another supervisor meanwhile
        if exc.status_code != 409:
            raise
    return _find(client, name)


def remove_network(client, name: str) -> bool:
    """Remove the jobs network when nothing is attached (a test platform's clean-up)."""
    network = _find(client, name)
    if network is None:
        return False
    try:
        network.remove()
        return True
    except APIError as exc:
        log.warning("could not remove network %s: %s", name, exc)
        return False


def mlflow_env(host_env: dict[str, str], network: str) -> dict[str, str]:
    """MLFLOW_TRACKING_URI and MLFLOW_UI_BASE_URL for a simulator, unless its host sets its own
    tracking URI, the platform runs no MLflow (set-up found none), or the job has no network."""
    uri = os.environ.get("OPEVA_MLFLOW_TRACKING_URI")
    if not uri or network == "none" or host_env.get("MLFLOW_TRACKING_URI"):
        return {}
    return {"MLFLOW_TRACKING_URI": uri, "MLFLOW_UI_BASE_URL": os.environ.get("OPEVA_MLFLOW_UI_URL") or uri}


def prepare_job(client, data_root: Path, job_dir: Path, mode: str) -> tuple[str, Path]:
    """The network a job joins (the jobs network's name or ``none``) and its own MLflow folder.

    ``<data_root>/mlflow`` is only a mount point (an empty directory of the platform's), so
    that ``jobs/<id>/mlflow`` can be mounted over ``<data_mount>/mlflow`` in the read-only
    data root: what upstream writes there stays the job's own.
    """
    mount_point = data_root / "mlflow"
    if mount_point.is_symlink() or (mount_point.exists() and not mount_point.is_dir()):
        raise RuntimeError(f"{mount_point} must be a plain directory (the mount point of each job's mlflow folder)")
    mount_point.mkdir(mode=0o755, exist_ok=True)
    own = job_dir / "mlflow"
    own.mkdir(exist_ok=True)
    return (ensure_network(client).name if mode == "internal" else "none"), own
