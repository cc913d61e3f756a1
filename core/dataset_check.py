"""Checks of a built (or uploaded) dataset: static ones always, CityLearn when installed.

Why both: the static checks catch what we can know without CityLearn (every file that
schema.json names exists, headers are the ones CityLearn reads, row counts match the
time steps, every EV a charger file names is defined). Only CityLearn itself can say
that it loads the folder: when a CityLearn Python is found, the folder is loaded in
``CityLearnEnv`` and one episode is stepped with the baseline agent, in a subprocess
(core/citylearn_smoke.py) so its pins never meet the platform's.

``OPEVA_CITYLEARN_PYTHON``: the interpreter to use (default: the cached venv
/var/cache/opeva/citylearn-venv, else this Python if it imports citylearn).
``OPEVA_CITYLEARN_SMOKE_STEPS`` (2000) caps the episode, ``OPEVA_CITYLEARN_TIMEOUT`` (300 s),
``OPEVA_CITYLEARN_CACHE`` is CityLearn's cache directory (default $TMPDIR/opeva-citylearn-cache).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from core.dataset_ev import CHARGER_CSV_COLUMNS

SMOKE_SCRIPT = Path(__file__).with_name("citylearn_smoke.py")
DEFAULT_VENV_PYTHON = Path("/var/cache/opeva/citylearn-venv/bin/python")
BUILDING_REQUIRED = ["month", "hour", "day_type", "indoor_dry_bulb_temperature", "non_shiftable_load", "dhw_demand",
                     "cooling_demand", "heating_demand", "solar_generation"]
FILE_COLUMNS = {
    "weather": ["outdoor_dry_bulb_temperature", "outdoor_relative_humidity", "diffuse_solar_irradiance", "direct_solar_irradiance"],
    "pricing": ["electricity_pricing", "electricity_pricing_predicted_1", "electricity_pricing_predicted_2", "electricity_pricing_predicted_3"],
    "carbon_intensity": ["carbon_intensity"],
}


def citylearn_python() -> str | None:
    configured = os.environ.get("OPEVA_CITYLEARN_PYTHON")
    if configured:
        return configured
    if DEFAULT_VENV_PYTHON.exists():
        return str(DEFAULT_VENV_PYTHON)
    return sys.executable if importlib.util.find_spec("citylearn") else None


def _check(checks: list[dict[str, Any]], name: str, ok: bool, detail: str = "") -> None:
    checks.append({"check": name, "passed": bool(ok), "detail": detail})


def static_checks(folder: Path) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    try:
        schema = json.loads((folder / "schema.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        _check(checks, "schema.json", False, f"unreadable: {exc}")
        return checks
    buildings = schema.get("buildings") or {}
    _check(checks, "schema.json", bool(buildings), f"{len(buildings)} buildings")
    rows = int(schema.get("simulation_end_time_step", -1)) + 1
    evs = set((schema.get("electric_vehicles_def") or {}).keys())
    seen: set[str] = set()
    for b, entry in buildings.items():
        wanted = {"energy_simulation": BUILDING_REQUIRED, **FILE_COLUMNS}
        for key, columns in wanted.items():
            _file_check(checks, folder, f"{b}.{key}", entry.get(key), columns, rows, exact=False)
        for c, charger in (entry.get("chargers") or {}).items():
            frame = _file_check(checks, folder, f"{b}.chargers.{c}", charger.get("charger_simulation"), CHARGER_CSV_COLUMNS, rows, exact=True)
            if frame is not None:
                seen |= {str(v) for v in frame["electric_vehicle_id"].dropna() if str(v)}
    missing = sorted(seen - evs)
    _check(checks, "electric_vehicles_def", not missing, f"EVs in charger files without a definition: {missing}" if missing else f"{len(evs)} EVs defined")
    return checks


def _file_check(checks: list, folder: Path, what: str, file: Any, columns: list[str], rows: int, exact: bool) -> pd.DataFrame | None:
    if not isinstance(file, str) or not (folder / file).is_file() or ".." in file:
        _check(checks, what, False, f"file {file!r} is missing")
        return None
    try:
        frame = pd.read_csv(folder / file, dtype={"electric_vehicle_id": str} if exact else None)
    except (OSError, ValueError) as exc:
        _check(checks, what, False, f"{file}: unreadable CSV: {exc}")
        return None
    header = list(frame.columns)
    ok_header = header == columns if exact else not (set(columns) - set(header))
    ok_rows = rows <= 0 or len(frame) >= rows
    detail = f"{file}: {len(frame)} rows"
    if not ok_header:
        detail += f"; header {header}, expected {'exactly ' if exact else ''}{columns}"
    if not ok_rows:
        detail += f"; fewer rows than the {rows} time steps"
    _check(checks, what, ok_header and ok_rows, detail)
    return frame


def smoke_check(folder: Path, python: str | None) -> dict[str, Any]:
    if python is None:
        return {"status": "skipped", "detail": "CityLearn is not installed here (set OPEVA_CITYLEARN_PYTHON)"}
    steps = os.environ.get("OPEVA_CITYLEARN_SMOKE_STEPS", "2000")
    timeout = float(os.environ.get("OPEVA_CITYLEARN_TIMEOUT", "300"))
    # CityLearn's own cache (sizing tables) kept apart, so offline stand-ins never reach a user's cache.
    cache = os.environ.get("OPEVA_CITYLEARN_CACHE") or os.path.join(tempfile.gettempdir(), "opeva-citylearn-cache")
    try:
        out = subprocess.run([python, str(SMOKE_SCRIPT), str(folder), steps], capture_output=True, text=True, timeout=timeout,
                             env={**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}, "XDG_CACHE_HOME": cache})
    except subprocess.TimeoutExpired:
        return {"status": "failed", "detail": f"CityLearn did not finish within {timeout:.0f} s"}
    except OSError as exc:
        return {"status": "failed", "detail": f"cannot run {python}: {exc}"}
    lines = out.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return {"status": "failed", "detail": f"CityLearn exited {out.returncode}: {out.stderr.strip()[-800:]}"}


def validate(folder: Path, smoke: bool | None = None) -> dict[str, Any]:
    """``smoke``: None = when CityLearn is found, True = required (failed without it), False = no."""
    checks = static_checks(folder)
    static_ok = all(c["passed"] for c in checks)
    python = citylearn_python() if smoke is not False else None
    if smoke is False:
        citylearn = {"status": "skipped", "detail": "not asked for"}
    elif smoke and python is None:
        citylearn = {"status": "failed", "detail": "CityLearn is required but not installed (set OPEVA_CITYLEARN_PYTHON)"}
    else:
        citylearn = smoke_check(folder, python) if static_ok else {"status": "skipped", "detail": "static checks failed"}
    status = "passed" if static_ok and citylearn["status"] in ("passed", "skipped") else "failed"
    return {"status": status, "static": {"passed": static_ok, "checks": checks}, "citylearn": citylearn}
