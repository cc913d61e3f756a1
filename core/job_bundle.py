"""A job's policy bundle (``jobs/<id>/bundle/``, written by the simulator) as ``/job-info`` shows it.

Why a module: the bundle is the job's to write, so nothing in it is trusted. The manifest is
read through :mod:`core.job_io` (no link followed on the way, regular file only, at most
:data:`MAX_MANIFEST` bytes read) and only three checked facts come out of it: where the
bundle is, the sha256 of the manifest bytes the platform read (what a later step can pin a
deployment to), and how many files the manifest says the bundle holds. What the simulator
writes is described in docs/bundles.md; the writer is simulator/bundle.py (the simulator
cannot import the platform, so the two names below are restated there).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from core import job_io

BUNDLE_DIR = "bundle"
MANIFEST = "artifact_manifest.json"
MAX_MANIFEST = 4 << 20  # a 500-building manifest of the sample layout is 0.95 MB
MAX_FILES = 100_000


def bundle_summary(job_dir: Path, job_id: str) -> dict[str, Any] | None:
    """``{path, manifest_sha256, files}`` of the job's bundle, or None when it has none (absent,
    a link, not a regular file, too big, not a JSON object, or no ``files`` list).

    ``files`` counts the files the manifest lists plus the manifest itself (what the
    simulator's result.json calls ``bundle_files``). Blocking: call in a thread.
    """
    try:
        raw = job_io.read_bounded(job_dir, f"{BUNDLE_DIR}/{MANIFEST}", 0, MAX_MANIFEST + 1)
    except OSError:  # NotRegularFile (a link on the way, a FIFO) included
        return None
    if not raw or len(raw) > MAX_MANIFEST:
        return None
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(listed, list) or len(listed) > MAX_FILES:
        return None
    return {"path": f"jobs/{job_id}/{BUNDLE_DIR}", "manifest_sha256": hashlib.sha256(raw).hexdigest(), "files": len(listed) + 1}
