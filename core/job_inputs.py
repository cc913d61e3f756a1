"""Which files of the data root a job reads: what goes to a host that does not share the data root.

Why one place: a Slurm host over ssh (flows/slurm_remote.py) and a Docker host with ``data: local``
(core/host_data.py) stage the same inputs before the job starts. Prefect-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.bounded_tar import SyncFailed
from core.layout import DataRoot, OutsideDataRoot, UnsafeNameError


def inputs_of(storage: DataRoot, cfg_file: Path, info: dict[str, Any], options: dict[str, Any] | None) -> list[Path]:
    """What the job reads from the data root besides its own folder: its config, its dataset, and
    the data-root-relative paths upstream's ``datasets`` / ``required_paths`` name."""
    found = [cfg_file]
    dataset = info.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("name"), str):
        found.append(storage.dataset_dir(dataset["name"]))
    for key in ("datasets", "required_paths"):
        for rel in (options or {}).get(key) or []:
            try:
                path = storage.resolve(str(rel), what=key)
            except (UnsafeNameError, OutsideDataRoot) as exc:
                raise SyncFailed(f"{key}: {exc}") from None
            if not path.exists() and key == "datasets":
                path = storage.dataset_dir(str(rel))  # upstream names a dataset, not a path
            if not path.exists():
                raise SyncFailed(f"{key}: {rel!r} does not exist under the data root")
            found.append(path)
    return [p for p in found if p.exists()]
