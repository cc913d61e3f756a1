"""Put the platform in the state the real OPEVA clients assume before they run.

The upstream Postman suite and the OPEVA UI were written against a live OPEVA site;
they name things that must already exist. We create them the way they exist there:
sites as MongoDB databases (written straight into the Mongo-wire server, in the real
site layout of shared/OPEVA_UPSTREAM.md section 2), configs and datasets as files on the
shared data root. Nothing here goes through the API under test, so a broken endpoint
cannot hide behind a broken preparation.

What and why:
- Mongo ``i-charging_headquarters``: a ``schema`` document (CityLearn building spec, the
  upstream layout), ``building_i-charging_headquarters_3Phase`` with 15-min documents
  (``observations`` sub-object) over 2025-05-26..28 (Postman's dataset build and
  historical range ask for 2025-05-27 00:00-18:00) and over the last 3 days (Postman's
  "last 60 minutes", the UI's ``?minutes=8600``), and ``i-charging headquarters`` (the
  collection the UI's Use Cases page reads, with ``charging_sessions``).
- Mongo ``living_lab``: schema + ``building_R-H-01``/``building_R-H-02`` with flat fields
  over the last 3 days (UI Use Cases > Living Lab; Postman's dates-available; the UI's
  dataset build).
- configs/: ``test_config.yaml`` (Postman gets, updates, deletes it), ``demo.yaml``
  (Postman runs it by path), ``ui_quick.yaml`` (a run of a few seconds),
  ``ui_long.yaml`` (minutes: long enough to see it running, read its logs and stop it).
- datasets/: ``okkokoko`` (Postman downloads it), ``adeusola2`` (Postman deletes it),
  ``ui-dataset-a``/``ui-dataset-b`` (the UI downloads one, deletes the other): small
  CityLearn folders.
- energaize_ui's journeys: ``eui_quick.yaml``/``eui_long.yaml`` (the same runs, named by
  ``metadata`` as that UI reads them) and ``eui-dataset-a`` (downloaded).
- ``<state>/sample-dataset.zip``: the zip Postman's "Upload Dataset (ZIP)" sends (the
  collection points at /tmp/sample-dataset.zip; postman.py points it here instead).
- ``<state>/deploy-bundles/local-policy-<tag>/``: a policy bundle folder per journey tag, for
  energaize_ui's Deploy page ("Add bundle folder" picks it). Each is what the reference simulator
  (``python -m simulator``, a 2-building rule-based run) writes to ``bundle/``; the run name is the
  tag, so each folder has its own content and bundle id. The page offers a target only the bundles
  whose name contains the target's id (``local``), hence the folder's name.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pymongo

UTC = dt.timezone.utc
STEP = dt.timedelta(minutes=15)


def _steps(start: dt.datetime, end: dt.datetime):
    t = start
    while t < end:
        yield t
        t += STEP


def _solar(t: dt.datetime) -> float:
    return round(max(0.0, math.sin((t.hour + t.minute / 60 - 6) / 12 * math.pi)) * 1.2, 3)


def _load(t: dt.datetime, base: float) -> float:
    return round(base + 0.3 * math.sin(t.hour / 24 * 2 * math.pi) + 0.05 * (t.minute / 15), 3)


def _building_spec(name: str) -> dict:
    """A CityLearn building spec as upstream sites keep it in their schema document."""
    return {
        "type": "citylearn.building.LSTMDynamicsBuilding", "include": True,
        "energy_simulation": f"{name}.csv", "weather": "weather.csv",
        "carbon_intensity": "carbon_intensity.csv", "pricing": "pricing.csv",
        "inactive_observations": [], "inactive_actions": [],
        "electrical_storage": {"type": "citylearn.energy_model.Battery", "autosize": False,
                               "attributes": {"capacity": 4, "nominal_power": 3.32, "efficiency": 0.95}},
        "pv": {"type": "citylearn.energy_model.PV", "autosize": False, "attributes": {"nominal_power": 2.4}},
    }


def _recent_window(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    end = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    return end - dt.timedelta(days=3), end + STEP


def prepare_mongo(uri: str, now: dt.datetime) -> dict:
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000, tz_aware=True)
    for site in ("i-charging_headquarters", "living_lab"):
        client.drop_database(site)
    recent = list(_steps(*_recent_window(now)))
    old = list(_steps(dt.datetime(2025, 5, 26, tzinfo=UTC), dt.datetime(2025, 5, 28, tzinfo=UTC)))

    ich = client["i-charging_headquarters"]
    ich["schema"].insert_one({"_id": "schema", "schema": {
        "buildings": {"i-charging_headquarters": _building_spec("i-charging_headquarters")},
        "evs": {"EV-1": {"battery_capacity": 50, "charging_power": 7.4}}}})
    ich["building_i-charging_headquarters_3Phase"].insert_many([
        {"timestamp": t, "observations": {"non_shiftable_load": _load(t, 2.0), "solar_generation": _solar(t),
                                          "outdoor_dry_bulb_temperature": 18.5, "electricity_pricing": 0.12,
                                          "carbon_intensity": 0.2}}
        for t in old + recent])
    ich["i-charging headquarters"].insert_many([
        {"timestamp": t, "non_shiftable_load": _load(t, 2.0), "solar_generation": _solar(t),
         "charging_sessions": [
             {"Charger Id": f"CH-{k}", "power": round(3 + k + _solar(t), 2), "soc": 0.5, "EAT": 8, "EOT": 18,
              "EsocA": 0.3, "EsocD": 0.9} for k in (1, 2)]}
        for t in recent])

    lab = client["living_lab"]
    lab["schema"].insert_one({"_id": "schema", "schema": {
        "buildings": {b: _building_spec(b) for b in ("R-H-01", "R-H-02")}}})
    for i, b in enumerate(("R-H-01", "R-H-02")):
        lab[f"building_{b}"].insert_many([
            {"timestamp": t, "non_shiftable_load": _load(t, 0.5 + i), "solar_generation": _solar(t),
             "indoor_dry_bulb_temperature": 21.0} for t in recent])
    return {"recent_from": recent[0].isoformat(), "recent_until": recent[-1].isoformat(),
            "documents": len(old) + 2 * len(recent) + 2 * len(recent)}


CONFIGS = {
    # Postman's "Get/Update/Delete Experiment Config" name this file; upstream-style content.
    "test_config.yaml": "metadata:\n  experiment_name: postman\n  run_name: prepared\nsimulator:\n  dataset_name: sample\n",
    "demo.yaml": "experiment:\n  name: demo\n  run_name: by-path\n",
    "ui_quick.yaml": "experiment:\n  name: ui-quick\n  run_name: r1\nalgorithm:\n  name: rule_based\nsimulation:\n  buildings: 3\n  days: 7\n",
    "ui_long.yaml": "experiment:\n  name: ui-long\n  run_name: r1\nalgorithm:\n  name: q_learning\nepisodes: 400\nsimulation:\n  buildings: 5\n  days: 120\n",
    # energaize_ui names a job metadata.experiment_name + "-" + metadata.run_name.
    "eui_quick.yaml": "metadata:\n  experiment_name: eui-quick\n  run_name: r1\nexperiment:\n  name: eui-quick\n  run_name: r1\n"
                      "algorithm:\n  name: rule_based\nsimulation:\n  buildings: 3\n  days: 7\n",
    "eui_long.yaml": "metadata:\n  experiment_name: eui-long\n  run_name: r1\nexperiment:\n  name: eui-long\n  run_name: r1\n"
                     "algorithm:\n  name: q_learning\nepisodes: 400\nsimulation:\n  buildings: 5\n  days: 120\n",
}


def _citylearn_folder(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "schema.json").write_text(json.dumps({"root_directory": None, "buildings": {"Building_1": {"include": True, "energy_simulation": "Building_1.csv"}}}))
    rows = "\n".join(f"{1},{h},1,0,20.0,0.0,50.0,{0.5 + h / 48:.3f},0,0,0,0" for h in range(24))
    (path / "Building_1.csv").write_text(
        "month,hour,day_type,daylight_savings_status,indoor_dry_bulb_temperature,average_unmet_cooling_setpoint_difference,"
        "indoor_relative_humidity,non_shiftable_load,dhw_demand,cooling_demand,heating_demand,solar_generation\n" + rows + "\n")


def prepare_files(data_dir: Path, state_dir: Path) -> None:
    configs = data_dir / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    for name, text in CONFIGS.items():
        (configs / name).write_text(text)
    for name in ("okkokoko", "adeusola2", "ui-dataset-a", "ui-dataset-b", "eui-dataset-a"):
        _citylearn_folder(data_dir / "datasets" / name)
    src = state_dir / "zip-src"
    _citylearn_folder(src)
    with zipfile.ZipFile(state_dir / "sample-dataset.zip", "w") as z:
        for f in sorted(src.iterdir()):
            z.write(f, f.name)


BUNDLE_TAGS = ("x", "p", "h")  # energaize_journeys.mjs: cross, proxy, proxy-hosts
REPO = Path(__file__).resolve().parents[2]


def prepare_bundles(state_dir: Path) -> list[str]:
    """One bundle folder per tag, made by the reference simulator (a real trained-policy export)."""
    out = []
    for tag in BUNDLE_TAGS:
        name = f"local-policy-{tag}"
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "c.yaml"
            config.write_text(f"experiment:\n  name: local-policy\n  run_name: {tag}\nalgorithm:\n  name: rule_based\n"
                              "simulation:\n  buildings: 2\n  days: 2\n")
            subprocess.run([sys.executable, "-m", "simulator", "--config", str(config), "--out", str(Path(tmp) / "out")],
                           cwd=REPO, check=True, capture_output=True, timeout=120)
            dest = state_dir / "deploy-bundles" / name
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(Path(tmp) / "out" / "bundle", dest)
        out.append(name)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mongo-uri", required=True)
    ap.add_argument("--data-dir", required=True, type=Path)
    ap.add_argument("--state-dir", required=True, type=Path)
    a = ap.parse_args()
    a.state_dir.mkdir(parents=True, exist_ok=True)
    info = prepare_mongo(a.mongo_uri, dt.datetime.now(UTC))
    prepare_files(a.data_dir, a.state_dir)
    info["bundle_folders"] = prepare_bundles(a.state_dir)
    (a.state_dir / "prepared.json").write_text(json.dumps(info))
    print(f"prepared: 2 sites ({info['documents']} documents), {len(CONFIGS)} configs, 5 datasets, sample-dataset.zip, "
          f"{len(info['bundle_folders'])} bundle folders")


if __name__ == "__main__":
    main()
