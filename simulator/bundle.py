"""The trained policy as a bundle: ``jobs/<id>/bundle/``, in the layout OPEVA's simulator writes.

Why this layout: OPEVA's inference service (energAIze_inference) loads a bundle from its
``artifact_manifest.json`` (Algorithms ``docs/inference_bundle.md``, ``utils/artifact_manifest.py``
and ``utils/bundle_validator.py`` at 0bc57d9). The manifest keeps upstream's v1 sections
(``manifest_version`` 1, ``metadata.experiment_name``/``run_name``, ``simulator``, ``training``,
``topology``, ``pipeline``, ``environment`` with ``observation_names``/``encoders``/``action_bounds``,
``agent.format`` + ``agent.artifacts[{agent_index, path, format, config}]``) and adds what the
platform needs to trust and trace a bundle: ``files`` (sha256 and size of every other file),
``created_at``, ``simulator.version``, ``simulator.config_sha256``, ``topology.agents``
(building -> agent).

What each algorithm exports (one agent per building; its EV chargers are part of it):

- ``rule_based`` / ``no_control`` have parameters, not weights: ``policy_agent_<i>.json`` (upstream's
  name and ``format: rule_based``) with the rule's parameters turned into the building's own
  units (price thresholds in $/kWh, energies in kWh), so it runs without the training data.
- ``q_learning`` learns one Q table per building: ``q_tables/agent_<i>.json`` with
  ``format: q_table`` (this simulator's own format: upstream's service knows ``onnx`` and
  ``rule_based`` only, so it would refuse this bundle; the platform's own service reads it).

The folder is written beside its final place and renamed into it, so a reader never sees
half a bundle; nothing is written outside ``<job>/bundle`` (and its temporary sibling).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import simulator
from simulator.agents import BATTERY_MODES, Controller, QLearning, RuleBased
from simulator.config import SimulatorConfig
from simulator.dataset import Dataset

MANIFEST = "artifact_manifest.json"
BUNDLE_DIR = "bundle"
MANIFEST_VERSION = 1  # upstream's bundle_validator accepts only 1
POLICY_VERSION = 1
OBSERVATIONS = ("hour", "electricity_pricing", "non_shiftable_load", "solar_generation", "electrical_storage_energy")
CHARGER_OBSERVATIONS = ("ev_required_energy", "ev_later_deliverable_energy", "ev_step_energy")
UNITS = {"hour": "0..23", "electricity_pricing": "$/kWh", "non_shiftable_load": "kWh per step",
         "solar_generation": "kWh per step", "electrical_storage_energy": "kWh stored",
         "ev_required_energy": "kWh the plugged EV still needs by departure (0 when none)",
         "ev_later_deliverable_energy": "kWh the later steps of the session can still deliver",
         "ev_step_energy": "kWh the EV can take this step, battery side (0 when none plugged)"}


def config_digest(config: SimulatorConfig) -> str:
    """sha256 of the validated config as canonical JSON: the same experiment gives the same
    digest whatever the YAML's spelling (defaults filled in, keys sorted)."""
    values = {f.name: getattr(config, f.name) for f in fields(config)}
    values["params"] = config.params.model_dump()
    blob = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _chargers(data: Dataset, building: int) -> list[tuple[int, str]]:
    """(charger index, CityLearn-style id ``charger_<building>_<k>``) of one building."""
    out = []
    for j in np.flatnonzero(data.chargers.building == building):
        out.append((int(j), f"charger_{building + 1}_{len(out) + 1}"))
    return out


def _agent_io(data: Dataset, i: int) -> tuple[list[str], list[str]]:
    """Observation and action names of building ``i``'s agent, in the order the policy reads them."""
    chargers = [name for _, name in _chargers(data, i)]
    observations = [*OBSERVATIONS, *(f"{c}_{o}" for c in chargers for o in CHARGER_OBSERVATIONS)]
    actions = ["electrical_storage", *(f"electric_vehicle_storage_{c}" for c in chargers)]
    return observations, actions


def _price_threshold(data: Dataset, i: int, fraction: float) -> float | None:
    """The $/kWh at ``fraction`` of building ``i``'s price range (None for a flat tariff:
    the controllers then treat every step as dear, never cheap)."""
    low, high = float(data.price[:, i].min()), float(data.price[:, i].max())
    return None if high <= low else low + fraction * (high - low)


def _battery(data: Dataset, i: int) -> dict[str, float]:
    b = data.batteries
    return {"capacity_kwh": float(b.capacity[i]), "nominal_power_kw": float(b.nominal_power[i]),
            "min_energy_kwh": float(b.min_energy[i]), "efficiency": float(b.efficiency[i])}


def _policy(controller: Controller, config: SimulatorConfig, data: Dataset, i: int) -> tuple[str, str, dict[str, Any]]:
    """(artifact path, format, content) of building ``i``'s agent."""
    params = config.params.model_dump()
    observations, actions = _agent_io(data, i)
    common = {"version": POLICY_VERSION, "agent_index": i, "building": data.building_names[i],
              "observation_names": observations, "action_names": actions, "hours_per_step": data.hours_per_step,
              "battery": _battery(data, i), "hyperparameters": params,
              "chargers": [{"id": name, "max_power_kw": float(data.chargers.max_power[j]),
                            "efficiency": float(data.chargers.efficiency[j])} for j, name in _chargers(data, i)]}
    cheap = params.get("cheap_price_fraction")
    ev_rule = ({"rule": "charge_full_power_until_required"} if cheap is None else
               {"rule": "cheap_steps_else_deadline", "cheap_price_below": _price_threshold(data, i, cheap)})
    if isinstance(controller, QLearning):
        p = config.params
        states = p.hour_bins * p.price_levels * 2 * p.soc_bins
        table = controller.q[i * states:(i + 1) * states]
        low, high = float(data.price[:, i].min()), float(data.price[:, i].max())
        return f"q_tables/agent_{i}.json", "q_table", {
            **common, "policy_type": "tabular_q_learning", "episodes_trained": controller.episodes_trained,
            "battery_modes": list(BATTERY_MODES), "ev_charging": ev_rule,
            "state": {"index": "((hour_bin * price_levels + price_level) * 2 + pv_surplus) * soc_bins + soc_bin",
                      "hour_bins": p.hour_bins, "price_levels": p.price_levels, "soc_bins": p.soc_bins,
                      "price_low": low, "price_high": high, "pv_surplus": "non_shiftable_load < solar_generation"},
            "q": table.round(9).tolist()}
    if isinstance(controller, RuleBased):
        rule = {"policy_type": "rule_based_price_pv", "ev_charging": ev_rule,
                "battery_rule": {"cheap_price_below": _price_threshold(data, i, params["cheap_price_fraction"]),
                                 "discharge_price_at_or_above": _price_threshold(data, i, params["discharge_price_fraction"]),
                                 "grid_charge_to_kwh": params["grid_charge_soc"] * float(data.batteries.capacity[i])}}
    else:
        rule = {"policy_type": "no_control", "ev_charging": ev_rule, "battery_rule": {"idle": True}}
    return f"policy_agent_{i}.json", "rule_based", {**common, **rule, "default_actions": {a: 0.0 for a in actions}}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_json(path: Path, content: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _manifest(config: SimulatorConfig, data: Dataset, digest: str, agents: list[dict[str, Any]],
              artifacts: list[dict[str, Any]], fmt: str) -> dict[str, Any]:
    io = [_agent_io(data, i) for i in range(data.buildings)]
    bounds = [{"low": [-1.0] + [0.0] * (len(a) - 1), "high": [1.0] * len(a)} for _, a in io]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "manifest_version": MANIFEST_VERSION, "generated_at": now, "created_at": now,
        "metadata": {"experiment_name": config.experiment_name, "run_name": config.run_name,
                     "description": f"{config.algorithm} policy of the OPEVA reference simulator"},
        "simulator": {"name": "opeva-reference-simulator", "version": simulator.__version__, "dataset_name": data.name,
                      "central_agent": False, "reward_function": "cost_saving_vs_idle_battery", "config_sha256": digest},
        "training": {"algorithm": config.algorithm, "episodes": config.episodes if config.learns else 0, "seed": config.seed,
                     "hyperparameters": config.params.model_dump()},
        "topology": {"num_agents": data.buildings, "observation_dimensions": [len(o) for o, _ in io],
                     "action_dimensions": [len(a) for _, a in io], "action_space": bounds, "agents": agents},
        "pipeline": [{"stage_index": 0, "algorithm": config.algorithm, "count": 1, "hyperparameters": config.params.model_dump()}],
        "environment": {"observation_names": [o for o, _ in io],
                        "observation_units": UNITS,
                        "encoders": [[{"type": "NoNormalization", "params": {}} for _ in o] for o, _ in io],
                        "action_bounds": bounds, "action_names_by_agent": [a for _, a in io],
                        "reward_function": {"name": "cost_saving_vs_idle_battery", "params": {}}},
        "agent": {"format": fmt, "artifacts": artifacts},
    }


def build_bundle(folder: Path, config: SimulatorConfig, data: Dataset, controller: Controller) -> dict[str, Any]:
    """Write the policy files and the manifest into ``folder`` (empty); returns the manifest."""
    agents, artifacts, fmt = [], [], "rule_based"
    for i in range(data.buildings):
        path, fmt, content = _policy(controller, config, data, i)
        _write_json(folder / path, content)
        agents.append({"agent_index": i, "building": data.building_names[i], "chargers": [n for _, n in _chargers(data, i)]})
        artifacts.append({"agent_index": i, "path": path, "format": fmt, "config": {"use_preprocessor": False},
                          "observation_dimension": len(content["observation_names"]),
                          "action_dimension": len(content["action_names"])})
    manifest = _manifest(config, data, config_digest(config), agents, artifacts, fmt)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    manifest["files"] = [{"path": p.relative_to(folder).as_posix(), "sha256": _sha256(p), "size_bytes": p.stat().st_size} for p in files]
    _write_json(folder / MANIFEST, manifest)
    return manifest


def export_bundle(job_dir: Path, config: SimulatorConfig, data: Dataset, controller: Controller) -> dict[str, Any]:
    """Write ``job_dir/bundle`` atomically (a temporary sibling renamed into place; a bundle
    already there is replaced whole); returns the keys result.json carries about it."""
    job_dir.mkdir(parents=True, exist_ok=True)
    final = job_dir / BUNDLE_DIR
    tmp = Path(tempfile.mkdtemp(dir=job_dir, prefix=".bundle.tmp-"))
    old: Path | None = None
    try:
        manifest = build_bundle(tmp, config, data, controller)
        if final.is_symlink() or final.is_file():
            final.unlink()
        elif final.exists():
            old = Path(tempfile.mkdtemp(dir=job_dir, prefix=".bundle.old-"))
            os.replace(final, old / BUNDLE_DIR)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not final.exists():
            os.replace(old / BUNDLE_DIR, final)  # put the previous bundle back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return {"bundle_available": True, "bundle_dir": BUNDLE_DIR, "bundle_manifest_sha256": _sha256(final / MANIFEST),
            "bundle_format": manifest["agent"]["format"], "bundle_files": len(manifest["files"]) + 1}
