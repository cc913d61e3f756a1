"""A site's schema, in the format OPEVA's MongoDB really holds: a CityLearn schema
template whose ``buildings`` are CityLearn building specs.

Kept in the site's own ``schema`` collection as ``{"_id": "schema", "schema": {...}}``.
Why validate only what we know and keep the rest: real schemas carry CityLearn keys
(device types, attributes, observations) that evolve with CityLearn and with OPEVA's
fork; refusing what we do not recognise would lock real sites out (it did). Known keys
are type-checked; unknown keys and device attributes pass through, and the schema is
stored exactly as it was sent, so it reads back unchanged.

Optional extensions of this project (absent from real schemas, all optional):
``timezone`` (IANA zone of the calendar columns; default Europe/Lisbon), and per
building ``collection`` (default ``building_<id>``, else the first collection starting
with it), ``timestamp_field``, ``fields`` (CityLearn column -> document field, dotted
paths allowed, when a site uses its own names) and ``pv_nominal_power`` (kW, when the
``pv`` device does not say).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_TIMEZONE = "Europe/Lisbon"

# CityLearn building columns a site can fill, and how a time step aggregates them.
SUMMED = ("non_shiftable_load", "dhw_demand", "cooling_demand", "heating_demand", "solar_generation")
AVERAGED = ("indoor_dry_bulb_temperature", "indoor_relative_humidity", "average_unmet_cooling_setpoint_difference")
BUILDING_COLUMNS = SUMMED + AVERAGED
WEATHER_COLUMNS = ("outdoor_dry_bulb_temperature", "outdoor_relative_humidity", "diffuse_solar_irradiance", "direct_solar_irradiance")
SITE_COLUMNS = WEATHER_COLUMNS + ("electricity_pricing", "carbon_intensity")
DEVICES = ("cooling_device", "heating_device", "dhw_device", "dhw_storage", "cooling_storage", "heating_storage",
           "electrical_storage", "pv", "power_outage", "dynamics")


class _Open(BaseModel):
    """Known keys typed, unknown keys kept (CityLearn and OPEVA add keys over time)."""

    model_config = ConfigDict(extra="allow")


class DeviceSpec(_Open):
    """A CityLearn device: ``{type, autosize, autosize_attributes, attributes}``."""

    type: str | None = None
    autosize: bool | None = None
    autosize_attributes: dict[str, Any] | None = None
    attributes: dict[str, Any] | None = None


class ChargerDevice(DeviceSpec):
    charger_simulation: str | None = Field(None, description="written by the builder; a value given here is replaced")


class BuildingSpec(_Open):
    type: str | None = Field(None, description="e.g. citylearn.building.LSTMDynamicsBuilding")
    include: bool | None = None
    energy_simulation: str | None = None
    weather: str | None = None
    carbon_intensity: str | None = None
    pricing: str | None = None
    inactive_observations: list[str] | None = None
    inactive_actions: list[str] | None = None
    cooling_device: DeviceSpec | None = None
    heating_device: DeviceSpec | None = None
    dhw_device: DeviceSpec | None = None
    dhw_storage: DeviceSpec | None = None
    cooling_storage: DeviceSpec | None = None
    heating_storage: DeviceSpec | None = None
    electrical_storage: DeviceSpec | None = None
    pv: DeviceSpec | None = None
    power_outage: DeviceSpec | None = None
    dynamics: DeviceSpec | None = None
    chargers: dict[str, ChargerDevice] | None = None
    # extensions of this project
    collection: str | None = Field(None, description="default: building_<id>, else the first collection starting with it")
    timestamp_field: str = "timestamp"
    fields: dict[str, str] = Field(default_factory=dict, description="CityLearn column -> document field (dotted paths allowed)")
    pv_nominal_power: float | None = Field(None, ge=0, description="kW of PV when the pv device does not give nominal_power")

    @field_validator("fields")
    @classmethod
    def _columns(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(BUILDING_COLUMNS) - set(SITE_COLUMNS))
        if unknown:
            raise ValueError(f"unknown columns {unknown}; known: {', '.join(BUILDING_COLUMNS + SITE_COLUMNS)}")
        return v

    def pv_kw(self) -> float | None:
        attrs = (self.pv.attributes or {}) if self.pv else {}
        value = attrs.get("nominal_power", self.pv_nominal_power)
        return float(value) if isinstance(value, (int, float)) and value > 0 else None


class EvSpec(_Open):
    battery_capacity: float | None = Field(None, gt=0, description="kWh")
    charging_power: float | None = Field(None, gt=0, description="kW")


EXAMPLE: dict[str, Any] = {
    "electric_vehicles_def": {},
    "evs": {"EV_1": {"battery_capacity": 60.0, "charging_power": 7.4}},
    "buildings": {
        "R-H-01": {
            "type": "citylearn.building.LSTMDynamicsBuilding",
            "include": True,
            "energy_simulation": "Building_1.csv",
            "weather": "weather.csv",
            "carbon_intensity": "carbon_intensity.csv",
            "pricing": "pricing.csv",
            "inactive_observations": [],
            "inactive_actions": [],
            "electrical_storage": {"type": "citylearn.energy_model.Battery", "autosize": False, "autosize_attributes": {},
                                   "attributes": {"capacity": 10.0, "nominal_power": 5.0}},
            "pv": {"type": "citylearn.energy_model.PV", "autosize": False, "autosize_attributes": {}, "attributes": {"nominal_power": 4.0}},
            "chargers": {"charger_R-H-01_1": {"type": "citylearn.electric_vehicle_charger.Charger",
                                              "attributes": {"nominal_power": 7.4, "max_charging_power": 7.4}}},
        }
    },
}


class SiteSchema(_Open):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [EXAMPLE]})

    buildings: dict[str, BuildingSpec] = Field(description="CityLearn building specs keyed by building id; may be empty at creation")
    electric_vehicles_def: dict[str, Any] | None = None
    evs: dict[str, EvSpec] | None = None
    timezone: str | None = Field(None, description=f"IANA zone of the calendar columns (default {DEFAULT_TIMEZONE})")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @property
    def zone(self) -> str:
        return self.timezone or DEFAULT_TIMEZONE
