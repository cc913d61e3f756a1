"""Dataset → run lineage: which version of a dataset each job ran on.

A dataset's version is the sha256 of its files (core/datasets.files_digest; builds keep it
in ``dataset.json``). When a job starts, the platform appends ``{job_id, digest, at}`` to
``<root>/platform/lineage/<dataset>.jsonl``.

Why a store of ours, in the platform's folder: Prefect OSS keeps events a few days and has no
asset graph, and a job's own folder (job_info.json) is writable by the job, so neither can be
the record. The platform folder is read-only to every job (the sandbox mounts the data root
read-only but the job's folder), and an append-only line per use survives restarts of anything.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.datasets import METADATA_FILE, files_digest, read_metadata
from core.layout import DataRoot
from core.names import safe_name

MAX_LINE = 4096


def dataset_name_of(config: dict[str, Any]) -> str | None:
    """The dataset a config runs on: the reference simulator's ``dataset``, OPEVA's
    ``simulator.dataset_name``, or ``dataset.name``."""
    candidates = [config.get("dataset")]
    simulator = config.get("simulator")
    if isinstance(simulator, dict):
        candidates.append(simulator.get("dataset_name"))
    if isinstance(config.get("dataset"), dict):
        candidates.append(config["dataset"].get("name"))
    for name in candidates:
        if isinstance(name, str) and name:
            try:
                return safe_name(name, what="dataset name")
            except ValueError:
                return None
    return None


def dataset_version(storage: DataRoot, name: str) -> dict[str, Any] | None:
    """``{name, digest, site, window}`` of ``datasets/<name>`` as it is now; None when absent.
    Builds and uploads store the digest in the metadata; a folder placed by hand gets it computed."""
    folder = storage.dataset_dir(name)
    if not folder.is_dir() or folder.is_symlink():
        return None
    meta = read_metadata(folder) if (folder / METADATA_FILE).is_file() else {}
    digest = meta.get("digest") if isinstance(meta.get("digest"), str) else None
    window = {"from": meta.get("from"), "until": meta.get("until")} if meta.get("from") else None
    return {"name": name, "digest": digest or files_digest(folder), "site": meta.get("site"), "window": window}


def _store(storage: DataRoot, name: str) -> Path:
    return storage.platform_dir / "lineage" / f"{safe_name(name, what='dataset name')}.jsonl"


def record_use(storage: DataRoot, job_id: str, version: dict[str, Any]) -> None:
    """Append one line (O_APPEND: concurrent jobs' lines do not interleave)."""
    path = _store(storage, version["name"])
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"job_id": job_id, "digest": version["digest"], "at": datetime.now(timezone.utc).isoformat()}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def uses(storage: DataRoot, name: str) -> list[dict[str, str]]:
    """Every recorded use of ``datasets/<name>``, oldest first; a job's retries count once (its first use)."""
    path = _store(storage, name)
    if not path.is_file() or path.is_symlink():
        return []
    seen: dict[str, dict[str, str]] = {}
    with path.open("rb") as f:
        for raw in f:
            if len(raw) > MAX_LINE:
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict) and _job_id(entry.get("job_id")) and isinstance(entry.get("digest"), str):
                seen.setdefault(entry["job_id"], {"job_id": entry["job_id"], "digest": entry["digest"], "at": str(entry.get("at", ""))})
    return list(seen.values())


def _job_id(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        return False


def versions(storage: DataRoot, name: str) -> list[dict[str, Any]]:
    """Uses grouped by version, in the order each version was first used: ``[{digest, jobs: [use...]}]``."""
    grouped: dict[str, list[dict[str, str]]] = {}
    for use in uses(storage, name):
        grouped.setdefault(use["digest"], []).append(use)
    return [{"digest": digest, "jobs": jobs} for digest, jobs in grouped.items()]


def record_job_dataset(storage: DataRoot, job_id: str, config: dict[str, Any]) -> dict[str, Any] | None:
    """What the simulation flow calls before the simulator starts: the version the job runs on,
    recorded; None when the config names no dataset (the reference simulator's own sample) or a
    missing one (the simulator then says so itself)."""
    name = dataset_name_of(config)
    version = dataset_version(storage, name) if name else None
    if version is not None:
        record_use(storage, job_id, version)
    return version


def lineage_markdown(storage: DataRoot, name: str) -> str:
    """The dataset's versions and the jobs on each, as the markdown of a Prefect artifact (the
    "graph" Prefect's UI can show: Prefect OSS has no asset graph)."""
    lines = [f"### Dataset `{name}`: versions and the jobs that ran on them", "", "| version (sha256) | job | used at |", "|---|---|---|"]
    for v in versions(storage, name):
        for use in v["jobs"]:
            lines.append(f"| `{v['digest'][:12]}` | `{use['job_id']}` | {use['at'][:19]} |")
    return "\n".join(lines) + "\n"


def artifact_key(name: str) -> str:
    """A Prefect artifact key for the dataset (lowercase letters, digits and dashes only)."""
    return "lineage-" + re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:80]
