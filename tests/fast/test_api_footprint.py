"""An API process starts without what only a rare route needs: matplotlib (about 27 MiB, the
compare chart) is imported at the first chart, so every API replica stays under the 200 MiB issue 21
set for its peak while serving big logs (bench/log_flood.py measures the peak)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_api_starts_without_matplotlib_and_loads_it_for_the_first_chart():
    code = ("import sys, api.main\n"
            "print('matplotlib' in sys.modules)\n"
            "from api.usecases import compare_plot\n"
            "compare_plot._charts()\n"
            "print('matplotlib' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True"], out.stdout
