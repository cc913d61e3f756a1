"""The CityLearn ``schema.json`` of a built dataset, and the ``citylearn_configs`` it takes.

Why merged in layers: a real site schema is itself a CityLearn schema template
(device specs, sometimes observations or a reward), the OPEVA UI sends CityLearn's
own keys in ``citylearn_configs``, and older clients send the structured form
(``selected_buildings``, ``schema_overrides``, ``building_overrides``, ``defaults``), plus
``validation`` (build options, never written into schema.json).
Precedence, lowest first: our defaults, the site schema's top-level keys,
``schema_overrides``, the CityLearn keys of ``citylearn_configs``. Device specs pass
from the site schema into ``schema.json`` unchanged; only file names are ours.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

STRUCTURED_KEYS = ("selected_buildings", "schema_overrides", "building_overrides", "defaults", "validation")
SITE_ONLY_KEYS = ("buildings", "evs", "electric_vehicles_def", "timezone", "root_directory")
EXTENSION_KEYS = ("collection", "timestamp_field", "fields", "pv_nominal_power")
BUILDER_KEYS = ("root_directory", "seconds_per_time_step", "simulation_end_time_step", "start_date", "buildings")
EV_BATTERY = {"capacity": 50.0, "nominal_power": 50.0, "initial_soc": 0.5, "depth_of_discharge": 0.9}
DEFAULT_OBSERVATIONS = ["month", "hour", "day_type", "daylight_savings_status", "outdoor_dry_bulb_temperature",
                        "electricity_pricing", "carbon_intensity", "non_shiftable_load", "solar_generation",
                        "electrical_storage_soc", "net_electricity_consumption"]


class ValidationOptions(BaseModel):
    """``citylearn_configs.validation``: what to check after the build (static checks always)."""

    model_config = ConfigDict(extra="forbid")
    smoke_check: bool = Field(False, description="Load the folder in CityLearn and step one episode (needs OPEVA_CITYLEARN_PYTHON)")


class CityLearnConfigs(BaseModel):
    """Both forms in one body. CityLearn keys are type-checked when known and passed
    through when not (a warning names them)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [
            {"random_seed": 2, "central_agent": False, "simulation_start_time_step": 0, "episode_time_steps": 24,
             "reward_function": {"type": "citylearn.reward_function.RewardFunction", "attributes": {}}},
            {"selected_buildings": ["R-H-01"], "defaults": {"indoor_dry_bulb_temperature": 21.0}},
        ]},
    )
    selected_buildings: list[str] | None = Field(None, description="Building ids of the site schema; default all")
    schema_overrides: dict[str, Any] = Field(default_factory=dict, description="Top-level schema.json keys for this build")
    building_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Per building id, keys merged into its schema.json entry")
    defaults: dict[str, float] = Field(default_factory=dict, description="Column -> value for what the site lacks")
    validation: ValidationOptions | None = Field(None, description="Build options, not a CityLearn key (the OPEVA UI always sends it)")
    random_seed: int | None = None
    central_agent: bool | None = None
    simulation_start_time_step: int | None = Field(None, ge=0)
    simulation_end_time_step: int | None = Field(None, ge=0)
    episode_time_steps: int | None = Field(None, ge=1)
    rolling_episode_split: bool | None = None
    random_episode_split: bool | None = None
    observations: dict[str, Any] | None = None
    actions: dict[str, Any] | None = None
    agent: dict[str, Any] | None = None
    reward_function: dict[str, Any] | None = None

    @field_validator("selected_buildings", mode="before")
    @classmethod
    def _ids(cls, v: Any) -> Any:
        return [str(b) for b in v] if isinstance(v, list) else v

    def citylearn_keys(self) -> dict[str, Any]:
        """The CityLearn keys sent (known and unknown), without the structured ones."""
        data = self.model_dump(exclude_none=True, exclude=set(STRUCTURED_KEYS))
        return {k: v for k, v in data.items() if k not in BUILDER_KEYS}

    def unknown_keys(self) -> list[str]:
        return sorted(self.model_extra or {})

    @property
    def smoke_check(self) -> bool:
        return bool(self.validation and self.validation.smoke_check)


def base_schema(steps: int, period_s: int, start_date: str) -> dict[str, Any]:
    return {
        "random_seed": 0,
        "root_directory": None,
        "central_agent": False,
        "simulation_start_time_step": 0,
        "simulation_end_time_step": steps - 1,
        "episode_time_steps": None,
        "rolling_episode_split": False,
        "random_episode_split": False,
        "seconds_per_time_step": period_s,
        "start_date": start_date,
        "observations": {c: {"active": True, "shared_in_central_agent": c in DEFAULT_OBSERVATIONS[:7]} for c in DEFAULT_OBSERVATIONS},
        "actions": {"electrical_storage": {"active": True}, "electric_vehicle_storage": {"active": True}},
        "agent": {"type": "citylearn.agents.base.BaselineAgent", "attributes": {}},
        "reward_function": {"type": "citylearn.reward_function.RewardFunction", "attributes": {}},
    }


def merged_schema(base: dict[str, Any], site_raw: dict[str, Any], configs: CityLearnConfigs) -> dict[str, Any]:
    out = dict(base)
    out.update({k: v for k, v in site_raw.items() if k not in SITE_ONLY_KEYS and k not in BUILDER_KEYS})
    out.update({k: v for k, v in configs.schema_overrides.items() if k not in BUILDER_KEYS})
    out.update(configs.citylearn_keys())
    end = base["simulation_end_time_step"]
    for key in ("simulation_start_time_step", "simulation_end_time_step"):
        if isinstance(out.get(key), int) and out[key] > end:
            out[key] = end
    return out


def building_entry(raw: dict[str, Any], files: dict[str, str], chargers: dict[str, str], pv_kw: float | None,
                   overrides: dict[str, Any]) -> dict[str, Any]:
    """The site's building spec with our file names; devices as the site gave them."""
    entry = {k: v for k, v in raw.items() if k not in EXTENSION_KEYS}
    entry.setdefault("include", True)
    entry.setdefault("inactive_observations", [])
    entry.setdefault("inactive_actions", [])
    entry.update(files)
    if pv_kw is not None and not entry.get("pv"):
        entry["pv"] = {"type": "citylearn.energy_model.PV", "autosize": False, "autosize_attributes": {}, "attributes": {"nominal_power": pv_kw}}
    site_chargers = raw.get("chargers") or {}
    entry["chargers"] = {}
    for charger_id, file in chargers.items():
        spec = dict(site_chargers.get(charger_id) or {})
        spec.setdefault("type", "citylearn.electric_vehicle_charger.Charger")
        spec.setdefault("attributes", {})
        spec["charger_simulation"] = file
        entry["chargers"][charger_id] = spec
    if not entry["chargers"]:
        entry.pop("chargers")
    for key, value in overrides.items():
        entry[key] = {**entry[key], **value} if isinstance(value, dict) and isinstance(entry.get(key), dict) else value
    return entry


def ev_definitions(site_raw: dict[str, Any], seen: dict[str, dict[str, float]]) -> dict[str, Any]:
    """``electric_vehicles_def``: the site's own entries as given, then one per EV of
    ``evs`` or seen in the data (battery from ``evs``, else OPEVA's defaults)."""
    given = site_raw.get("electric_vehicles_def") or {}
    evs = site_raw.get("evs") or {}
    out: dict[str, Any] = {}
    for ev in sorted(set(evs) | set(seen)):
        spec = evs.get(ev) or {}
        attrs = dict(EV_BATTERY)
        if spec.get("battery_capacity"):
            attrs["capacity"] = float(spec["battery_capacity"])
        if spec.get("charging_power"):
            attrs["nominal_power"] = float(spec["charging_power"])
        attrs["initial_soc"] = seen.get(ev, {}).get("initial_soc", EV_BATTERY["initial_soc"])
        out[ev] = {"include": True, "battery": {"type": "citylearn.energy_model.Battery", "autosize": False, "attributes": attrs}}
    out.update(given)
    return out
