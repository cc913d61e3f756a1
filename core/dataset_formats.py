"""What a dataset folder holds, as the OPEVA UI labels it: ``format``, ``type``, ``formats``,
``format_counts``.

Why by file suffix: upstream decides the same way (``csv``, ``parquet``, ``mixed`` when both,
``unknown`` when neither), and the UI shows "Unknown" when the answer lacks ``format``.
``type`` is what kind of dataset it is: ``citylearn`` when a ``schema.json`` is there (what
the simulator loads), else ``unknown``. Links are not followed or counted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DATA_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".parq": "parquet"}


def count_formats(names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        kind = DATA_SUFFIXES.get(os.path.splitext(name)[1].lower())
        if kind:
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def summary(counts: dict[str, int], has_schema: bool) -> dict[str, Any]:
    formats = sorted(counts)
    fmt = formats[0] if len(formats) == 1 else ("mixed" if formats else "unknown")
    return {"format": fmt, "type": "citylearn" if has_schema else "unknown", "formats": formats, "format_counts": counts}


def describe_folder(folder: Path) -> dict[str, Any]:
    """The four fields for a dataset folder (regular files only, links skipped)."""
    names: list[str] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        names += [f for f in files if not os.path.islink(os.path.join(root, f))]
    schema = folder / "schema.json"
    return summary(count_formats(names), schema.is_file() and not schema.is_symlink())
