"""A sweep: one experiment made of many simulation jobs (trials), the domain part.

Why here and Prefect-free: the flow that runs a sweep (flows/sweep.py) and the REST API that
answers for it (api/usecases/sweeps.py) must agree on what the trials are, trial by trial,
without talking to each other. So a sweep is a *specification* (:class:`SweepSpec`: grid,
random draws, seeds, objective) and its trials are a pure function of it (:func:`expand`):
the same spec gives the same trials, numbered the same, in the flow, in a retry of the flow,
and in the API that reads the flow's parameters back. A trial's number is also its identity
in Prefect (the child run's idempotency key is ``<sweep_id>:<trial>``).

A trial's config is the base config with the point's dotted keys set, and the seed key
(:data:`core.experiment.SEED_KEY`) set to the trial's seed. A key must already be in the base
config, or in the reference simulator's defaults when the base config is one the reference
simulator runs: a typo is then a 400, not eighteen jobs that all ignore it.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import math
import random
import re
import statistics
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.experiment import SEED_KEY

MAX_TRIALS = 500  # one sweep; more is several sweeps (each trial is a container and a flow run)
MAX_PARALLEL = 64
MAX_KEYS = 20
MAX_VALUES = 200  # per grid key
KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}(\.[A-Za-z_][A-Za-z0-9_-]{0,63}){0,7}")
METRIC = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.%() -]{0,127}")
SWEEP_TAG = "sweep:"  # a child run's tag: sweep:<sweep_id>
STOP_TAG = "sweep-stop"  # on the parent: start no more trials (POST /sweeps/{id}/stop)


class SweepError(ValueError):
    """A sweep that cannot run as asked (the API answers 400 with this text; nothing is started)."""


class RandomRange(BaseModel):
    """A number drawn uniformly in [low, high] (``log``: uniformly in log space; ``integer``: an int)."""

    model_config = ConfigDict(extra="forbid")
    low: float
    high: float
    log: bool = False
    integer: bool = False


class RandomChoice(BaseModel):
    """One of ``choices``, each equally likely."""

    model_config = ConfigDict(extra="forbid")
    choices: list[Any] = Field(min_length=1, max_length=MAX_VALUES)


class Objective(BaseModel):
    """What ranks trials: a metric of result.json's ``metrics`` (else a District KPI of the job's
    exported table), lower (``min``) or higher (``max``) is better."""

    model_config = ConfigDict(extra="forbid")
    metric: str = Field(description="e.g. electricity_cost, or a KPI of exported_kpis.csv")
    mode: Literal["min", "max"] = "min"

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if not METRIC.fullmatch(value):
            raise ValueError("a metric name is 1-128 letters, digits, spaces or _.%()-")
        return value


class SweepSpec(BaseModel):
    """Everything that decides a sweep's trials and how they are judged (hosts and window aside)."""

    model_config = ConfigDict(extra="forbid")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted.key -> values; every combination is a point")
    random: dict[str, RandomRange | RandomChoice] = Field(default_factory=dict, description="dotted.key -> {low, high} or {choices}")
    n_random: int = Field(0, ge=0, le=MAX_TRIALS, description="random draws, each crossed with every grid combination")
    random_seed: int = Field(0, ge=0, description="seed of the random draws (the same seed draws the same points)")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, max_length=MAX_TRIALS, description="each point runs once per seed")
    seed_key: str = Field(SEED_KEY, description="the config key the seed is written to")
    objective: Objective | None = None


@dataclass(frozen=True)
class Trial:
    index: int
    point: int  # index of its point (grid combination x random draw)
    params: dict[str, Any]
    seed: int

    @property
    def label(self) -> str:
        return f"t{self.index:03d}"


def idempotency_key(sweep_id: str, trial: int) -> str:
    return f"{sweep_id}:{trial}"


def trial_of_key(key: str | None, sweep_id: str) -> int | None:
    """The trial number from a child run's idempotency key (None when it is not this sweep's)."""
    prefix = f"{sweep_id}:"
    if not key or not key.startswith(prefix) or not key[len(prefix):].isdigit():
        return None
    return int(key[len(prefix):])


def _draw(spec: RandomRange | RandomChoice, rng: random.Random) -> Any:
    if isinstance(spec, RandomChoice):
        return spec.choices[rng.randrange(len(spec.choices))]
    if spec.log:
        value = math.exp(rng.uniform(math.log(spec.low), math.log(spec.high)))
    else:
        value = rng.uniform(spec.low, spec.high)
    return int(round(value)) if spec.integer else round(value, 10)


def points(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every grid combination (keys in the order given, values in order), each crossed with the
    ``n_random`` draws; the draws come from ``random_seed`` alone, so they never change."""
    keys = list(spec.grid)
    combos = [dict(zip(keys, values)) for values in itertools.product(*(spec.grid[k] for k in keys))] if keys else [{}]
    if not spec.random or spec.n_random == 0:
        return combos
    rng = random.Random(spec.random_seed)
    draws = [{k: _draw(v, rng) for k, v in spec.random.items()} for _ in range(spec.n_random)]
    return [{**combo, **draw} for combo in combos for draw in draws]


def count_trials(spec: SweepSpec) -> int:
    grid = math.prod(len(v) for v in spec.grid.values()) if spec.grid else 1
    return grid * (spec.n_random if spec.random and spec.n_random else 1) * len(spec.seeds)


def expand(spec: SweepSpec) -> list[Trial]:
    """Trials numbered point by point, seed by seed: trial = point * len(seeds) + seed's position."""
    return [Trial(p * len(spec.seeds) + s, p, params, seed) for p, params in enumerate(points(spec)) for s, seed in enumerate(spec.seeds)]


# -- configs ----------------------------------------------------------------

def leaf_paths(config: Any, prefix: str = "") -> set[str]:
    """Every dotted path of ``config`` (mappings walked; a mapping's own path included)."""
    out: set[str] = set()
    if isinstance(config, dict):
        for key, value in config.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out.add(path)
            out |= leaf_paths(value, path)
    return out


def set_path(config: dict[str, Any], path: str, value: Any) -> None:
    node = config
    parts = path.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = copy.deepcopy(value)


def trial_config(base: dict[str, Any], trial: Trial, seed_key: str = SEED_KEY) -> dict[str, Any]:
    config = copy.deepcopy(base)
    for key, value in trial.params.items():
        set_path(config, key, value)
    set_path(config, seed_key, trial.seed)
    return config


def with_reference_defaults(base: dict[str, Any]) -> dict[str, Any]:
    """The base config in the reference simulator's full form (``algorithm: {name, params}`` with
    every parameter's default), over the base's own keys; the base unchanged when the reference
    simulator does not take it (another simulator's config: only its own keys are known)."""
    from simulator.config import ConfigError, validate_config

    try:
        checked = validate_config(base)
    except ConfigError:
        return base
    full = copy.deepcopy(base)
    full["algorithm"] = {**(base["algorithm"] if isinstance(base.get("algorithm"), dict) else {}),
                         "name": checked.algorithm, "params": checked.params.model_dump()}
    full.setdefault("episodes", checked.episodes)
    full.setdefault(SEED_KEY, checked.seed)
    simulation = full.get("simulation") if isinstance(full.get("simulation"), dict) else {}
    full["simulation"] = {"buildings": checked.buildings, "days": checked.days, **simulation}
    return full


def check(spec: SweepSpec, base: dict[str, Any], *, reference: bool = True) -> list[Trial]:
    """The trials, or SweepError saying what is wrong. ``reference``: every trial's config must
    also pass the reference simulator's own check (simulator/config.py)."""
    if not spec.grid and not (spec.random and spec.n_random):
        raise SweepError("the grid is empty: give at least one grid key with values (or random draws with n_random > 0)")
    if spec.random and not spec.n_random:
        raise SweepError("random draws need n_random > 0")
    keys = [*spec.grid, *spec.random]
    if len(keys) > MAX_KEYS:
        raise SweepError(f"at most {MAX_KEYS} swept keys; got {len(keys)}")
    for key in [*keys, spec.seed_key]:
        if not KEY.fullmatch(key):
            raise SweepError(f"{key!r} is not a dotted key (letters, digits, _ and -, separated by dots)")
    for key, values in spec.grid.items():
        if not values:
            raise SweepError(f"grid key {key!r} has no values")
        if len(values) > MAX_VALUES:
            raise SweepError(f"grid key {key!r} has {len(values)} values; at most {MAX_VALUES}")
    if set(spec.grid) & set(spec.random):
        raise SweepError(f"{sorted(set(spec.grid) & set(spec.random))[0]!r} is both a grid key and a random key")
    if spec.seed_key in keys:
        raise SweepError(f"{spec.seed_key!r} is the seed key: list seeds in 'seeds', not in the grid")
    if len(set(spec.seeds)) != len(spec.seeds):
        raise SweepError("seeds must be different")
    for name, draw in spec.random.items():
        if isinstance(draw, RandomRange) and (draw.high < draw.low or (draw.log and draw.low <= 0)):
            raise SweepError(f"random key {name!r}: need low <= high (and low > 0 with log)")
    n = count_trials(spec)
    if n > MAX_TRIALS:
        raise SweepError(f"{n} trials; a sweep runs at most {MAX_TRIALS} (split it, or use fewer values or seeds)")
    full = with_reference_defaults(base)
    known = leaf_paths(full)
    for key in keys:
        if key not in known:
            raise SweepError(f"unknown key {key!r}: the base config has no such key (write its default there to sweep it)")
    trials = expand(spec)
    if reference:
        _check_reference(full, trials, spec.seed_key)
    return trials


def _check_reference(full: dict[str, Any], trials: list[Trial], seed_key: str) -> None:
    from simulator.config import ConfigError, validate_config

    seen: set[int] = set()
    for trial in trials:
        if trial.point in seen:
            continue
        seen.add(trial.point)
        try:
            validate_config(trial_config(full, trial, seed_key))
        except ConfigError as exc:
            raise SweepError(f"trial {trial.label} ({_describe(trial.params)}): {exc}") from None


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "base config"


# -- hosts --------------------------------------------------------------------

def pick_host(hosts: list[str], in_flight: dict[str, int], capacity: dict[str, int | None], started: dict[str, int]) -> str:
    """The host with the most room: fewest of this sweep's runs in flight per slot, then fewest
    started so far, then the hosts' order. Spreads trials evenly over hosts of equal size."""
    def load(h: str) -> tuple[float, int, int]:
        slots = capacity.get(h) or 1
        return (in_flight.get(h, 0) / slots, started.get(h, 0), hosts.index(h))

    return min(hosts, key=load)


# -- results --------------------------------------------------------------------

def objective_value(result: Any, district: dict[str, float | None], metric: str) -> float | None:
    """``metric`` from result.json's ``metrics`` (a finite number), else from the District KPIs."""
    metrics = result.get("metrics") if isinstance(result, dict) else None
    value = metrics.get(metric) if isinstance(metrics, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    kpi = district.get(metric)
    return kpi if kpi is not None and math.isfinite(kpi) else None


@dataclass
class TrialRow:
    """One trial as the sweep's table shows it (job_id None: not started yet)."""

    trial: int
    point: int
    params: dict[str, Any]
    seed: int
    host: str | None = None
    job_id: str | None = None
    status: str = "pending"
    objective: float | None = None
    started_at: str | None = None
    finished_at: str | None = None


@dataclass
class PointSummary:
    point: int
    params: dict[str, Any]
    n: int  # trials with a value
    mean: float | None
    std: float | None  # sample standard deviation over seeds (None with fewer than 2 values)
    trials: list[int] = field(default_factory=list)


def summarise(rows: list[TrialRow]) -> list[PointSummary]:
    """Mean and sample standard deviation of the objective per point, over its seeds."""
    by_point: dict[int, list[TrialRow]] = {}
    for row in rows:
        by_point.setdefault(row.point, []).append(row)
    out = []
    for point, group in sorted(by_point.items()):
        values = [r.objective for r in group if r.objective is not None]
        mean = statistics.fmean(values) if values else None
        std = statistics.stdev(values) if len(values) >= 2 else None
        out.append(PointSummary(point, group[0].params, len(values), mean, std, [r.trial for r in group]))
    return out


def best_trial(rows: list[TrialRow], objective: Objective | None) -> TrialRow | None:
    scored = [r for r in rows if r.objective is not None]
    if objective is None or not scored:
        return None
    if objective.mode == "min":
        return min(scored, key=lambda r: (r.objective, r.trial))
    return max(scored, key=lambda r: (r.objective, -r.trial))  # ties: the earliest trial


def best_point(summaries: list[PointSummary], objective: Objective | None) -> PointSummary | None:
    scored = [s for s in summaries if s.mean is not None]
    if objective is None or not scored:
        return None
    return (min if objective.mode == "min" else max)(scored, key=lambda s: s.mean)  # type: ignore[arg-type,return-value]


def summary_csv(summaries: list[PointSummary], keys: list[str], metric: str | None) -> str:
    """One row per point: its keys' values, the count, mean and std of ``metric`` over seeds."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    name = metric or "objective"
    writer.writerow(["point", *keys, "n", f"{name}_mean", f"{name}_std"])
    for s in summaries:
        writer.writerow([s.point, *(s.params.get(k) for k in keys), s.n, "" if s.mean is None else repr(s.mean), "" if s.std is None else repr(s.std)])
    return out.getvalue()


def job_objective(job_dir: Any, metric: str) -> float | None:
    """A finished job's objective, from its own files (read as every job file is: core/job_io.py,
    core/kpis.py; the job wrote them, so nothing in them is trusted). Blocking: call in a thread."""
    from core import job_io
    from core.kpis import read_job_kpis

    result = job_io.read_json(job_dir, "results/result.json")
    value = objective_value(result, {}, metric)
    return value if value is not None else objective_value(None, read_job_kpis(job_dir).district, metric)


def max_in_flight(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end at t closes before a start at t)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals], key=lambda e: (e[0], e[1]))
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak
