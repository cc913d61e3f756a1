"""A bundle's policy as a function of observations, for the three formats the reference simulator
exports (simulator/bundle.py): ``rule_based_price_pv``, ``no_control`` and ``q_table``.

Why here and not ``simulator.agents``: the simulator's controllers read the whole dataset (price
ranges, the EV sessions ahead) and a live environment; a deployed policy sees one step's
observations. The bundle carries what the controllers derived from the data (price thresholds in
$/kWh, energies in kWh, the Q tables and their state layout), so this module re-states each
controller's decision on one observation vector. ``tests/fast/test_inference_service.py`` checks
that it gives the controllers' actions on every step of a simulated episode.

Observation vector of agent *i* (the manifest's ``environment.observation_names[i]``):
``hour, electricity_pricing, non_shiftable_load, solar_generation, electrical_storage_energy``,
then per charger ``ev_required_energy, ev_later_deliverable_energy, ev_step_energy``. Actions:
``electrical_storage`` in [-1, 1], then one ``electric_vehicle_storage_<charger>`` in [0, 1] each.
Pure Python (no numpy): a few dozen floats per request are faster without array overhead.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "artifact_manifest.json"
MAX_MANIFEST_BYTES = 16 << 20
MAX_ARTIFACT_BYTES = 256 << 20
BATTERY_OBS = 5  # hour, price, load, solar, stored energy
CHARGER_OBS = 3  # required, later deliverable, step energy


class PolicyError(ValueError):
    """The bundle cannot be loaded (bad manifest, missing or altered file, unknown format)."""


def _clip(x: float, low: float, high: float) -> float:
    return low if x < low else min(x, high)


def _ev_fractions(rule: dict[str, Any], price: float, chargers: list[float]) -> list[float]:
    """EV charging of both controllers: cheap step (or no threshold rule) → all that is needed;
    else only what the session's later steps cannot deliver."""
    cheap_below = rule.get("cheap_price_below")
    deadline_rule = rule.get("rule") == "cheap_steps_else_deadline"
    cheap = not deadline_rule or (cheap_below is not None and price < cheap_below)
    out = []
    for k in range(0, len(chargers), CHARGER_OBS):
        need, later, step = chargers[k], chargers[k + 1], chargers[k + 2]
        energy = need if cheap else max(need - later, 0.0)
        out.append(_clip(energy / step, 0.0, 1.0) if step > 0 else 0.0)
    return out


@dataclass(frozen=True)
class AgentPolicy:
    """One agent's policy file (its JSON content) and the arithmetic it needs, precomputed."""

    spec: dict[str, Any]
    n_obs: int
    n_act: int

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> AgentPolicy:
        kind = spec.get("policy_type")
        if kind not in ("rule_based_price_pv", "no_control", "tabular_q_learning"):
            raise PolicyError(f"agent {spec.get('agent_index')}: unknown policy_type {kind!r}")
        try:
            n_obs, n_act = len(spec["observation_names"]), len(spec["action_names"])
            if kind == "tabular_q_learning":
                st = spec["state"]
                rows = st["hour_bins"] * st["price_levels"] * 2 * st["soc_bins"]
                if len(spec["q"]) != rows or any(len(r) != len(spec["battery_modes"]) for r in spec["q"]):
                    raise PolicyError(f"agent {spec['agent_index']}: q table is not {rows} x {len(spec['battery_modes'])}")
            if kind == "rule_based_price_pv":
                rule = spec["battery_rule"]
                _ = (rule["cheap_price_below"], rule["discharge_price_at_or_above"], rule["grid_charge_to_kwh"])
            _ = (spec["battery"]["nominal_power_kw"], spec["hours_per_step"], spec["ev_charging"])
        except (KeyError, TypeError) as exc:
            raise PolicyError(f"agent {spec.get('agent_index')}: policy file lacks {exc}") from None
        if n_obs != BATTERY_OBS + CHARGER_OBS * (n_act - 1):
            raise PolicyError(f"agent {spec.get('agent_index')}: {n_obs} observations do not fit {n_act} actions")
        return cls(spec, n_obs, n_act)

    def _step_energy(self) -> float:
        return float(self.spec["battery"]["nominal_power_kw"]) * float(self.spec["hours_per_step"])

    def act(self, obs: list[float]) -> list[float]:
        s = self.spec
        hour, price, load, solar, stored = obs[:BATTERY_OBS]
        ev = _ev_fractions(s["ev_charging"], price, obs[BATTERY_OBS:])
        kind = s["policy_type"]
        if kind == "no_control":
            return [0.0, *ev]
        step = self._step_energy()
        if kind == "rule_based_price_pv":
            rule = s["battery_rule"]
            base = load - solar
            cheap_below, dear_at = rule["cheap_price_below"], rule["discharge_price_at_or_above"]
            cheap = cheap_below is not None and price < cheap_below
            dear = dear_at is None or price >= dear_at  # a flat tariff: every step is dear, as in training
            grid = max(rule["grid_charge_to_kwh"] - stored, 0.0) if cheap else 0.0
            energy = -base if base < 0 else grid - (base if dear else 0.0)
            return [_clip(energy / step, -1.0, 1.0) if step > 0 else 0.0, *ev]
        return [self._q_battery(hour, price, load, solar, stored, step), *ev]

    def _q_battery(self, hour: float, price: float, load: float, solar: float, stored: float, step: float) -> float:
        s, st = self.spec, self.spec["state"]
        hour_bin = int(hour) * st["hour_bins"] // 24
        low, high = st["price_low"], st["price_high"]
        position = (price - low) / (high - low) if high > low else 1.0
        level = min(max(int(position * st["price_levels"]), 0), st["price_levels"] - 1)
        surplus = 1 if load < solar else 0
        bat = s["battery"]
        usable = bat["capacity_kwh"] - bat["min_energy_kwh"]
        scale = st["soc_bins"] / usable if usable > 0 else 0.0
        soc_bin = min(max(int((stored - bat["min_energy_kwh"]) * scale), 0), st["soc_bins"] - 1)
        row = s["q"][((min(max(hour_bin, 0), st["hour_bins"] - 1) * st["price_levels"] + level) * 2 + surplus) * st["soc_bins"] + soc_bin]
        mode = max(range(len(row)), key=row.__getitem__)  # first maximum, as numpy's argmax
        request = (0.0, solar - load, max(solar - load, 0.0), 0.5 * step, step)[mode]
        return _clip(request / step, -1.0, 1.0) if step > 0 else 0.0


@dataclass(frozen=True)
class Policy:
    """A loaded bundle: its agents in ``agent_index`` order, and where it came from."""

    bundle_id: str
    manifest_path: str
    agents: tuple[AgentPolicy, ...]
    manifest: dict[str, Any]

    def act(self, observations: list[list[float]]) -> list[list[float]]:
        return [agent.act(obs) for agent, obs in zip(self.agents, observations, strict=True)]

    def check(self, observations: Any) -> list[list[float]]:
        """The request's observations as floats, or ValueError saying what is wrong with them."""
        if not isinstance(observations, list) or len(observations) != len(self.agents):
            raise ValueError(f"observations must be a list of {len(self.agents)} lists (one per agent, in agent_index order)")
        out = []
        for i, (agent, obs) in enumerate(zip(self.agents, observations)):
            if not isinstance(obs, list) or len(obs) != agent.n_obs:
                raise ValueError(f"observations[{i}] must be a list of {agent.n_obs} numbers: {agent.spec['observation_names']}")
            row = []
            for j, v in enumerate(obs):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ValueError(f"observations[{i}][{j}] ({agent.spec['observation_names'][j]}) is not a finite number")
                row.append(float(v))
            out.append(row)
        return out


def _inside(root: Path, rel: str) -> Path:
    """``root/rel`` when it stays inside ``root`` (no absolute path, no '..', no link on the way)."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or ".." in Path(rel).parts:
        raise PolicyError(f"artifact path {rel!r} leaves the bundle")
    path = root / rel
    if path.resolve() != root.resolve() / rel or path.is_symlink():
        raise PolicyError(f"artifact path {rel!r} is a link or leaves the bundle")
    return path


def _read(path: Path, limit: int) -> bytes:
    if not path.is_file() or path.is_symlink():
        raise PolicyError(f"{path.name} is missing or not a regular file")
    if path.stat().st_size > limit:
        raise PolicyError(f"{path.name} is larger than {limit} bytes")
    return path.read_bytes()


def load_policy(manifest_path: Path, artifacts_dir: Path, bundle_id: str) -> Policy:
    """Read and check a bundle: every file the manifest lists must match its sha256 (a bundle
    altered since it was stored is refused), every agent's file must be a known format."""
    try:
        manifest = json.loads(_read(manifest_path, MAX_MANIFEST_BYTES))
        listed = {f["path"]: f["sha256"] for f in manifest.get("files", [])}
        artifacts = sorted(manifest["agent"]["artifacts"], key=lambda a: a["agent_index"])
    except PolicyError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise PolicyError(f"{MANIFEST} is not a v1 bundle manifest ({exc!s})") from None
    if not artifacts:
        raise PolicyError("the manifest lists no agent artifacts")
    agents = []
    for i, art in enumerate(artifacts):
        if art.get("agent_index") != i:
            raise PolicyError(f"agent indices are not 0..{len(artifacts) - 1}")
        if art.get("format") not in ("rule_based", "q_table"):
            raise PolicyError(f"agent {i}: format {art.get('format')!r} is not served here (rule_based, q_table)")
        blob = _read(_inside(artifacts_dir, art.get("path")), MAX_ARTIFACT_BYTES)
        if listed.get(art["path"]) != hashlib.sha256(blob).hexdigest():
            raise PolicyError(f"agent {i}: {art['path']} does not match the manifest's sha256")
        try:
            spec = json.loads(blob)
        except ValueError:
            raise PolicyError(f"agent {i}: {art['path']} is not JSON") from None
        agents.append(AgentPolicy.from_spec(spec))
    return Policy(bundle_id=bundle_id, manifest_path=str(manifest_path), agents=tuple(agents), manifest=manifest)
