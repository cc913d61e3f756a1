"""How much disk a job's folder holds, by kind: ``/job-info``'s ``result_storage``.

Why its own module: users clean up by what takes room (checkpoints, bundles, logs), so the
walk sorts files by the folder they sit in. It never follows a link (a job may leave one that
points anywhere): a link counts as the link itself.
"""

from __future__ import annotations

import os
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
CATEGORIES = ("logs", "results", "progress", "bundle", "checkpoints", "other")
MAX_ENTRIES = 200_000  # a folder with more stops the walk (the answer says truncated)


def _category(top: str) -> str:
    return top if top in CATEGORIES and top != "other" else "other"


def measure(job_dir: Path) -> dict[str, Any]:
    """``{schema_version, measured_at, installed: {bytes, file_count, categories}, truncated}``."""
    cats = {c: {"bytes": 0, "file_count": 0} for c in CATEGORIES}
    seen = 0
    truncated = False
    stack: list[tuple[Path, str | None]] = [(job_dir, None)]
    while stack and not truncated:
        folder, top = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            seen += 1
            if seen > MAX_ENTRIES:
                truncated = True
                break
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            category = _category(top if top is not None else entry.name)
            if stat.S_ISDIR(st.st_mode):
                stack.append((Path(entry.path), top if top is not None else entry.name))
            elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                if top is None and stat.S_ISREG(st.st_mode):
                    category = "other"  # job_info.json, config.resolved.yaml...: files at the top
                cats[category]["bytes"] += st.st_size
                cats[category]["file_count"] += 1
    return {
        "schema_version": SCHEMA_VERSION,
        "measured_at": datetime.now(timezone.utc).isoformat(),
        # What came over the network from a remote host (upstream's artifact sync); the data root
        # is shared here, so nothing is transferred: energaize_ui reads transfer.bytes either way.
        "transfer": {"bytes": None},
        "installed": {"bytes": sum(c["bytes"] for c in cats.values()), "file_count": sum(c["file_count"] for c in cats.values()),
                      "categories": cats},
        "truncated": truncated,
    }
