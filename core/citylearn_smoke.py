"""Load a dataset's schema.json in CityLearn and step one episode with its baseline agent.

Run by core/dataset_check.py as a separate program with CityLearn's own Python
(``OPEVA_CITYLEARN_PYTHON``): CityLearn pins numpy < 2 and pulls torch, which must not
share an environment with the platform. Standard library and CityLearn only here.

    python citylearn_smoke.py <dataset folder> [max steps]

Prints one JSON line: {"status": "passed"|"failed", "version", "steps", "seconds", "detail"}.
"""

import csv
import inspect
import json
import os
import shutil
import sys
import tempfile
import time
import traceback


BATTERY_PLACEHOLDER = """Tesla Powerwall 2:
  attributes: {capacity: 13.5, nominal_power: 5.0, efficiency: 0.9, loss_coefficient: 0.0, capacity_loss_coefficient: 1.0e-05, depth_of_discharge: 1.0}
"""


def offline_sizing_data() -> str:
    """CityLearnEnv always loads PV and battery sizing tables, downloading them from GitHub
    into its cache when absent; offline that fails. They serve autosizing only, so when
    missing a one-row stand-in is written (said in the report): a schema with
    ``autosize: true`` is sized from it, one without is unaffected."""
    from citylearn.data import DataSet

    dataset = DataSet()
    misc = os.path.join(dataset.cache_directory, "misc")
    os.makedirs(misc, exist_ok=True)
    wrote = []
    battery = os.path.join(misc, dataset.BATTERY_CHOICES_FILENAME)
    if not os.path.isfile(battery):
        with open(battery, "w") as f:
            f.write(BATTERY_PLACEHOLDER)
        wrote.append("battery")
    pv = os.path.join(misc, dataset.PV_CHOICES_FILENAME)
    if not os.path.isfile(pv):
        with open(pv, "w") as f:
            f.write("nameplate_capacity_module_1,pv_system_size_dc\n0.4,5.0\n")
        wrote.append("pv")
    return "placeholder (offline): " + ", ".join(wrote) if wrote else "cached"


def columns_for_this_citylearn(folder: str, schema: dict) -> tuple:
    """(folder to load, note): the 2026 building CSV carries ``seconds`` (OPEVA's CityLearn fork
    reads it); CityLearn 2.5 from PyPI passes every column to ``EnergySimulation`` by name and
    refuses one it does not know. Then a copy without the unknown columns is loaded, and the
    report says so: the folder itself is never changed."""
    from citylearn.data import EnergySimulation

    known = set(inspect.signature(EnergySimulation.__init__).parameters)
    files = {b.get("energy_simulation") for b in (schema.get("buildings") or {}).values() if isinstance(b, dict)}
    unknown = set()
    for name in filter(None, files):
        with open(os.path.join(folder, name), newline="") as f:
            unknown |= set(next(csv.reader(f), [])) - known
    if not unknown:
        return folder, None
    copy = tempfile.mkdtemp(prefix="opeva-smoke-")
    shutil.copytree(folder, copy, dirs_exist_ok=True)
    for name in filter(None, files):
        path = os.path.join(copy, name)
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        header = [c for c in (rows[0].keys() if rows else []) if c not in unknown]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    return copy, f"this CityLearn does not take column(s) {sorted(unknown)} (OPEVA's fork does): loaded a copy without them"


def main(folder: str, max_steps: int) -> dict:
    started = time.time()
    out = {"status": "failed", "version": None, "steps": 0, "seconds": 0.0, "detail": ""}
    root = folder
    try:
        import citylearn
        from citylearn.agents.base import BaselineAgent
        from citylearn.citylearn import CityLearnEnv

        out["version"] = getattr(citylearn, "__version__", "unknown")
        out["sizing_data"] = offline_sizing_data()
        with open(os.path.join(folder, "schema.json")) as f:
            schema = json.load(f)
        root, note = columns_for_this_citylearn(folder, schema)
        if note:
            out["adapted"] = note
        schema["root_directory"] = os.path.abspath(root)
        start = int(schema.get("simulation_start_time_step") or 0)
        end = int(schema.get("simulation_end_time_step") or start)
        schema["simulation_end_time_step"] = min(end, start + max_steps - 1)
        schema["episode_time_steps"] = None
        env = CityLearnEnv(schema)
        agent = BaselineAgent(env)
        observations, _ = env.reset()
        while not env.terminated:
            actions = agent.predict(observations)
            observations, _, terminated, truncated, _ = env.step(actions)
            out["steps"] += 1
            if terminated or truncated:
                break
        out["buildings"] = len(env.buildings)
        out["electric_vehicles"] = len(getattr(env, "electric_vehicles", []) or [])
        out["status"] = "passed"
        out["detail"] = f"one episode of {out['steps']} steps with BaselineAgent"
    except Exception as exc:  # the report is the product: any failure is described, not raised
        tb = traceback.format_exc().strip().splitlines()
        out["detail"] = f"{type(exc).__name__}: {exc}"[:1000]
        out["traceback"] = tb[-8:]
    out["seconds"] = round(time.time() - started, 2)
    if out.get("adapted") and root != folder:
        shutil.rmtree(root, ignore_errors=True)
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000)))
