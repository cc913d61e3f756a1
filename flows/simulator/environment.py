"""The district simulation: every building and charger advances one step in a few numpy calls.

Only what carries state from step to step is computed per step (battery and EV
energy, each building's net import for the agents' rewards); everything that
depends on the data alone is precomputed once, and the KPIs are computed over
the whole episode afterwards (:mod:`flows.simulator.metrics`).

Sign convention: net import > 0 is drawn from the grid, < 0 is exported. Net
import = load - PV + battery charge - battery discharge + EV charging.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flows.simulator.dataset import Dataset


@dataclass(frozen=True)
class EpisodeRecord:
    """What an episode leaves behind for the metrics."""

    net: np.ndarray  # (steps, buildings) kWh imported (+) or exported (-)
    ev_unmet: float  # kWh EVs lacked at departure, summed
    ev_charged: float  # kWh delivered into EV batteries


class DistrictEnv:
    """Steps all buildings at once.

    Actions per step: ``battery`` of shape ``(buildings,)`` in [-1, 1], a fraction
    of each battery's nominal power (+ charge, - discharge); ``ev`` of shape
    ``(chargers,)`` in [0, 1], a fraction of each charger's power. Requests beyond
    what a battery or EV can take or give are clipped, as a real inverter would.
    """

    def __init__(self, data: Dataset) -> None:
        self.data = data
        hours = data.hours_per_step
        bat, ev = data.batteries, data.chargers
        self.base = data.load - data.pv  # net import with nothing controlled
        self._battery_step = bat.nominal_power * hours
        self._eta = np.sqrt(bat.efficiency)
        self._inv_eta = 1.0 / self._eta
        self._eta_gain = self._eta - self._inv_eta  # charging stores flow * eta, discharging drains flow / eta
        # Energy an EV can take in one step (battery side), 0 when nothing is plugged.
        self.ev_step_energy = ev.plugged * (ev.max_power * hours * ev.efficiency)
        self.inv_ev_step_energy = np.divide(1.0, self.ev_step_energy, out=np.zeros_like(self.ev_step_energy), where=self.ev_step_energy > 0)
        # Energy that later steps of the session can still deliver: what must go in now is the rest.
        self.ev_later_energy = np.maximum(ev.steps_left - 1, 0) * (ev.max_power * hours * ev.efficiency)
        self._inv_ev_efficiency = 1.0 / ev.efficiency
        self._has_chargers = ev.count > 0
        self.reset()

    def reset(self) -> None:
        self.t = 0
        self.soc = self.data.batteries.initial_energy.copy()  # kWh stored
        self.ev_energy = np.zeros(self.data.chargers.count)  # kWh in each EV plugged at step t
        self._plug_in(0)
        self._net = np.empty_like(self.base)
        self._ev_energy_after = np.zeros_like(self.ev_step_energy)
        self._ev_delivered = np.zeros_like(self.ev_step_energy)

    @property
    def done(self) -> bool:
        return self.t >= self.data.steps

    def _plug_in(self, t: int) -> None:
        """EVs arriving at step ``t`` come with their arrival energy."""
        if t < self.data.steps:
            ev = self.data.chargers
            np.copyto(self.ev_energy, ev.arrival_energy[t], where=ev.arriving[t])

    def ev_need(self) -> np.ndarray:
        """kWh each plugged EV still lacks to reach its departure target (0 when unplugged)."""
        return np.maximum(self.data.chargers.target_energy[self.t] - self.ev_energy, 0.0)

    def step(self, battery: np.ndarray, ev_action: np.ndarray) -> np.ndarray:
        """Advance one step; returns each building's electricity cost in that step ($)."""
        data, t = self.data, self.t
        bat = data.batteries

        step = self._battery_step
        soc = self.soc
        # Grid-side flow: the request, within the power rating and what the battery can give or take.
        most_out = np.maximum((bat.min_energy - soc) * self._eta, -step)
        most_in = np.minimum((bat.capacity - soc) * self._inv_eta, step)
        flow = np.minimum(np.maximum(battery * step, most_out), most_in)
        soc += flow * self._inv_eta + np.maximum(flow, 0.0) * self._eta_gain
        self.battery_flow = flow

        net = self._net[t]
        np.add(self.base[t], flow, out=net)
        if self._has_chargers:
            ev = data.chargers
            delivered = np.minimum(np.minimum(ev_action, 1.0) * self.ev_step_energy[t], ev.capacity[t] - self.ev_energy)
            np.maximum(delivered, 0.0, out=delivered)
            self.ev_energy += delivered
            self._ev_energy_after[t] = self.ev_energy
            self._ev_delivered[t] = delivered
            net += np.bincount(ev.building, delivered * self._inv_ev_efficiency, minlength=data.buildings)
            self._plug_in(t + 1)

        self.net = net
        self.t = t + 1
        return np.maximum(net, 0.0) * data.price[t]

    def record(self) -> EpisodeRecord:
        ev = self.data.chargers
        shortfall = np.maximum(ev.target_energy - self._ev_energy_after, 0.0)
        return EpisodeRecord(
            net=self._net[: self.t].copy(),
            ev_unmet=float(shortfall[ev.departing].sum()),
            ev_charged=float(self._ev_delivered.sum()),
        )
