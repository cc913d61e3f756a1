"""Render time of the /compare/plot.png charts (core/compare_plot.py), against matplotlib's floor.

Why the core and not HTTP: the route adds one Prefect read per job and a file read, measured by
the API benches; what is new here is the render. The baseline, in the same run, is an empty figure
of the same size through the same Agg canvas (what any PNG of that size costs).

    python3 bench/compare_plot.py [repeats]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _table import HEADER, row

from core import compare_plot as cp


def timed(fn, repeats: int) -> list[float]:
    fn()  # the first render imports fonts and caches them: not counted
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    jobs = ["rbc (1a2b3c4d)", "sac (5e6f7a8b)", "ppo (9c0d1e2f)"]
    kpis3 = [(f"kpi_{i}", [1.0 + i, 2.0, 0.5]) for i in range(3)]
    kpis12 = [(f"kpi_{i}", [1.0 + i, 2.0, 0.5]) for i in range(12)]
    curves = [cp.Series(j, [(s, 100 - s * 0.01 * (k + 1)) for s in range(1000)]) for k, j in enumerate(jobs)]

    def empty() -> bytes:
        return cp._png(cp.Figure(figsize=(cp.WIDTH_IN, cp.kpi_size(3)[1] / cp.DPI), dpi=cp.DPI))

    print(HEADER)
    print(row("baseline: empty 1000x360 figure to PNG", timed(empty, repeats), "ms", 1000))
    print(row("kpis: 3 jobs x 3 KPIs (1000x360)", timed(lambda: cp.kpi_chart(jobs, kpis3, "t"), repeats), "ms", 1000))
    print(row("kpis: 3 jobs x 12 KPIs (1000x1110)", timed(lambda: cp.kpi_chart(jobs, kpis12, "t"), repeats), "ms", 1000))
    print(row("curves: 3 jobs x 1,000 points (1000x550)", timed(lambda: cp.curves_chart(curves, "m", "t"), repeats), "ms", 1000))


if __name__ == "__main__":
    main()
