"""core/sweep.py: trials expanded deterministically, bad sweeps refused with a clear reason,
host spreading, the summary maths and the in-flight count the e2e tests and the bench use."""

from __future__ import annotations

import csv
import io
import statistics

import pytest

from core import sweep as sw

BASE = {"experiment": {"name": "s", "run_name": "r"}, "algorithm": "q_learning", "simulation": {"buildings": 1, "days": 1}}


def spec(**kw) -> sw.SweepSpec:
    return sw.SweepSpec(**kw)


def test_grid_times_seeds_numbered_point_by_point_seed_by_seed():
    s = spec(grid={"algorithm.params.learning_rate": [0.1, 0.2], "episodes": [1, 2, 3]}, seeds=[7, 8])
    trials = sw.check(s, BASE)
    assert len(trials) == sw.count_trials(s) == 12
    assert [t.index for t in trials] == list(range(12))
    assert trials[0].params == {"algorithm.params.learning_rate": 0.1, "episodes": 1} and trials[0].seed == 7
    assert trials[1].params == trials[0].params and trials[1].seed == 8 and trials[1].point == 0
    assert trials[2].params == {"algorithm.params.learning_rate": 0.1, "episodes": 2} and trials[2].point == 1
    assert trials[-1].params == {"algorithm.params.learning_rate": 0.2, "episodes": 3} and trials[-1].seed == 8
    assert sw.expand(s) == trials  # the API re-expands the parent's parameters: the same trials


def test_random_draws_are_seeded_in_range_and_crossed_with_the_grid():
    s = spec(grid={"episodes": [1, 2]}, random={"algorithm.params.learning_rate": {"low": 0.01, "high": 0.5, "log": True},
                                                 "algorithm.params.soc_bins": {"low": 2, "high": 9, "integer": True},
                                                 "algorithm.name": {"choices": ["q_learning"]}}, n_random=4, random_seed=3)
    first, again = sw.points(s), sw.points(s)
    assert first == again and len(first) == 8
    assert all(0.01 <= p["algorithm.params.learning_rate"] <= 0.5 and isinstance(p["algorithm.params.soc_bins"], int) for p in first)
    assert [p["algorithm.params.learning_rate"] for p in first[:4]] == [p["algorithm.params.learning_rate"] for p in first[4:]]
    assert sw.points(spec(**{**s.model_dump(), "random_seed": 4})) != first
    assert len(sw.check(s, BASE)) == 8


def test_trial_config_sets_keys_and_the_seed_on_the_full_reference_form():
    full = sw.with_reference_defaults(BASE)
    assert full["algorithm"]["params"]["learning_rate"] == 0.2 and full["algorithm"]["name"] == "q_learning"
    trial = sw.Trial(5, 2, {"algorithm.params.learning_rate": 0.4}, 11)
    config = sw.trial_config(full, trial)
    assert config["algorithm"]["params"]["learning_rate"] == 0.4 and config["seed"] == 11
    assert full["algorithm"]["params"]["learning_rate"] == 0.2  # the base is not changed
    assert sw.trial_config({"a": 1}, sw.Trial(0, 0, {}, 3), "sim.seed") == {"a": 1, "sim": {"seed": 3}}


@pytest.mark.parametrize("kw, words", [
    ({}, "grid is empty"),
    ({"grid": {"episodes": []}}, "has no values"),
    ({"grid": {"algorithm.params.learnin_rate": [0.1]}}, "unknown key 'algorithm.params.learnin_rate'"),
    ({"grid": {"nope": [1]}}, "unknown key 'nope'"),
    ({"grid": {"algorithm.params.learning_rate": [0.1, 7]}}, "trial t001 (algorithm.params.learning_rate=7)"),
    ({"grid": {"episodes": list(range(1, 101))}, "seeds": list(range(6))}, "600 trials; a sweep runs at most 500"),
    ({"grid": {"seed": [1, 2]}}, "is the seed key"),
    ({"grid": {"episodes": [1]}, "seeds": [1, 1]}, "seeds must be different"),
    ({"grid": {"episodes": [1]}, "random": {"algorithm.params.discount": {"low": 0.1, "high": 0.5}}}, "need n_random > 0"),
    ({"grid": {"episodes": [1]}, "random": {"algorithm.params.discount": {"low": 0.5, "high": 0.1}}, "n_random": 2}, "low <= high"),
    ({"grid": {"../x": [1]}}, "is not a dotted key"),
])
def test_bad_sweeps_say_what_is_wrong(kw, words):
    with pytest.raises(sw.SweepError) as err:
        sw.check(spec(**kw), BASE)
    assert words in str(err.value)


def test_another_simulator_s_config_knows_only_its_own_keys():
    base = {"metadata": {"experiment_name": "x", "run_name": "y"}, "training": {"lr": 0.1}}
    assert len(sw.check(spec(grid={"training.lr": [0.1, 0.2]}), base, reference=False)) == 2
    with pytest.raises(sw.SweepError, match="unknown key 'training.epochs'"):
        sw.check(spec(grid={"training.epochs": [1]}), base, reference=False)


def test_hosts_filled_by_room_per_slot_then_evenly():
    hosts, cap = ["a", "b"], {"a": 2, "b": 2}
    in_flight, started = {"a": 0, "b": 0}, {"a": 0, "b": 0}
    picks = []
    for _ in range(4):
        h = sw.pick_host(hosts, in_flight, cap, started)
        in_flight[h] += 1
        started[h] += 1
        picks.append(h)
    assert picks == ["a", "b", "a", "b"]
    assert sw.pick_host(hosts, {"a": 1, "b": 1}, {"a": 4, "b": 1}, {"a": 5, "b": 1}) == "a"  # a has 3 free slots


def test_summary_mean_and_sample_std_per_point_and_the_best():
    rows = [sw.TrialRow(0, 0, {"k": 1}, 1, objective=2.0), sw.TrialRow(1, 0, {"k": 1}, 2, objective=4.0),
            sw.TrialRow(2, 1, {"k": 2}, 1, objective=1.0), sw.TrialRow(3, 1, {"k": 2}, 2, objective=None, status="failed"),
            sw.TrialRow(4, 2, {"k": 3}, 1, objective=5.0), sw.TrialRow(5, 2, {"k": 3}, 2, objective=7.0)]
    summaries = sw.summarise(rows)
    assert [(s.point, s.n, s.mean) for s in summaries] == [(0, 2, 3.0), (1, 1, 1.0), (2, 2, 6.0)]
    assert summaries[0].std == pytest.approx(statistics.stdev([2.0, 4.0])) and summaries[1].std is None
    assert sw.best_trial(rows, sw.Objective(metric="m", mode="min")).trial == 2
    assert sw.best_trial(rows, sw.Objective(metric="m", mode="max")).trial == 5
    assert sw.best_point(summaries, sw.Objective(metric="m", mode="min")).point == 1
    table = list(csv.reader(io.StringIO(sw.summary_csv(summaries, ["k"], "m"))))
    assert table[0] == ["point", "k", "n", "m_mean", "m_std"] and len(table) == 4
    assert table[1][:4] == ["0", "1", "2", "3.0"] and float(table[1][4]) == pytest.approx(2 ** 0.5) and table[2][4] == ""


def test_objective_from_metrics_else_district_kpis_never_a_non_number():
    assert sw.objective_value({"metrics": {"cost": 3}}, {"cost": 9.0}, "cost") == 3.0
    assert sw.objective_value({"metrics": {"cost": "3"}}, {"cost": 9.0}, "cost") == 9.0
    assert sw.objective_value({"metrics": {"cost": float("nan")}}, {}, "cost") is None
    assert sw.objective_value(None, {"cost": None}, "cost") is None
    assert sw.trial_of_key("abc:12", "abc") == 12 and sw.trial_of_key("abd:12", "abc") is None and sw.trial_of_key("abc:x", "abc") is None


def test_max_in_flight_counts_overlaps_and_an_end_before_a_start_at_the_same_time():
    assert sw.max_in_flight([(0, 2), (1, 3), (2, 4)]) == 2
    assert sw.max_in_flight([(0, 10), (1, 2), (1, 3), (2.5, 4)]) == 3
    assert sw.max_in_flight([]) == 0
