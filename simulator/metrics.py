"""District KPIs of an episode, and how they compare with the no-control baseline.

Exports earn nothing (as in CityLearn's cost KPI), so PV that is neither used
on site nor stored is lost: that is what makes self-consumption worth raising.
"""

from __future__ import annotations

import numpy as np

from simulator.dataset import Dataset
from simulator.environment import EpisodeRecord

# name: (what it is, unit); lower is better except for self_consumption.
METRICS = {
    "electricity_cost": ("grid imports priced at the time-of-use tariff", "$"),
    "peak_demand": ("highest district import in a step", "kW"),
    "ramping": ("sum of step-to-step changes of district net import", "kWh"),
    "self_consumption": ("share of PV generation used on site (not exported)", "fraction"),
    "emissions": ("grid imports times carbon intensity", "kgCO2"),
    "ev_unmet_energy": ("energy EVs lacked at departure against their required SoC", "kWh"),
    "ev_charged_energy": ("energy delivered into EV batteries", "kWh"),
    "grid_import": ("energy drawn from the grid", "kWh"),
}


def episode_metrics(data: Dataset, record: EpisodeRecord) -> dict[str, float | None]:
    """The KPIs of one episode (``self_consumption`` is None without PV)."""
    net = record.net
    imports = np.maximum(net, 0.0)
    exports = np.maximum(-net, 0.0)
    district = net.sum(axis=1)
    pv = data.pv[: len(net)]
    pv_total = float(pv.sum())
    return {
        "electricity_cost": float((imports * data.price[: len(net)]).sum()),
        "peak_demand": max(float(district.max(initial=0.0)), 0.0) / data.hours_per_step,
        "ramping": float(np.abs(np.diff(district)).sum()),
        "self_consumption": 1.0 - float(np.minimum(exports, pv).sum()) / pv_total if pv_total > 0 else None,
        "emissions": float((imports * data.carbon[: len(net)]).sum()),
        "ev_unmet_energy": record.ev_unmet,
        "ev_charged_energy": record.ev_charged,
        "grid_import": float(imports.sum()),
    }


def _ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None:
        return None
    if baseline == 0:
        return 1.0 if value == 0 else None
    return value / baseline


def with_baseline(metrics: dict[str, float | None], baseline: dict[str, float | None]) -> dict[str, float | None]:
    """``metrics`` plus ``<name>_vs_baseline`` = value / baseline value for each KPI
    (None when the baseline is 0 and the value is not, or a value is missing)."""
    ratios = {f"{name}_vs_baseline": _ratio(metrics[name], baseline[name]) for name in METRICS}
    return {**metrics, **ratios}


def rounded(metrics: dict[str, float | None], digits: int = 6) -> dict[str, float | None]:
    """For result.json and logs: enough digits to compare runs, not float noise."""
    return {k: (None if v is None else round(v, digits)) for k, v in metrics.items()}
