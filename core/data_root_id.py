"""The data root's identity: how a host joining from another machine knows it sees the platform's
shared data root, and not an empty folder of the same name.

Why: a host whose mount is missing or points elsewhere runs jobs that cannot find their config or
dataset, and writes results nobody reads. ``make setup`` writes a random id into the root
(``.opeva-data-root``) and publishes it as a Prefect variable; ``make host`` reads the file through
the host's own mount and compares (deployments/join_host.py).
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from core.job_io import read_bounded

MARKER = ".opeva-data-root"
VARIABLE = "opeva_data_root_id"  # the Prefect variable holding it
_ID = re.compile(r"^[0-9a-f]{32}$")


def ensure_marker(root: Path) -> str:
    """The root's id, written once (kept across set-ups: hosts compare against it)."""
    found = read_marker(root)
    if found:
        return found
    root.mkdir(parents=True, exist_ok=True)
    ident = secrets.token_hex(16)
    (root / MARKER).write_text(ident + "\n")
    return ident


def read_marker(root: Path) -> str | None:
    """The id in ``root``'s marker, or None (absent, a link, not an id)."""
    try:
        text = read_bounded(root, MARKER, 0, 64).decode("ascii", "replace").strip()
    except (OSError, ValueError):
        return None
    return text if _ID.fullmatch(text) else None
