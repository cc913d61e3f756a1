"""The sample sites' shared climate and buildings (used by tools/seed_site.py).

Why it looks real: one shared climate (Lisbon's sun position, seasons, clouds and
temperature) drives every series, so PV follows the irradiance, loads rise in cold and
hot spells, grid carbon drops when the sun shines, and batteries charge from the same
PV surplus. Local time (Europe/Lisbon, with daylight saving) shapes loads, prices and
EV visits. Every random stream is seeded from ``(seed, what it is for)``, so the same
seed and end date give the same site, and adding buildings does not change the weather.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

TIMEZONE = "Europe/Lisbon"
LATITUDE, LONGITUDE = 38.72, -9.14  # Lisbon: the sun and climate the sample follows
STEP = timedelta(minutes=15)
STEPS_PER_HOUR = 4
STEPS_PER_DAY = 96

SOC_FIELD = "battery_soc"
PRICES = {"off_peak": 0.10, "mid": 0.22, "peak": 0.35}  # $/kWh, a three-period time-of-use tariff
BATTERY_MODELS = ((5.0, 2.5), (6.5, 3.3), (9.8, 5.0), (10.0, 5.0), (13.5, 5.0))  # (kWh, kW) of common home batteries
EV_CAPACITIES = (40.0, 50.0, 60.0, 77.0)  # kWh
REQUIRED_SOC = np.array([80, 85, 90, 95, 100])  # % drivers ask for; round numbers, mostly 80-90
REQUIRED_SOC_P = np.array([0.35, 0.2, 0.25, 0.05, 0.15])



@dataclass(frozen=True)
class Climate:
    """The site's shared conditions on the 15-minute grid, plus local calendar."""

    hour: np.ndarray  # local time of day, fractional hours
    weekend: np.ndarray  # bool, local Saturday or Sunday
    season: np.ndarray  # 1 in mid-January .. -1 in mid-July
    temp: np.ndarray  # °C
    humidity: np.ndarray  # %
    ghi: np.ndarray  # global horizontal irradiance, W/m²
    dni: np.ndarray  # direct normal irradiance, W/m²
    dhi: np.ndarray  # diffuse horizontal irradiance, W/m²
    price: np.ndarray  # $/kWh

    @property
    def steps(self) -> int:
        return len(self.temp)


@dataclass(frozen=True)
class Building:
    """What makes one sample building differ from the others."""

    number: int
    office: bool
    daily_kwh: float
    pv_kw: float
    battery: tuple[float, float] | None  # (capacity kWh, power kW)
    chargers: int

    @property
    def id(self) -> str:
        """Ids like the living lab's: R-H-01 (residential house), O-03 (office)."""
        return f"{'O' if self.office else 'R-H'}-{self.number:02d}"

    @property
    def collection(self) -> str:
        return f"building_{self.id}"


# ---------------------------------------------------------------- random helpers


def _rng(seed: int, *purpose: int) -> np.random.Generator:
    """An independent stream per purpose, so one part of the site never shifts another."""
    return np.random.default_rng([seed, *purpose])


def _red_noise(rng: np.random.Generator, n: int, tau: float) -> np.ndarray:
    """Unit-variance noise correlated over ``tau`` steps: weather and habits drift, they don't flicker."""
    kernel = np.exp(-np.arange(max(1, int(5 * tau))) / tau)
    white = rng.standard_normal(n + len(kernel) - 1)
    return np.convolve(white, kernel, "valid") / math.sqrt(float(np.sum(kernel**2)))


def _lag(x: np.ndarray, tau: float) -> np.ndarray:
    """Causal exponential smoothing over ``tau`` steps: a building's thermal inertia."""
    kernel = np.exp(-np.arange(max(1, int(5 * tau))) / tau)
    padded = np.concatenate([np.full(len(kernel) - 1, x[0]), x])
    return np.convolve(padded, kernel / kernel.sum(), "valid")


def _bump(hour: np.ndarray, centre: float, width: float) -> np.ndarray:
    """A daily Gaussian bump on the 24-hour clock (wraps around midnight)."""
    d = (hour - centre + 12.0) % 24.0 - 12.0
    return np.exp(-0.5 * (d / width) ** 2)


# ---------------------------------------------------------------- climate


def _sun_cos_zenith(when: pd.DatetimeIndex) -> np.ndarray:
    """Cosine of the solar zenith angle at Lisbon (NOAA's approximation) at UTC times ``when``:
    day length, seasons and solar noon all follow from it."""
    utc_minutes = np.asarray(when.hour * 60 + when.minute + when.second / 60.0, float)
    gamma = 2 * np.pi / 365.0 * (np.asarray(when.day_of_year, float) - 1.0 + (utc_minutes / 60.0 - 12.0) / 24.0)
    eqtime = 229.18 * (0.000075 + 0.001868 * np.cos(gamma) - 0.032077 * np.sin(gamma) - 0.014615 * np.cos(2 * gamma) - 0.040849 * np.sin(2 * gamma))
    decl = (
        0.006918 - 0.399912 * np.cos(gamma) + 0.070257 * np.sin(gamma) - 0.006758 * np.cos(2 * gamma)
        + 0.000907 * np.sin(2 * gamma) - 0.002697 * np.cos(3 * gamma) + 0.00148 * np.sin(3 * gamma)
    )
    hour_angle = np.radians((utc_minutes + eqtime + 4.0 * LONGITUDE) / 4.0 - 180.0)
    lat = math.radians(LATITUDE)
    return np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)


def _tariff(hour: np.ndarray, weekend: np.ndarray) -> np.ndarray:
    """Time-of-use price by local hour: off-peak at night, peak on weekday mornings and evenings."""
    h = np.floor(hour)
    off_peak = (h >= 22) | (h < 8)
    peak = ~weekend & (((h >= 9) & (h < 11)) | ((h >= 18) & (h < 21)))
    return np.where(off_peak, PRICES["off_peak"], np.where(peak, PRICES["peak"], PRICES["mid"]))


def make_climate(start: datetime, days: int, seed: int) -> Climate:
    """Weather, sun and calendar for ``days`` days from ``start`` (UTC midnight), every 15 minutes."""
    n = days * STEPS_PER_DAY
    rng = _rng(seed, 0)
    utc = pd.date_range(start, periods=n, freq=STEP)
    local = utc.tz_convert(TIMEZONE)
    hour = np.asarray(local.hour + local.minute / 60.0, float)
    weekend = np.asarray(local.day_of_week >= 5, bool)
    season = np.cos(2 * np.pi * (np.asarray(local.day_of_year, float) - 15.0) / 365.25)

    # Sun at the middle of each step, since the step's energy is what gets stored.
    cosz = np.clip(_sun_cos_zenith(utc + STEP / 2), 0.0, None)
    up = cosz > 0.01
    safe = np.where(up, cosz, 1.0)
    ghi_clear = np.where(up, 1098.0 * cosz * np.exp(-0.057 / safe), 0.0)  # Haurwitz clear sky
    dni_clear = np.where(up, 1353.0 * 0.7 ** ((1.0 / safe) ** 0.678), 0.0)  # Meinel: air mass thins the beam

    # Clouds: wetter winters, spells lasting days, passing clouds within a day.
    mean_cloud = 0.33 + 0.2 * season
    latent = 1.2 * _red_noise(rng, n, 1.5 * STEPS_PER_DAY) + 0.6 * _red_noise(rng, n, 2 * STEPS_PER_HOUR)
    cloud = 1.0 / (1.0 + np.exp(-(latent + np.log(mean_cloud / (1 - mean_cloud)))))
    ghi = ghi_clear * (1.0 - 0.75 * cloud**3.4)  # Kasten-Czeplak
    dni = dni_clear * (1.0 - cloud) ** 1.5
    dhi = np.clip(ghi - dni * cosz, 0.0, None)

    # Temperature: season, a day-night swing damped by clouds, multi-day spells.
    diurnal = 4.5 * (1.0 - 0.6 * cloud) * np.cos(2 * np.pi * (hour - 15.0) / 24.0)
    temp = 17.5 - 5.5 * season + diurnal + 2.0 * _red_noise(rng, n, 2 * STEPS_PER_DAY) + 0.3 * _red_noise(rng, n, STEPS_PER_HOUR)
    humidity = np.clip(74.0 + 7.0 * season - 3.0 * diurnal + 15.0 * (cloud - 0.3) + 5.0 * _red_noise(rng, n, 6 * STEPS_PER_HOUR), 20.0, 100.0)
    return Climate(hour, weekend, season, temp, humidity, ghi, dni, dhi, _tariff(hour, weekend))


def _hourly(x: np.ndarray) -> np.ndarray:
    """Hourly means of a 15-minute series (the grid starts at a UTC midnight, so hours align)."""
    return x.reshape(-1, STEPS_PER_HOUR).mean(axis=1)


def carbon_intensity(climate: Climate, seed: int) -> np.ndarray:
    """Hourly grid carbon intensity (kg/kWh): lower when sun and wind are plentiful, higher on winter evenings."""
    rng = _rng(seed, 4)
    hour = climate.hour[::STEPS_PER_HOUR]
    n = len(hour)
    wind = np.clip(_red_noise(rng, n, 24.0), 0.0, None)
    kg = (
        0.19 + 0.04 * climate.season[::STEPS_PER_HOUR] - 0.10 * _hourly(climate.ghi) / 1000.0
        + 0.03 * _bump(hour, 20.0, 2.0) - 0.05 * wind + 0.01 * rng.standard_normal(n)
    )
    return np.clip(kg, 0.04, 0.42)


# ---------------------------------------------------------------- buildings


def _pick(rng: np.random.Generator, count: int) -> set[int]:
    """About half of ``count`` building numbers, never none and (with two or more) never all."""
    k = 1 if count == 1 else min(max(1, round(count / 2)), count - 1)
    return {int(b) + 1 for b in rng.permutation(count)[:k]}


def plan_buildings(count: int, seed: int) -> list[Building]:
    """Sizes, PV, batteries and chargers. Every third building is a small office, so any site of three or more has both kinds."""
    with_battery = _pick(_rng(seed, 3, 0), count)
    with_chargers = _pick(_rng(seed, 3, 1), count)
    plan = []
    for i in range(1, count + 1):
        rng = _rng(seed, 1, i)
        office = i % 3 == 0
        battery = BATTERY_MODELS[int(rng.integers(len(BATTERY_MODELS)))] if i in with_battery else None
        plan.append(
            Building(
                number=i,
                office=office,
                daily_kwh=round(float(rng.uniform(25.0, 45.0) if office else rng.uniform(8.0, 22.0)), 1),
                pv_kw=round(float(rng.uniform(3.0, 8.0)), 1),
                battery=battery,
                chargers=int(rng.integers(1, 3)) if i in with_chargers else 0,
            )
        )
    return plan


def _load_shape(climate: Climate, office: bool) -> np.ndarray:
    """Relative demand by local time: household mornings and evenings, or office hours on weekdays."""
    h, weekend = climate.hour, climate.weekend
    if office:
        open_hours = 1.0 / (1.0 + np.exp(-3.0 * (h - 8.0))) - 1.0 / (1.0 + np.exp(-3.0 * (h - 18.5)))
        return 0.35 + np.where(weekend, 0.1, 2.2) * open_hours
    morning = np.where(weekend, _bump(h, 9.5, 1.5), _bump(h, 7.5, 1.0))
    midday = np.where(weekend, 0.7, 0.3) * _bump(h, 13.0, 1.5)
    return 0.5 + morning + midday + 1.8 * _bump(h, 20.0, 2.0)


def building_series(b: Building, climate: Climate, seed: int) -> dict[str, np.ndarray]:
    """Per 15-minute step: load (kWh), PV (kWh), indoor temperature (°C) and, with a battery, its SoC."""
    rng = _rng(seed, 1, b.number, 1)
    n = climate.steps
    shape = _load_shape(climate, b.office)
    heating = float(rng.uniform(0.02, 0.08)) * np.clip(15.0 - climate.temp, 0.0, None)  # electric heating share
    cooling = float(rng.uniform(0.03, 0.10)) * np.clip(climate.temp - 24.0, 0.0, None)  # air conditioning share
    noise = np.exp(0.25 * _red_noise(rng, n, 2.0) - 0.03)  # multiplicative, mean about 1
    spikes = (rng.random(n) < 0.02) * rng.uniform(0.1, 0.5, n)  # kettle, oven, washing machine
    load = b.daily_kwh / STEPS_PER_DAY * shape / shape.mean() * (1.0 + heating + cooling) * noise + spikes
    load = np.clip(load, 0.02, None)

    orientation = float(rng.uniform(0.85, 1.0))  # roof tilt and azimuth against the ideal; 0.8 below: inverter, wiring, heat and dirt
    pv_kw = b.pv_kw * orientation * 0.8 * climate.ghi / 1000.0 * (1.0 + 0.03 * rng.standard_normal(n))
    pv = np.clip(pv_kw, 0.0, None) * STEP.total_seconds() / 3600.0

    sun_gain = _lag(climate.ghi, 3.0 * STEPS_PER_HOUR) / 800.0
    indoor = 21.0 + float(rng.uniform(0.12, 0.25)) * (_lag(climate.temp, 8.0 * STEPS_PER_HOUR) - 17.0) + 0.8 * sun_gain
    indoor = np.clip(indoor + 0.3 * _red_noise(rng, n, 4.0), 16.0, 28.0)

    series = {"non_shiftable_load": np.round(load, 3), "solar_generation": np.round(pv, 3), "indoor_dry_bulb_temperature": np.round(indoor, 2)}
    if b.battery:
        series[SOC_FIELD] = np.round(battery_soc(load, pv, climate.price, *b.battery), 3)
    return series


def battery_soc(load: np.ndarray, pv: np.ndarray, price: np.ndarray, capacity: float, power: float) -> np.ndarray:
    """State of charge (0-1) at the end of each step under a common home controller: store PV surplus,
    cover demand outside off-peak hours, top up from the grid off-peak to keep a reserve for the peak.

    The one loop in this module: SoC is a running sum clipped at empty and full, which has no
    vectorised form. It walks plain floats, a few tens of milliseconds per building-year.
    """
    eta = math.sqrt(0.9)  # per direction, 0.9 round trip
    step_h = STEP.total_seconds() / 3600.0
    max_kwh = power * step_h
    soc_min, reserve = 0.1, 0.35
    soc = 0.5
    out = np.empty(len(load))
    off_peak = (price <= PRICES["off_peak"]).tolist()
    for t, (surplus, cheap) in enumerate(zip((pv - load).tolist(), off_peak)):
        if surplus > 0:
            soc += min(surplus, max_kwh, (1.0 - soc) * capacity / eta) * eta / capacity
        elif cheap:
            if soc < reserve:
                soc += min(max_kwh / 2, (reserve - soc) * capacity / eta) * eta / capacity
        else:
            soc -= min(-surplus, max_kwh, max(0.0, soc - soc_min) * capacity * eta) / (eta * capacity)
        soc *= 1.0 - 2e-5  # self-discharge, about 2 % a month
        out[t] = soc
    return out


# ---------------------------------------------------------------- EV sessions


def charging_sessions(b: Building, k: int, start: datetime, end: datetime, seed: int, first_ev: int) -> tuple[list[dict[str, Any]], int]:
    """Sessions on charger ``k`` of building ``b`` that lie wholly in [start, end), and the next free EV number.

    A home's first charger sees its own car overnight (arrive in the evening, leave next morning);
    other chargers see a few cars by day (arrive in the morning, stay some hours), mostly on
    weekdays at offices. One visit a day at most, so a charger's sessions never overlap.
    """
    rng = _rng(seed, 2, b.number, k)
    tz = ZoneInfo(TIMEZONE)
    overnight = not b.office and k == 1
    fleet = [f"EV_{first_ev + j:02d}" for j in range(1 if overnight else int(rng.integers(2, 4)))]
    sessions: list[dict[str, Any]] = []
    first_day: date = start.astimezone(tz).date()
    for d in range((end - start).days):
        day = first_day + timedelta(days=d)
        weekend = day.weekday() >= 5
        if overnight:
            present = 0.55 if weekend else 0.8
            arrive_h = float(np.clip(rng.normal(18.8, 1.2), 16.0, 22.5))
            leave_h = 24.0 + float(np.clip(rng.normal(9.0 if weekend else 7.8, 0.8), 6.0, 11.0))
        else:
            present = (0.15 if weekend else 0.85) if b.office else 0.35
            arrive_h = float(np.clip(rng.normal(8.7, 0.8), 7.0, 11.0))
            leave_h = min(arrive_h + float(np.clip(rng.normal(7.0, 1.8), 2.0, 10.0)), 20.0)
        # Drawn every day, present or not, so a day's numbers don't depend on earlier days' luck.
        ev = fleet[int(rng.integers(len(fleet)))]
        required = int(rng.choice(REQUIRED_SOC, p=REQUIRED_SOC_P))
        arrival_soc = round(float(rng.uniform(10.0, 60.0)), 1)
        if rng.random() >= present:
            continue
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
        arrival = (midnight + timedelta(minutes=round(arrive_h * 60))).astimezone(timezone.utc)
        departure = (midnight + timedelta(minutes=round(leave_h * 60))).astimezone(timezone.utc)
        if start <= arrival and departure <= end:
            sessions.append({"ev_id": ev, "arrival": arrival, "departure": departure, "required_soc": required, "arrival_soc": arrival_soc})
    return sessions, first_ev + len(fleet)
