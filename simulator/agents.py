"""Controllers of the district, one decision per building (and per EV charger) each step.

- ``no_control``: what a district without energy management does. Batteries
  idle; EVs charge at full power from arrival until their required SoC.
- ``rule_based``: stores PV surplus and cheap grid power in the battery and
  discharges it when power is dear; EVs charge in cheap steps and otherwise
  only as much as the deadline forces (least laxity), i.e. as late as possible.
- ``q_learning``: one tabular Q-learning agent per building chooses a battery
  mode from (hour, price level, PV surplus, SoC), rewarded with the cost it
  saves; EVs follow the rule-based charging, so the agents learn storage
  against a fixed, deadline-safe EV policy.

All controllers see the same :class:`DistrictEnv` and act for all buildings at once.
"""

from __future__ import annotations

import numpy as np

from simulator.config import QLearningParams, RuleBasedParams
from simulator.dataset import Dataset
from simulator.environment import DistrictEnv, EpisodeRecord


def price_position(data: Dataset) -> np.ndarray:
    """Each step's price as a fraction of its building's price range, shape (steps, buildings).

    A flat tariff has no cheap steps, so it reads as 1 (dear) throughout:
    stored energy is then always worth using.
    """
    low, high = data.price.min(axis=0), data.price.max(axis=0)
    span = high - low
    return np.divide(data.price - low, span, out=np.ones_like(data.price), where=span > 0)


BATTERY_MODES = (
    "idle",
    "self_consume",  # store the PV surplus, or discharge to cover the load
    "store_surplus",  # store the PV surplus, never discharge
    "charge_half",  # charge at half the nominal power
    "charge_full",  # charge at the nominal power
)


class Controller:
    """Base controller: decides with :meth:`act`, may learn in :meth:`feedback`."""

    learns = False

    def __init__(self, data: Dataset) -> None:
        self.data = data
        self._idle = np.zeros(data.buildings)

    def start_episode(self, env: DistrictEnv, train: bool) -> None:
        """Called after ``env.reset()``; ``train`` is False for the evaluation episode."""

    def act(self, env: DistrictEnv) -> tuple[np.ndarray, np.ndarray]:
        """Battery fractions in [-1, 1] per building and EV fractions in [0, 1] per charger."""
        raise NotImplementedError

    def feedback(self, env: DistrictEnv, cost: np.ndarray) -> None:
        """Called after each ``env.step`` with each building's cost of that step."""


class NoControl(Controller):
    """The baseline every KPI is compared with."""

    def act(self, env: DistrictEnv) -> tuple[np.ndarray, np.ndarray]:
        return self._idle, env.ev_need() * env.inv_ev_step_energy[env.t]


class DeadlineEVCharging:
    """Charge EVs in cheap steps; otherwise only what later steps of the session could not deliver."""

    def __init__(self, data: Dataset, cheap_price_fraction: float) -> None:
        cheap = price_position(data) < cheap_price_fraction
        self.cheap = cheap[:, data.chargers.building]  # (steps, chargers)

    def fractions(self, env: DistrictEnv) -> np.ndarray:
        t = env.t
        need = env.ev_need()
        forced = np.maximum(need - env.ev_later_energy[t], 0.0)
        return np.where(self.cheap[t], need, forced) * env.inv_ev_step_energy[t]


class RuleBased(Controller):
    """Per building: PV surplus into the battery; in cheap steps top it up to
    ``grid_charge_soc`` from the grid; in dear steps discharge to cover the load."""

    def __init__(self, data: Dataset, params: RuleBasedParams) -> None:
        super().__init__(data)
        position = price_position(data)
        self.ev = DeadlineEVCharging(data, params.cheap_price_fraction)
        self.cheap = position < params.cheap_price_fraction
        self.dear = position >= params.discharge_price_fraction
        bat = data.batteries
        self.step_energy = np.where(bat.nominal_power > 0, bat.nominal_power * data.hours_per_step, np.inf)
        self.grid_charge_energy = params.grid_charge_soc * bat.capacity

    def act(self, env: DistrictEnv) -> tuple[np.ndarray, np.ndarray]:
        t = env.t
        base = env.base[t]  # load - PV
        surplus_charge = -base
        grid_charge = np.where(self.cheap[t], np.maximum(self.grid_charge_energy - env.soc, 0.0), 0.0)
        discharge = np.where(self.dear[t], base, 0.0)
        energy = np.where(base < 0, surplus_charge, grid_charge - discharge)
        return energy / self.step_energy, self.ev.fractions(env)


class QLearning(Controller):
    """Tabular Q-learning, one table per building, trained episode after episode.

    State = (hour bin, price level, PV surplus or not, SoC bin); the first three
    come from the data and are precomputed for every step. Actions are battery
    modes (:data:`BATTERY_MODES`): fixed charge rates cannot match a PV surplus
    that changes every hour, so two modes follow the building's own net load.

    The reward is the step's saving against leaving the battery idle (the cost
    the building would have paid minus what it paid). That differs from
    ``-cost`` by a term the agent cannot influence, so the best policy is the
    same, but the load's own ups and downs no longer drown the battery's effect
    and Q = 0 means "as good as idle" for actions not yet tried.
    """

    learns = True

    def __init__(self, data: Dataset, params: QLearningParams, seed: int) -> None:
        super().__init__(data)
        self.params = params
        self.rng = np.random.default_rng(seed)
        self.ev = DeadlineEVCharging(data, params.cheap_price_fraction)
        bat = data.batteries
        step_energy = bat.nominal_power * data.hours_per_step
        self.inv_step_energy = np.divide(1.0, step_energy, out=np.zeros_like(step_energy), where=step_energy > 0)
        # Grid-side energy each mode requests; rows 1 and 2 are filled in per step.
        self._requests = np.zeros((len(BATTERY_MODES), data.buildings))
        self._requests[3] = 0.5 * step_energy
        self._requests[4] = step_energy
        self._buildings = np.arange(data.buildings)

        hour_bin = data.hour * params.hour_bins // 24
        level = np.minimum((price_position(data) * params.price_levels).astype(np.intp), params.price_levels - 1)
        surplus = (data.load < data.pv).astype(np.intp)
        states = params.hour_bins * params.price_levels * 2 * params.soc_bins
        # One flat table: row = building * states + state, so all buildings index it at once.
        static = ((hour_bin[:, None] * params.price_levels + level) * 2 + surplus) * params.soc_bins
        self.static_rows = static + self._buildings * states
        self.q = np.zeros((data.buildings * states, len(BATTERY_MODES)))
        usable = bat.capacity - bat.min_energy
        self.soc_scale = np.divide(params.soc_bins, usable, out=np.zeros_like(usable), where=usable > 0)
        self.episodes_trained = 0
        self.epsilon = params.epsilon
        self._train = False

    def _rows(self, env: DistrictEnv) -> np.ndarray:
        soc_bin = ((env.soc - self.data.batteries.min_energy) * self.soc_scale).astype(np.intp)
        return self.static_rows[env.t] + np.minimum(soc_bin, self.params.soc_bins - 1)

    def start_episode(self, env: DistrictEnv, train: bool) -> None:
        self._train = train
        p = self.params
        self.epsilon = max(p.min_epsilon, p.epsilon * p.epsilon_decay**self.episodes_trained) if train else 0.0
        if train:
            self.episodes_trained += 1
        self._state = self._rows(env)

    def act(self, env: DistrictEnv) -> tuple[np.ndarray, np.ndarray]:
        action = self.q[self._state].argmax(axis=1)
        if self.epsilon > 0:
            # One draw serves both choices: given u < epsilon, u / epsilon is uniform on [0, 1).
            u = self.rng.random(self.data.buildings)
            action = np.where(u < self.epsilon, (u * (len(BATTERY_MODES) / self.epsilon)).astype(np.intp), action)
        self._action = action
        surplus = -env.base[env.t]
        self._requests[1] = surplus
        np.maximum(surplus, 0.0, out=self._requests[2])
        return self._requests[action, self._buildings] * self.inv_step_energy, self.ev.fractions(env)

    def feedback(self, env: DistrictEnv, cost: np.ndarray) -> None:
        state, action = self._state, self._action
        if not env.done:
            self._state = self._rows(env)
        if not self._train:
            return
        idle_cost = np.maximum(env.net - env.battery_flow, 0.0) * self.data.price[env.t - 1]
        saving = idle_cost - cost
        target = saving if env.done else saving + self.params.discount * self.q[self._state].max(axis=1)
        q = self.q[state, action]
        self.q[state, action] = q + self.params.learning_rate * (target - q)


def make_controller(algorithm: str, data: Dataset, params: object, seed: int) -> Controller:
    """The controller of a validated config's ``algorithm`` and ``params``."""
    if algorithm == "no_control":
        return NoControl(data)
    if algorithm == "rule_based":
        assert isinstance(params, RuleBasedParams)
        return RuleBased(data, params)
    if algorithm == "q_learning":
        assert isinstance(params, QLearningParams)
        return QLearning(data, params, seed)
    raise ValueError(f"unknown algorithm {algorithm!r}")


def run_episode(env: DistrictEnv, controller: Controller, train: bool = False) -> EpisodeRecord:
    """One pass over the dataset; the controller learns only when ``train``."""
    env.reset()
    controller.start_episode(env, train)
    while not env.done:
        battery, ev = controller.act(env)
        cost = env.step(battery, ev)
        controller.feedback(env, cost)
    return env.record()
