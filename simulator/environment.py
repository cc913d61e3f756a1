"""The district simulation: every battery and EV of every building advances in one pass.

Batteries and plugged-in EVs are both *storage units* (an EV is one that cannot
discharge and whose limits change as cars come and go), so a step clips, stores
and sums all of them with the same dozen numpy calls, whatever the number of
buildings. Only what carries state from step to step is computed per step;
what depends on the data alone is precomputed, and the KPIs are computed over
the whole episode afterwards (:mod:`simulator.metrics`).

Sign convention: net import > 0 is drawn from the grid, < 0 is exported. Net
import = load - PV + battery charge - battery discharge + EV charging, all
grid side (conversion losses are counted in the grid energy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.dataset import Dataset


@dataclass(frozen=True)
class EpisodeRecord:
    """What an episode leaves behind for the metrics."""

    net: np.ndarray  # (steps, buildings) kWh imported (+) or exported (-)
    ev_unmet: float  # kWh EVs lacked at departure, summed
    ev_charged: float  # kWh delivered into EV batteries
    flows: np.ndarray | None = None  # (steps, buildings + chargers) grid-side kWh into (+) or out of (-) each unit
    battery_energy: np.ndarray | None = None  # (steps, buildings) kWh stored after each step
    ev_energy: np.ndarray | None = None  # (steps, chargers) kWh in the plugged EV after each step


class DistrictEnv:
    """Steps all buildings at once.

    Actions per step: ``battery`` of shape ``(buildings,)`` in [-1, 1], a fraction
    of each battery's nominal power (+ charge, - discharge); ``ev`` of shape
    ``(chargers,)`` in [0, 1], a fraction of each charger's power. Requests beyond
    what a battery or EV can take or give are clipped, as a real inverter would.

    State: :attr:`soc` (kWh in each battery) and :attr:`ev_energy` (kWh in the EV
    plugged at each charger at the current step :attr:`t`), views of one array.
    """

    def __init__(self, data: Dataset) -> None:
        self.data = data
        hours = data.hours_per_step
        bat, ev = data.batteries, data.chargers
        n = data.buildings
        self.base = data.load - data.pv  # net import with nothing controlled
        # Energy an EV can take in one step (battery side), 0 when nothing is plugged;
        # controllers turn kWh into action fractions with the inverse.
        self.ev_step_energy = ev.plugged * (ev.max_power * hours * ev.efficiency)
        self.inv_ev_step_energy = np.divide(1.0, self.ev_step_energy, out=np.zeros_like(self.ev_step_energy), where=self.ev_step_energy > 0)
        # Energy later steps of each session can still deliver: what must go in now is the rest.
        self.ev_later_energy = np.maximum(ev.steps_left - 1, 0) * (ev.max_power * hours * ev.efficiency)
        self._ev_grid_step = ev.plugged * (ev.max_power * hours)
        self._ev_reset = ev.arriving | ~ev.plugged  # where ev_energy becomes arrival_energy (0 when unplugged)

        # Storage units: batteries first, then chargers; all limits grid side, in kWh per step.
        battery_eta = np.sqrt(bat.efficiency)  # efficiency is the round trip
        battery_step = bat.nominal_power * hours
        self._unit_building = np.r_[np.arange(n), ev.building]
        self._eta_in = np.r_[battery_eta, ev.efficiency]  # stored = grid * eta_in when charging
        self._eta_out = np.r_[battery_eta, np.ones(ev.count)]  # grid = stored * eta_out when discharging
        self._inv_eta_in = 1.0 / self._eta_in
        self._inv_eta_out = 1.0 / self._eta_out
        self._eta_gain = self._eta_in - self._inv_eta_out
        self._min_energy = np.r_[bat.min_energy, np.zeros(ev.count)]
        self._out_limit = -np.r_[battery_step, np.zeros(ev.count)]  # EVs do not discharge
        self._in_limit = np.r_[battery_step, np.zeros(ev.count)]  # EV part set each step
        self._capacity = np.r_[bat.capacity, np.zeros(ev.count)]  # EV part set each step
        self._action = np.zeros(n + ev.count)
        self._energy = np.zeros(n + ev.count)
        self.soc = self._energy[:n]
        self.ev_energy = self._energy[n:]
        self._ev_in_limit, self._ev_capacity, self._ev_action = self._in_limit[n:], self._capacity[n:], self._action[n:]
        self._battery_action = self._action[:n]
        self.reset()

    def reset(self) -> None:
        self.t = 0
        self.soc[:] = self.data.batteries.initial_energy
        self.ev_energy[:] = 0.0
        self._net = np.empty_like(self.base)
        self._flows = np.zeros((self.data.steps, len(self._energy)))
        self._ev_energies = np.zeros((self.data.steps, self.data.chargers.count))  # after each step's charging
        self._battery_energies = np.zeros((self.data.steps, self.data.buildings))  # for the exported time series
        self._plug_in(0)

    @property
    def done(self) -> bool:
        return self.t >= self.data.steps

    def _plug_in(self, t: int) -> None:
        """Set the EV limits of step ``t``: arriving EVs come with their arrival energy, empty chargers hold 0."""
        if t < self.data.steps:
            ev = self.data.chargers
            np.copyto(self.ev_energy, ev.arrival_energy[t], where=self._ev_reset[t])
            self._ev_in_limit[:] = self._ev_grid_step[t]
            self._ev_capacity[:] = ev.capacity[t]

    def ev_need(self) -> np.ndarray:
        """kWh each plugged EV still lacks to reach its departure target (0 when unplugged)."""
        return np.maximum(self.data.chargers.target_energy[self.t] - self.ev_energy, 0.0)

    @property
    def battery_flow(self) -> np.ndarray:
        """Grid-side battery energy of the last step (+ charge, - discharge)."""
        return self._flows[self.t - 1, : self.data.buildings]

    @property
    def net(self) -> np.ndarray:
        """Each building's net import of the last step."""
        return self._net[self.t - 1]

    def step(self, battery: np.ndarray, ev_action: np.ndarray) -> np.ndarray:
        """Advance one step; returns each building's electricity cost in that step ($)."""
        t, energy = self.t, self._energy
        self._battery_action[:] = battery
        self._ev_action[:] = ev_action
        most_out = np.maximum((self._min_energy - energy) * self._eta_out, self._out_limit)
        most_in = np.minimum((self._capacity - energy) * self._inv_eta_in, self._in_limit)
        flow = np.minimum(np.maximum(self._action * self._in_limit, most_out), most_in, out=self._flows[t])
        energy += flow * self._inv_eta_out + np.maximum(flow, 0.0) * self._eta_gain
        self._ev_energies[t] = self.ev_energy
        self._battery_energies[t] = self.soc

        net = self._net[t]
        np.add(self.base[t], np.bincount(self._unit_building, flow, minlength=self.data.buildings), out=net)
        self._plug_in(t + 1)
        self.t = t + 1
        return np.maximum(net, 0.0) * self.data.price[t]

    def record(self) -> EpisodeRecord:
        n, ev = self.data.buildings, self.data.chargers
        shortfall = np.maximum(ev.target_energy - self._ev_energies, 0.0)
        return EpisodeRecord(
            net=self._net[: self.t].copy(),
            ev_unmet=float(shortfall[ev.departing].sum()),
            ev_charged=float((self._flows[:, n:] * ev.efficiency).sum()),
            flows=self._flows[: self.t].copy(),
            battery_energy=self._battery_energies[: self.t].copy(),
            ev_energy=self._ev_energies[: self.t].copy(),
        )
