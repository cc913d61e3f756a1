"""The table every bench prints (p50, p95, mean), with no side effect on import."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: benches run as `python3 bench/<x>.py`

from tools.load_drill import percentile as pct  # noqa: E402  (one interpolated percentile for every bench and drill)


def row(name: str, values: list[float], unit: str = "s", scale: float = 1.0) -> str:
    return f"| {name:<44} | {len(values):>3} | {pct(values, .5) * scale:>9.3f} | {pct(values, .95) * scale:>9.3f} | {statistics.mean(values) * scale:>9.3f} | {unit:<4} |"


HEADER = f"| {'measure':<44} | {'n':>3} | {'p50':>9} | {'p95':>9} | {'mean':>9} | unit |\n|{'-' * 46}|{'-' * 5}|{'-' * 11}|{'-' * 11}|{'-' * 11}|------|"
