"""The reference simulator on its own: no Prefect, no Docker, no network server.

Runs in-process for the algorithms and as ``python -m simulator`` for the
contract with the platform (environment in, log/progress/result files out).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from simulator.agents import QLearning, run_episode
from simulator.config import ConfigError, QLearningParams, validate_config
from simulator.dataset import CHARGER_COLUMNS, load_dataset
from simulator.sample import sample_dataset, write_sample_dataset
from simulator.environment import DistrictEnv
from simulator.metrics import METRICS, episode_metrics
from simulator.mlflow_client import MlflowRun
from simulator.runner import run_experiment

ROOT = Path(__file__).resolve().parents[2]
LOG = logging.getLogger("test_simulator")


def experiment(**keys: Any) -> dict[str, Any]:
    return {"experiment": {"name": "sim-test", "run_name": "run-1"}, **keys}


def run(config: dict[str, Any], data_dir: Path | None = None, **kwargs: Any) -> dict[str, Any]:
    from simulator.runner import load_data

    parsed = validate_config(config, data_dir)
    return run_experiment(parsed, load_data(parsed, data_dir), log=LOG, **kwargs)


SMALL = {"simulation": {"buildings": 3, "days": 14}}


# --- determinism and quality -------------------------------------------------------------


def test_same_seed_gives_identical_metrics() -> None:
    config = experiment(algorithm={"name": "q_learning"}, episodes=3, seed=7, **SMALL)
    first, second = run(config), run(config)
    assert first["metrics"] == second["metrics"]
    assert first["training_curve"] == second["training_curve"]


def test_seed_drives_exploration() -> None:
    """Same data, different agent seeds: the training differs, so the test above is not vacuous."""
    data = sample_dataset(3, 14, seed=0)
    env = DistrictEnv(data)
    curves = []
    for seed in (1, 2):
        agent = QLearning(data, QLearningParams(), seed)
        curves.append([episode_metrics(data, run_episode(env, agent, train=True))["electricity_cost"] for _ in range(2)])
    assert curves[0] != curves[1]


@pytest.mark.parametrize("algorithm", ["rule_based", "q_learning"])
def test_controllers_beat_no_control_on_cost_without_leaving_evs_short(algorithm: str) -> None:
    result = run(experiment(algorithm=algorithm))  # built-in sample, default seed and episodes
    metrics = result["metrics"]
    assert metrics["electricity_cost_vs_baseline"] < 0.9, result["summary"]
    assert metrics["electricity_cost"] < result["baseline"]["electricity_cost"]
    # Not charging EVs would be cheap: the deadline must still be met as well as without control.
    assert metrics["ev_unmet_energy"] <= result["baseline"]["ev_unmet_energy"] + 1e-6
    assert metrics["ev_charged_energy"] == pytest.approx(result["baseline"]["ev_charged_energy"], rel=1e-6)


def test_q_learning_improves_with_training() -> None:
    result = run(experiment(algorithm="q_learning", episodes=5))
    curve = result["training_curve"]
    assert len(curve) == 5
    assert curve[-1] < curve[0]
    assert result["metrics"]["electricity_cost"] < curve[0]  # greedy evaluation after training


def test_result_has_every_metric_and_its_ratio() -> None:
    result = run(experiment(algorithm="no_control", **SMALL))
    for name in METRICS:
        assert name in result["metrics"]
        assert result["metrics"][f"{name}_vs_baseline"] == 1.0
    assert result["episodes"] == 0 and result["training_curve"] == []


def test_ev_shortfall_is_measured() -> None:
    """An EV never charged is reported short at each departure by what it lacked."""
    data = sample_dataset(2, 3, seed=0)
    env = DistrictEnv(data)
    env.reset()
    while not env.done:
        env.step(np.zeros(data.buildings), np.zeros(data.chargers.count))
    ev = data.chargers
    # Never charged, an EV leaves with its arrival energy: it lacks target - arrival energy.
    lacking = sum(
        max(ev.target_energy[t, c] - ev.arrival_energy[np.flatnonzero(ev.arriving[: t + 1, c])[-1], c], 0.0)
        for t, c in zip(*np.nonzero(ev.departing))
    )
    assert env.record().ev_unmet == pytest.approx(lacking)
    assert lacking > 0


# --- datasets ----------------------------------------------------------------------------


def test_written_sample_reads_back_identically(tmp_path: Path) -> None:
    folder = write_sample_dataset(tmp_path / "district", buildings=3, days=7, seed=5)
    schema = json.loads((folder / "schema.json").read_text())
    for key in ("random_seed", "root_directory", "central_agent", "simulation_start_time_step", "simulation_end_time_step",
                "episode_time_steps", "seconds_per_time_step", "start_date", "observations", "actions", "agent",
                "reward_function", "electric_vehicles_def", "buildings"):
        assert key in schema
    building = schema["buildings"]["Building_1"]
    assert building["electrical_storage"]["attributes"]["capacity"] > 0
    charger = next(iter(building["chargers"].values()))
    header = (folder / charger["charger_simulation"]).read_text().splitlines()[0].split(",")
    assert tuple(header) == CHARGER_COLUMNS
    for name in ("weather.csv", "pricing.csv", "carbon_intensity.csv", "Building_3.csv"):
        assert (folder / name).is_file()

    loaded, built = load_dataset(folder), sample_dataset(3, 7, seed=5)
    assert loaded.notes == ()
    for field in ("hour", "load", "pv", "price", "carbon"):
        np.testing.assert_allclose(getattr(loaded, field), getattr(built, field), rtol=1e-12)
    for field in ("plugged", "arriving", "arrival_energy", "target_energy", "departing", "steps_left"):
        np.testing.assert_allclose(getattr(loaded.chargers, field), getattr(built.chargers, field), rtol=1e-12)
    np.testing.assert_allclose(loaded.batteries.capacity, built.batteries.capacity)


def test_dataset_by_name_simulates_like_the_sample(tmp_path: Path) -> None:
    write_sample_dataset(tmp_path / "datasets" / "district", buildings=3, days=14, seed=4)
    from_folder = run(experiment(dataset="district", algorithm="rule_based", seed=4), data_dir=tmp_path)
    in_memory = run(experiment(algorithm="rule_based", seed=4, **SMALL))
    assert from_folder["metrics"] == pytest.approx(in_memory["metrics"])
    assert from_folder["dataset"] == "district"


def test_missing_optional_files_and_columns_become_defaults(tmp_path: Path) -> None:
    folder = write_sample_dataset(tmp_path / "d", buildings=2, days=3, seed=0)
    (folder / "carbon_intensity.csv").unlink()
    building = folder / "Building_1.csv"
    frame = building.read_text().splitlines()
    header = frame[0].split(",")
    solar = header.index("solar_generation")
    building.write_text("\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != solar) for line in frame) + "\n")

    data = load_dataset(folder)
    assert any("carbon_intensity.csv" in note for note in data.notes)
    assert any("solar_generation" in note for note in data.notes)
    assert not data.carbon.any()
    assert not data.pv[:, 0].any() and data.pv[:, 1].any()
    metrics = episode_metrics(data, run_episode(DistrictEnv(data), QLearning(data, QLearningParams(), 0)))
    assert metrics["emissions"] == 0.0


# --- config validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "field", "words"),
    [
        (experiment(algorithm={"name": "foo"}), "algorithm.name", "unknown algorithm 'foo' (choose from no_control, rule_based, q_learning)"),
        (experiment(algorithm={"name": "q_learning", "params": {"learning_rate": 2}}), "algorithm.params.learning_rate", "less than or equal to 1"),
        (experiment(algorithm={"name": "q_learning", "params": {"learnig_rate": 0.1}}), "algorithm.params.learnig_rate", "unknown parameter for q_learning"),
        (experiment(algorithm={"name": "q_learning", "params": {"soc_bins": "5"}}), "algorithm.params.soc_bins", "valid integer"),
        (experiment(algorithm={"name": "rule_based", "params": {"cheap_price_fraction": 0.8}}), "algorithm.params.discharge_price_fraction", "at least cheap_price_fraction"),
        (experiment(episodes=0), "episodes", "greater than or equal to 1"),
        (experiment(simulation={"buildings": 2, "hours": 3}), "simulation.hours", "unknown key"),
        (experiment(dataset="../secrets"), "dataset", "plain folder name"),
        (experiment(dataset="absent"), "dataset", "no dataset 'absent'"),
        ({"dataset": "x"}, "experiment", "required"),
        ({"experiment": {"name": "n", "run_name": ""}}, "experiment.run_name", "at least 1 character"),
    ],
)
def test_config_errors_name_the_field(tmp_path: Path, config: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_config(config, tmp_path)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert words in str(caught.value)


def test_config_defaults_and_tolerance(tmp_path: Path) -> None:
    config = validate_config({"experiment": {"name": "n", "run_name": "r", "owner": "ui"}, "agents": {"opeva": "keys"}})
    assert (config.algorithm, config.episodes, config.seed, config.dataset) == ("q_learning", 5, 0, None)
    assert config.params == QLearningParams()
    assert validate_config(experiment(algorithm="rule_based")).algorithm == "rule_based"
    # Without a data root the dataset folder is not looked for; with one it must hold schema.json.
    assert validate_config(experiment(dataset="later")).dataset == "later"
    write_sample_dataset(tmp_path / "datasets" / "here", buildings=1, days=1)
    assert validate_config(experiment(dataset="here"), tmp_path).dataset == "here"


# --- MLflow over REST ------------------------------------------------------------------------


def test_mlflow_run_is_created_and_logged_over_rest() -> None:
    """A stand-in MLflow (httpx.MockTransport): no MLflow server is part of the test set-up
    (the mlflow package is outside the platform's dependencies), so this checks the REST
    calls the simulator sends and how it reads MLflow's answers."""
    calls: list[tuple[str, dict]] = []

    def mlflow(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/2.0/mlflow/")
        body = json.loads(request.content) if request.content else dict(request.url.params)
        calls.append((path, body))
        if path == "experiments/get-by-name":
            return httpx.Response(404, json={"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such experiment"})
        if path == "experiments/create":
            return httpx.Response(200, json={"experiment_id": "12"})
        if path == "runs/create":
            return httpx.Response(200, json={"run": {"info": {"run_id": "run-abc"}}})
        return httpx.Response(200, json={})

    tracker = MlflowRun.start("http://mlflow.test", "sim-test", "job-1", LOG, transport=httpx.MockTransport(mlflow))
    assert tracker is not None
    result = run(experiment(algorithm="q_learning", episodes=2, **SMALL), tracker=tracker)
    tracker.finish()

    paths = [path for path, _ in calls]
    assert paths[:3] == ["experiments/get-by-name", "experiments/create", "runs/create"]
    assert calls[1][1] == {"name": "sim-test"}
    assert calls[2][1]["experiment_id"] == "12" and calls[2][1]["run_name"] == "job-1"
    batches = [body for path, body in calls if path == "runs/log-batch"]
    params = {p["key"]: p["value"] for b in batches for p in b.get("params", [])}
    assert params["algorithm"] == "q_learning" and params["learning_rate"] == "0.2"
    metric_steps = {(m["key"], m["step"]) for b in batches for m in b.get("metrics", [])}
    assert {("train_electricity_cost", 1), ("train_electricity_cost", 2), ("electricity_cost_vs_baseline", 2)} <= metric_steps
    assert all(b["run_id"] == "run-abc" for b in batches)
    assert calls[-1] == ("runs/update", {"run_id": "run-abc", "status": "FINISHED", "end_time": calls[-1][1]["end_time"]})
    assert result["status"] == "completed"


def test_mlflow_failure_is_a_warning_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with caplog.at_level(logging.WARNING, logger=LOG.name):
        assert MlflowRun.start("http://mlflow.test", "e", "r", LOG, transport=httpx.MockTransport(broken)) is None
    assert "continuing without tracking" in caplog.text


# --- the platform contract: python -m simulator ------------------------------------------


def simulate(tmp_path: Path, config: dict[str, Any], *args: str, use_env: bool = True, **extra_env: str) -> tuple[subprocess.CompletedProcess, Path]:
    """Run the simulator like the flow does; returns the process and the folder of its files."""
    job = tmp_path / "jobs" / "job-42"
    config_file = tmp_path / "configs" / "exp.yaml"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPEVA_", "MLFLOW_"))}
    env["PYTHONPATH"] = str(ROOT)
    if use_env:
        env.update(
            OPEVA_JOB_ID="job-42",
            OPEVA_CONFIG_PATH=str(config_file),
            OPEVA_DATA_DIR=str(tmp_path),
            OPEVA_LOG_FILE=str(job / "logs" / "simulator.log"),
            OPEVA_PROGRESS_FILE=str(job / "progress" / "progress.json"),
            OPEVA_RESULT_FILE=str(job / "results" / "result.json"),
        )
    else:
        args = ("--config", str(config_file), "--out", str(job), *args)
    env.update(extra_env)
    proc = subprocess.run([sys.executable, "-m", "simulator", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    return proc, job


def test_module_run_follows_the_contract(tmp_path: Path) -> None:
    write_sample_dataset(tmp_path / "datasets" / "district", buildings=3, days=10, seed=1)
    config = experiment(dataset="district", algorithm={"name": "q_learning", "params": {"epsilon": 0.4}}, episodes=3, seed=1)
    # MLflow on a closed port: one warning, and the job still succeeds.
    proc, job = simulate(tmp_path, config, MLFLOW_TRACKING_URI="http://127.0.0.1:9")

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""  # everything goes to the log file, once
    lines = (job / "logs" / "simulator.log").read_text().splitlines()
    assert lines[0].startswith("[INFO] Simulation started for job job-42")
    assert any(line.startswith("[WARNING] MLflow at http://127.0.0.1:9 is not usable") for line in lines)
    assert [line.split(":")[0] for line in lines if line.startswith("[INFO] Episode")] == [f"[INFO] Episode {i}/3" for i in (1, 2, 3)]
    assert lines[-1].startswith("[INFO] Simulation completed")
    assert all(line.startswith(("[INFO]", "[WARNING]")) for line in lines)

    progress = json.loads((job / "progress" / "progress.json").read_text())
    assert progress == {"percent": 100, "stage": "completed", "episode": 3, "episodes": 3}
    result = json.loads((job / "results" / "result.json").read_text())
    assert result["status"] == "completed" and result["dataset"] == "district"
    assert "electricity cost" in result["summary"]
    assert result["metrics"]["electricity_cost_vs_baseline"] < 1
    assert not list(job.rglob("*.tmp"))  # atomic writes leave no temp files


def test_module_run_by_hand_writes_under_out(tmp_path: Path) -> None:
    proc, out = simulate(tmp_path, experiment(algorithm="rule_based", **SMALL), use_env=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "result.json").read_text())["status"] == "completed"
    assert json.loads((out / "progress.json").read_text())["percent"] == 100
    assert (out / "simulator.log").read_text().splitlines()[-1].startswith("[INFO] Simulation completed")


@pytest.mark.parametrize(
    ("config", "prefix"),
    [
        (experiment(algorithm={"name": "foo"}), "[ERROR] algorithm.name: unknown algorithm 'foo'"),
        (experiment(algorithm={"name": "q_learning", "params": {"discount": 1.5}}), "[ERROR] algorithm.params.discount:"),
        (experiment(dataset="missing"), "[ERROR] dataset: no dataset 'missing'"),
    ],
)
def test_module_run_with_bad_config_fails_naming_the_field(tmp_path: Path, config: dict, prefix: str) -> None:
    proc, job = simulate(tmp_path, config)
    assert proc.returncode == 2
    last = (job / "logs" / "simulator.log").read_text().splitlines()[-1]
    assert last.startswith(prefix), last
    result = json.loads((job / "results" / "result.json").read_text())
    assert result["status"] == "failed" and result["summary"] == last.removeprefix("[ERROR] ")


def test_module_run_with_unreadable_dataset_fails_naming_the_file(tmp_path: Path) -> None:
    folder = write_sample_dataset(tmp_path / "datasets" / "broken", buildings=2, days=2)
    (folder / "Building_2.csv").write_text("month,hour\n1,2\n1,2,3,4\n")
    proc, job = simulate(tmp_path, experiment(dataset="broken"))
    assert proc.returncode == 1
    last = (job / "logs" / "simulator.log").read_text().splitlines()[-1]
    assert last.startswith("[ERROR] dataset: Building_2.csv is not a readable CSV"), last
    assert json.loads((job / "results" / "result.json").read_text())["status"] == "failed"


def test_module_run_without_files_to_write_is_a_usage_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPEVA_")} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "simulator"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "OPEVA_LOG_FILE" in proc.stderr and "--out" in proc.stderr


def test_upstream_six_column_charger_files_are_read_by_name() -> None:
    """OPEVA's builder writes six charger columns (no capacity, no current SoC); read by name,
    not by the 2.4 positions, the session's arrival SoC and departure target are the file's."""
    import pandas as pd

    from simulator.dataset import UPSTREAM_CHARGER_COLUMNS, _charger_sessions

    rows = [[3, "", -1, -1, 1, 40.0], [1, "EV_1", 2, 80.0, -1, 40.0], [1, "EV_1", 1, 80.0, -1, 40.0], [3, "", -1, -1, -1, -1]]
    frame = pd.DataFrame(rows, columns=list(UPSTREAM_CHARGER_COLUMNS))
    ev_defs = {"EV_1": {"battery": {"attributes": {"capacity": 50.0}}}}
    plugged, arriving, arrival, target, capacity, departing, left = _charger_sessions(frame, 4, ev_defs)
    assert plugged.tolist() == [False, True, True, False] and arriving.tolist() == [False, True, False, False]
    assert capacity[1] == 50.0 and arrival[1] == 20.0 and target[1] == 40.0  # 40 % and 80 % of 50 kWh
    assert left[1:3].tolist() == [2, 1] and departing.tolist() == [False, False, True, False]
    headerless = frame.copy()
    headerless.columns = [f"c{i}" for i in range(6)]
    assert _charger_sessions(headerless, 4, ev_defs)[2][1] == 20.0  # by position, the width tells the layout
