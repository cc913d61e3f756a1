"""Runs one experiment the way the platform expects (README "Simulator contract").

Inputs come from the environment the flow sets (``OPEVA_CONFIG_PATH``,
``OPEVA_DATA_DIR``, ``OPEVA_JOB_ID``) or, run by hand, from the command line.
Outputs are three files: the log (``[LEVEL] message`` lines, which the flow
mirrors into Prefect, so nothing is printed to stdout), progress.json, updated
after every episode, and result.json at the end; beside them the simulation data
(results/simulation_data/) and the policy bundle (``OPEVA_JOB_DIR``/bundle/, docs/bundles.md). Exit code 0 on success, 2 for
a bad config or command line, 1 for any other failure; the last log line then
says ``[ERROR] <field or cause>: ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from simulator.agents import NoControl, make_controller, run_episode
from simulator.bundle import export_bundle
from simulator.config import ConfigError, SimulatorConfig, validate_config
from simulator.dataset import Dataset, DatasetError, load_dataset
from simulator.sample import sample_dataset
from simulator.environment import DistrictEnv
from simulator.export import export_session
from simulator.metrics import episode_metrics, rounded, with_baseline
from simulator.mlflow_client import MlflowRun

LOGGER_NAME = "opeva.simulator"
ProgressCallback = Callable[[dict[str, Any]], None]


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so a reader never sees half a file (the flow polls progress.json).

    Same as ``blocks.storage.write_json_atomic``, which cannot be imported here
    without importing Prefect (seconds of start-up for every job).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_data(config: SimulatorConfig, data_dir: Path | None) -> Dataset:
    """The dataset the config names under ``<data_dir>/datasets/``, or the built-in sample."""
    if config.dataset is None:
        return sample_dataset(config.buildings, config.days, config.seed)
    if data_dir is None:
        raise ConfigError("dataset", f"dataset {config.dataset!r} needs the shared data root (OPEVA_DATA_DIR or --data-dir)")
    return load_dataset(data_dir / "datasets" / config.dataset)


class _Progress:
    """Progress reports: stage now running, and the share of work units done
    (baseline, each training episode, evaluation)."""

    def __init__(self, episodes: int, callback: ProgressCallback | None) -> None:
        self.units = episodes + 2
        self.episodes, self.callback = episodes, callback

    def report(self, stage: str, done: int, episode: int = 0) -> None:
        if self.callback is not None:
            percent = 100 if stage == "completed" else min(99, round(100 * done / self.units))
            self.callback({"percent": percent, "stage": stage, "episode": episode, "episodes": self.episodes})


def _change(value: float | None, ratio: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}{unit}" + ("" if ratio is None else f" ({(ratio - 1) * 100:+.1f}% vs no control)")


def run_experiment(
    config: SimulatorConfig,
    data: Dataset,
    *,
    log: logging.Logger,
    on_progress: ProgressCallback | None = None,
    tracker: MlflowRun | None = None,
    results_dir: Path | None = None,
    job_dir: Path | None = None,
) -> dict[str, Any]:
    """Baseline, training (learning algorithms), greedy evaluation; returns result.json's content.

    ``metrics`` depends only on the config and the data, so a seed reproduces it. As OPEVA's simulator
    does, the evaluated episode is exported to ``results_dir/simulation_data/<session>/`` (simulator/export.py)
    and the trained policy to ``job_dir/bundle/`` (simulator/bundle.py), each when its folder is given.
    """
    started = time.monotonic()
    episodes = config.episodes if config.learns else 0
    progress = _Progress(episodes, on_progress)
    progress.report("baseline", 0)
    log.info("Dataset %s", data.describe())
    for note in data.notes:
        log.warning("Dataset: %s", note)
    params = config.params.model_dump()
    log.info("Algorithm %s %s", config.algorithm, json.dumps(params) if params else "(no parameters)")
    if tracker:
        tracker.log_params(
            {"algorithm": config.algorithm, "dataset": data.name, "buildings": data.buildings, "chargers": data.chargers.count,
             "steps": data.steps, "episodes": episodes, "seed": config.seed, **params}
        )

    env = DistrictEnv(data)
    baseline_record = run_episode(env, NoControl(data))
    baseline = episode_metrics(data, baseline_record)
    log.info("Baseline (no control): electricity cost %.2f, peak %.2f kW", baseline["electricity_cost"], baseline["peak_demand"])

    controller = make_controller(config.algorithm, data, config.params, config.seed)
    curve = []
    for episode in range(1, episodes + 1):
        metrics = episode_metrics(data, run_episode(env, controller, train=True))
        curve.append(round(metrics["electricity_cost"], 6))
        epsilon = getattr(controller, "epsilon", None)
        log.info(
            "Episode %d/%d: electricity cost %.2f, peak %.2f kW, EV unmet %.2f kWh%s",
            episode, episodes, metrics["electricity_cost"], metrics["peak_demand"], metrics["ev_unmet_energy"],
            "" if epsilon is None else f", epsilon {epsilon:.3f}",
        )
        if tracker:
            tracker.log_metrics({f"train_{k}": v for k, v in metrics.items()} | {"epsilon": epsilon}, step=episode)
        progress.report("training", 1 + episode, episode)
    if not config.learns:
        log.info("%s does not learn: one evaluation episode", config.algorithm)

    progress.report("evaluation", 1 + episodes, episodes)
    final_record = baseline_record if config.algorithm == "no_control" else run_episode(env, controller)
    final = baseline if config.algorithm == "no_control" else episode_metrics(data, final_record)
    metrics = rounded(with_baseline(final, baseline))
    if tracker:
        tracker.log_metrics(metrics, step=episodes)

    summary = _summary(config, data, episodes, metrics)
    log.info("Result: %s", summary)
    exported = _export(results_dir, data, final_record, baseline_record, episodes, log) | _bundle(job_dir, config, data, controller, log)
    progress.report("completed", progress.units, episodes)
    return {
        **exported,
        "status": "completed",
        "summary": summary,
        "metrics": metrics,
        "baseline": rounded(baseline),
        "training_curve": curve,
        "algorithm": config.algorithm,
        "params": params,
        "dataset": data.name,
        "buildings": data.buildings,
        "steps": data.steps,
        "episodes": episodes,
        "seed": config.seed,
        "runtime_seconds": round(time.monotonic() - started, 3),
    }


def _export(results_dir: Path | None, data: Dataset, record: Any, baseline: Any, episode: int, log: logging.Logger) -> dict[str, Any]:
    """The simulation data export; a failure is logged and said in result.json, never fails the job."""
    if results_dir is None:
        return {}
    try:
        exported = export_session(results_dir, data, record, baseline, episode)
    except Exception as exc:
        log.warning("Simulation data not exported: %s: %s", type(exc).__name__, exc)
        return {"simulation_data_available": False}
    log.info("Simulation data exported: session %s, %d files", exported["simulation_data_session_default"], len(exported["simulation_data_files"]))
    return exported


def _bundle(job_dir: Path | None, config: SimulatorConfig, data: Dataset, controller: Any, log: logging.Logger) -> dict[str, Any]:
    """The policy bundle; like the data export, a failure is logged and said, never fails the job."""
    if job_dir is None:
        return {}
    try:
        exported = export_bundle(job_dir, config, data, controller)
    except Exception as exc:
        log.warning("Policy bundle not exported: %s: %s", type(exc).__name__, exc)
        return {"bundle_available": False}
    log.info("Policy bundle exported: %s/ (%s, %d files, manifest sha256 %s)", exported["bundle_dir"],
             exported["bundle_format"], exported["bundle_files"], exported["bundle_manifest_sha256"])
    return exported


def _summary(config: SimulatorConfig, data: Dataset, episodes: int, metrics: dict[str, Any]) -> str:
    return (
        f"{config.algorithm} on {data.name} ({data.buildings} buildings, {data.steps} steps), {episodes} training episodes: "
        f"electricity cost {_change(metrics['electricity_cost'], metrics['electricity_cost_vs_baseline'], ' $')}, "
        f"peak demand {_change(metrics['peak_demand'], metrics['peak_demand_vs_baseline'], ' kW')}, "
        f"EV energy unmet {metrics['ev_unmet_energy']:.2f} kWh"
    )


@dataclass(frozen=True)
class JobFiles:
    log: Path
    progress: Path
    result: Path


class UsageError(Exception):
    """The command line and the environment do not say where to read or write."""


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="OPEVA reference simulator. Reads the OPEVA_* environment set by the platform; "
        "the options below replace it when run by hand.",
    )
    parser.add_argument("--config", type=Path, help="experiment YAML (default: $OPEVA_CONFIG_PATH)")
    parser.add_argument("--out", type=Path, help="write simulator.log, progress.json and result.json here "
                        "(default: $OPEVA_LOG_FILE, $OPEVA_PROGRESS_FILE, $OPEVA_RESULT_FILE)")
    parser.add_argument("--data-dir", "--base-dir", type=Path, help="shared data root holding datasets/ (default: $OPEVA_DATA_DIR)")
    # upstream's command line (calof/opeva_simulator), so this image runs with a host's simulator_args
    parser.add_argument("--job_id", help="the job's id (default: $OPEVA_JOB_ID)")
    return parser.parse_args(argv)


def _job_files(out: Path | None) -> JobFiles:
    if out is not None:
        return JobFiles(out / "simulator.log", out / "progress.json", out / "result.json")
    names = ("OPEVA_LOG_FILE", "OPEVA_PROGRESS_FILE", "OPEVA_RESULT_FILE")
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        raise UsageError(f"{', '.join(missing)} not set: pass --out DIR to run by hand")
    return JobFiles(*(Path(os.environ[n]) for n in names))


def _open_log(path: Path) -> logging.Logger:
    path.parent.mkdir(parents=True, exist_ok=True)
    log = logging.getLogger(LOGGER_NAME)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    log.addHandler(handler)
    return log


def _read_config(path: Path | None) -> Any:
    if path is None:
        raise ConfigError("config", "no experiment config: set OPEVA_CONFIG_PATH or pass --config")
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError("config", f"{path} is not valid YAML: {exc}") from exc


def _bundle_parent(args: argparse.Namespace) -> Path | None:
    """Where ``bundle/`` goes: the ``--out`` folder by hand, else the job's folder (``OPEVA_JOB_DIR``)."""
    if args.out is not None:
        return args.out
    return Path(os.environ["OPEVA_JOB_DIR"]) if os.environ.get("OPEVA_JOB_DIR") else None


def _run(args: argparse.Namespace, files: JobFiles, log: logging.Logger) -> int:
    job_id = os.environ.get("OPEVA_JOB_ID") or args.job_id
    env_data_dir = os.environ.get("OPEVA_DATA_DIR")
    data_dir = args.data_dir or (Path(env_data_dir) if env_data_dir else None)
    config_path = args.config or (Path(os.environ["OPEVA_CONFIG_PATH"]) if os.environ.get("OPEVA_CONFIG_PATH") else None)
    log.info("Simulation started%s (config %s)", f" for job {job_id}" if job_id else "", config_path)

    def progress(data: dict[str, Any]) -> None:
        write_json_atomic(files.progress, data)

    tracker: MlflowRun | None = None

    def fail(message: str) -> None:
        if tracker:
            tracker.finish("FAILED")
        message = " ".join(message.split())  # one line, so it is the log's last
        log.error("%s", message)
        write_json_atomic(files.result, {"status": "failed", "summary": message, "metrics": {}})

    try:
        config = validate_config(_read_config(config_path), data_dir)
        data = load_data(config, data_dir)
        if os.environ.get("MLFLOW_TRACKING_URI"):
            tags = {"opeva.job_id": job_id} if job_id else {}  # how the platform finds the run (docs/mlflow.md)
            tracker = MlflowRun.start(os.environ["MLFLOW_TRACKING_URI"], config.experiment_name, job_id or config.run_name, log, tags=tags)
        result = run_experiment(config, data, log=log, on_progress=progress, tracker=tracker, results_dir=files.result.parent,
                                job_dir=_bundle_parent(args))
    except ConfigError as exc:
        fail(str(exc))
        return 2
    except DatasetError as exc:
        fail(f"dataset: {exc}")
        return 1
    except Exception as exc:  # the job must end with a readable [ERROR] line, whatever broke
        log.debug("%s", traceback.format_exc().rstrip())
        fail(f"simulation failed: {type(exc).__name__}: {exc}")
        return 1
    if tracker:
        result["mlflow_run_id"] = tracker.run_id
        tracker.log_artifact("result.json", json.dumps(result, indent=2, default=str).encode())
        tracker.finish()
    write_json_atomic(files.result, result)
    log.info("Simulation completed in %.1f s", result["runtime_seconds"])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        files = _job_files(args.out)
    except UsageError as exc:
        print(f"[ERROR] {exc}", file=sys.stderr)
        return 2
    log = _open_log(files.log)
    try:
        return _run(args, files, log)
    finally:
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()
