"""Reference simulator throughput: numpy across buildings vs a plain Python loop.

Prints simulated steps/s (best of 3) over one year, hourly (8760 steps), for each algorithm
on the built-in sample with 10 buildings (and the no-control step with 100),
against a pure-Python, building-by-building implementation of the same
no-control step run in the same process, whose cost must match; then the wall
time of a 10-episode Q-learning training over that year (target: under 60 s on
one core).

    python bench/simulator.py
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator.agents import NoControl, QLearning, RuleBased, run_episode  # noqa: E402
from simulator.config import QLearningParams, RuleBasedParams  # noqa: E402
from simulator.dataset import Dataset  # noqa: E402
from simulator.sample import sample_dataset  # noqa: E402
from simulator.environment import DistrictEnv  # noqa: E402
from simulator.metrics import episode_metrics  # noqa: E402

DAYS = 365
TRAINING_EPISODES = 10
TRAINING_TARGET_SECONDS = 60.0
REPEATS = 3  # per-episode rates: best of 3


def python_no_control(data: Dataset) -> float:
    """The no-control step of DistrictEnv (idle batteries, EVs charged at once up to
    their target), one building and one charger at a time on Python floats.
    Returns the electricity cost of the episode."""
    bat, ev = data.batteries, data.chargers
    base = (data.load - data.pv).tolist()
    price = data.price.tolist()
    step = (bat.nominal_power * data.hours_per_step).tolist()
    eta = [math.sqrt(e) for e in bat.efficiency.tolist()]
    soc, min_energy, capacity = bat.initial_energy.tolist(), bat.min_energy.tolist(), bat.capacity.tolist()
    charger_building = ev.building.tolist()
    charger_step = (ev.max_power * data.hours_per_step * ev.efficiency).tolist()
    inv_ev_efficiency = (1.0 / ev.efficiency).tolist()
    plugged, arriving, arrival = ev.plugged.tolist(), ev.arriving.tolist(), ev.arrival_energy.tolist()
    target, ev_capacity = ev.target_energy.tolist(), ev.capacity.tolist()
    ev_energy = [0.0] * ev.count
    buildings, chargers = range(data.buildings), range(ev.count)
    cost = 0.0
    for t in range(data.steps):
        net = list(base[t])
        for b in buildings:
            most_out = max((min_energy[b] - soc[b]) * eta[b], -step[b])
            most_in = min((capacity[b] - soc[b]) / eta[b], step[b])
            flow = min(max(0.0 * step[b], most_out), most_in)
            soc[b] += flow * eta[b] if flow > 0 else flow / eta[b]
            net[b] += flow
        for c in chargers:
            if arriving[t][c]:
                ev_energy[c] = arrival[t][c]
            if not plugged[t][c]:
                continue
            need = max(target[t][c] - ev_energy[c], 0.0)
            delivered = max(min(min(need, charger_step[c]), ev_capacity[t][c] - ev_energy[c]), 0.0)
            ev_energy[c] += delivered
            net[charger_building[c]] += delivered * inv_ev_efficiency[c]
        for b in buildings:
            if net[b] > 0:
                cost += net[b] * price[t][b]
    return cost


def _timed(fn, repeats: int = 1):
    """fn's value and its fastest wall time over ``repeats`` runs (other load on the machine only slows runs down)."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return value, best


def main() -> None:
    rows: list[tuple[str, int, float, float]] = []  # name, buildings, seconds, cost
    python_seconds: dict[int, float] = {}

    for buildings in (10, 100):
        data = sample_dataset(buildings=buildings, days=DAYS, seed=0)
        env = DistrictEnv(data)
        python_cost, python_s = _timed(lambda: python_no_control(data), REPEATS)
        record, numpy_s = _timed(lambda: run_episode(env, NoControl(data)), REPEATS)
        numpy_cost = episode_metrics(data, record)["electricity_cost"]
        if not math.isclose(python_cost, numpy_cost, rel_tol=1e-9):
            raise SystemExit(f"pure-Python and numpy no-control disagree: {python_cost} vs {numpy_cost}")
        rows += [("no_control, pure Python loop", buildings, python_s, python_cost), ("no_control, numpy", buildings, numpy_s, numpy_cost)]
        python_seconds[buildings] = python_s
        if buildings == 10:
            ten = data

    env = DistrictEnv(ten)
    rule = RuleBased(ten, RuleBasedParams())
    record, seconds = _timed(lambda: run_episode(env, rule), REPEATS)
    rows.append(("rule_based, numpy", 10, seconds, episode_metrics(ten, record)["electricity_cost"]))

    agent = QLearning(ten, QLearningParams(), seed=0)
    curve = []
    start = time.perf_counter()
    for _ in range(TRAINING_EPISODES):
        record, seconds = _timed(lambda: run_episode(env, agent, train=True))
        curve.append(episode_metrics(ten, record)["electricity_cost"])
    training_s = time.perf_counter() - start
    rows.append(("q_learning training episode, numpy", 10, seconds, curve[-1]))
    record, seconds = _timed(lambda: run_episode(env, agent), REPEATS)
    rows.append(("q_learning greedy, numpy", 10, seconds, episode_metrics(ten, record)["electricity_cost"]))

    steps = ten.steps
    print(f"Reference simulator, sample district, {steps} hourly steps (one year), one episode each\n")
    print(f"| {'run':<36} | {'buildings':>9} | {'steps/s':>9} | {'building-steps/s':>16} | {'vs Python no_control':>21} | {'cost $':>10} |")
    print(f"|{'-' * 38}|{'-' * 11}|{'-' * 11}|{'-' * 18}|{'-' * 23}|{'-' * 12}|")
    for name, buildings, seconds, cost in rows:
        rate = steps / seconds
        print(f"| {name:<36} | {buildings:>9} | {rate:>9,.0f} | {rate * buildings:>16,.0f} | "
              f"{python_seconds[buildings] / seconds:>20.2f}x | {cost:>10,.0f} |")
    verdict = "OK" if training_s < TRAINING_TARGET_SECONDS else "SLOWER THAN TARGET"
    print(f"\nq_learning training, {TRAINING_EPISODES} episodes x {steps} steps x 10 buildings: "
          f"{training_s:.1f} s wall ({verdict}: target < {TRAINING_TARGET_SECONDS:.0f} s on one core)")
    print("training curve (cost $ per episode): " + ", ".join(f"{c:,.0f}" for c in curve))


if __name__ == "__main__":
    main()
