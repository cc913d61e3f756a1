"""A site's schema: where each building's and charger's measurements live, and
which document field means what.

Kept in the site's own ``schema`` collection as one document ``{"schema": {...}}``
(as OPEVA does). ``buildings`` is keyed by building id. The dataset builder reads
only what the schema names, so a site can use its own field names.

Units: energy fields are kWh per document (summed into each time step);
temperatures (°C), humidity (%), state of charge (0-1 or %), prices ($/kWh) and
carbon intensity (kgCO2/kWh) are averaged per time step.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

# CityLearn building columns a site can fill, and how a time step aggregates them.
SUMMED = ("non_shiftable_load", "dhw_demand", "cooling_demand", "heating_demand", "solar_generation")
AVERAGED = ("indoor_dry_bulb_temperature", "indoor_relative_humidity", "average_unmet_cooling_setpoint_difference")
BUILDING_COLUMNS = SUMMED + AVERAGED
WEATHER_COLUMNS = ("outdoor_dry_bulb_temperature", "outdoor_relative_humidity", "diffuse_solar_irradiance", "direct_solar_irradiance")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatterySpec(_Strict):
    capacity: float = Field(gt=0, description="kWh")
    nominal_power: float = Field(gt=0, description="kW")
    efficiency: float = Field(0.9, gt=0, le=1)
    soc_field: str | None = Field(None, description="document field with the measured state of charge (0-1)")


class ChargerSpec(_Strict):
    """Charging sessions: one document per EV visit."""

    collection: str
    ev_id_field: str = "ev_id"
    arrival_field: str = "arrival"
    departure_field: str = "departure"
    required_soc_field: str = Field("required_soc", description="% wanted at departure")
    arrival_soc_field: str = Field("arrival_soc", description="% on arrival")
    max_charging_power: float = Field(7.4, gt=0, description="kW")
    ev_battery_capacity: float = Field(50.0, gt=0, description="kWh")


class BuildingSpec(_Strict):
    collection: str | None = Field(None, description="default: building_<id>, else the first collection starting with it")
    timestamp_field: str = "timestamp"
    fields: dict[str, str] = Field(default_factory=dict, description="CityLearn column -> document field")
    pv_nominal_power: float = Field(0.0, ge=0, description="kW of installed PV; 0 = unknown (1 kW is written)")
    battery: BatterySpec | None = None
    chargers: dict[str, ChargerSpec] = Field(default_factory=dict)

    @field_validator("fields")
    @classmethod
    def _columns(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(BUILDING_COLUMNS))
        if unknown:
            raise ValueError(f"unknown building columns {unknown}; known: {', '.join(BUILDING_COLUMNS)}")
        return v


class SeriesSpec(_Strict):
    """A site-wide time series (weather, pricing, carbon intensity)."""

    collection: str
    timestamp_field: str = "timestamp"
    fields: dict[str, str] = Field(description="CityLearn column -> document field")


class SiteSchema(_Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "timezone": "Europe/Lisbon",
                    "buildings": {
                        "1": {
                            "collection": "building_1",
                            "fields": {"non_shiftable_load": "load_kwh", "solar_generation": "pv_kwh", "indoor_dry_bulb_temperature": "indoor_temp"},
                            "pv_nominal_power": 5.0,
                            "battery": {"capacity": 10.0, "nominal_power": 5.0, "soc_field": "battery_soc"},
                            "chargers": {"charger_1_1": {"collection": "charger_1_1", "max_charging_power": 7.4}},
                        }
                    },
                    "weather": {"collection": "weather", "fields": {"outdoor_dry_bulb_temperature": "temp", "outdoor_relative_humidity": "humidity"}},
                    "pricing": {"collection": "pricing", "fields": {"electricity_pricing": "price"}},
                    "carbon_intensity": {"collection": "carbon", "fields": {"carbon_intensity": "kg_per_kwh"}},
                }
            ]
        },
    )

    timezone: str = Field("UTC", description="IANA zone for month, hour, day type and daylight saving")
    buildings: dict[str, BuildingSpec] = Field(min_length=1)
    weather: SeriesSpec | None = None
    pricing: SeriesSpec | None = None
    carbon_intensity: SeriesSpec | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("weather")
    @classmethod
    def _weather(cls, v: SeriesSpec | None) -> SeriesSpec | None:
        if v is not None and set(v.fields) - set(WEATHER_COLUMNS):
            raise ValueError(f"weather columns must be among {', '.join(WEATHER_COLUMNS)}")
        return v

    @field_validator("pricing")
    @classmethod
    def _pricing(cls, v: SeriesSpec | None) -> SeriesSpec | None:
        if v is not None and set(v.fields) != {"electricity_pricing"}:
            raise ValueError("pricing.fields must map exactly 'electricity_pricing'")
        return v

    @field_validator("carbon_intensity")
    @classmethod
    def _carbon(cls, v: SeriesSpec | None) -> SeriesSpec | None:
        if v is not None and set(v.fields) != {"carbon_intensity"}:
            raise ValueError("carbon_intensity.fields must map exactly 'carbon_intensity'")
        return v
