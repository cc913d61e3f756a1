"""The simulation job: one Prefect flow run, one container, one simulator subprocess.

The flow owns the OPEVA job files (job_info.json and the job log) and mirrors
the simulator's log lines, progress and result into Prefect, so both the OPEVA
REST API and the Prefect UI show the same job. Prefect holds state and retries:
a retry re-runs the simulator in the same container (the run's
``empirical_policy.retries``, set per job by the REST API).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.runtime import flow_run as current_run

from blocks.storage import load_storage
from core.layout import DataRoot, JobPaths, read_json, write_json_atomic
from core.experiment import ExperimentConfigError, check_experiment, default_experiment
from flows.supervise import simulator_env, supervise

REFERENCE_SIMULATOR = [sys.executable, "-m", "simulator"]


class SimulatorFailed(RuntimeError):
    """The simulator exited non-zero; the message carries the tail of its log."""


def _resolve_config(
    storage: DataRoot, job: JobPaths, config: dict[str, Any] | None, config_path: str | None, save_as: str | None
) -> tuple[dict[str, Any], Path]:
    """Load or store the experiment config and return it with the file the simulator reads."""
    if config is not None and config_path:
        raise ExperimentConfigError("config", "give either 'config' or 'config_path', not both")
    if config_path:
        path = storage.resolve(config_path, what="config_path")
        if not path.is_file():
            raise ExperimentConfigError("config_path", f"no config file at {config_path!r} under the shared data root")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ExperimentConfigError("config_path", f"{config_path!r} is not valid YAML: {exc}") from exc
        return check_experiment(loaded), path
    data = check_experiment(config if config is not None else default_experiment())
    path = storage.config_file(save_as) if save_as else job.config_file
    text = yaml.safe_dump(data, sort_keys=False)
    if path.exists() and path.read_text() != text and save_as:
        # A retry re-enters here with the same text; a different file is someone else's.
        raise ExperimentConfigError("save_as", f"configs/{save_as} already exists with other content")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return data, path


def _container_identity() -> tuple[str | None, str | None]:
    """The container's id and name when running in Docker.

    With ``network_mode: host`` the hostname is the host's, so the id is read from
    the container's own mounts; prefect-docker names the container after the run.
    """
    try:
        match = re.search(r"/containers/([0-9a-f]{64})/", Path("/proc/self/mountinfo").read_text())
    except OSError:
        match = None
    return (match.group(1), current_run.name) if match else (None, None)


def _result_markdown(result: dict[str, Any]) -> str:
    metrics = result.get("metrics") or {}
    rows = "\n".join(f"| {k} | {v} |" for k, v in metrics.items()) or "| (none) | |"
    return (
        f"### Result: {result.get('status', 'unknown')}\n\n{result.get('summary', '')}\n\n"
        f"| metric | value |\n|---|---|\n{rows}\n\n```json\n{json.dumps(result, indent=2, default=str)[:20000]}\n```\n"
    )


@flow(name="run-simulation", persist_result=False, log_prints=True)
def run_simulation(
    config: dict[str, Any] | None = None,
    config_path: str | None = None,
    save_as: str | None = None,
    job_name: str | None = None,
    submitted_by: str | None = None,
    target_host: str = "local",
    command: list[str] | str | None = None,
    image: str | None = None,
) -> dict[str, Any]:
    """Run an experiment: ``config`` inline (kept as ``configs/<save_as>`` when given)
    or ``config_path`` relative to the shared data root; neither runs the default
    experiment of the reference simulator. ``command`` replaces the reference
    simulator (see README, "Simulator contract")."""
    logger = get_run_logger()
    job_id = str(current_run.id)
    storage = load_storage()
    storage.ensure_layout()
    job = storage.job(job_id).create()
    attempt = current_run.run_count or 1

    cmd = shlex.split(command) if isinstance(command, str) else list(command or REFERENCE_SIMULATOR)
    experiment, cfg_file = _resolve_config(storage, job, config, config_path, save_as)
    if cmd == REFERENCE_SIMULATOR:
        from simulator.config import ConfigError, validate_config

        try:
            validate_config(experiment, storage.root)
        except ConfigError as exc:
            raise ExperimentConfigError(exc.field, str(exc)) from exc

    exp = experiment["experiment"]
    container_id, container_name = _container_identity()
    info = {
        "job_id": job_id,
        "job_name": job_name or current_run.name,
        "config_path": storage.relative(cfg_file),
        "target_host": target_host,
        "container_id": container_id,
        "container_name": container_name,
        "experiment_name": exp["name"],
        "run_name": exp["run_name"],
        "submitted_by": submitted_by,
        "image": image,
        "command": cmd,
        "attempt": attempt,
        "started_at": datetime.now(timezone.utc).isoformat(),
    }
    write_json_atomic(job.job_info_file, info)
    logger.info("[INFO] Job %s (attempt %s) on host %s: %s", job_id, attempt, target_host, " ".join(cmd))

    progress_id = create_progress_artifact(progress=0.0, description=f"{info['job_name']}: starting")

    def on_progress(data: dict) -> None:
        try:
            percent = max(0.0, min(100.0, float(data.get("percent", 0))))
        except (TypeError, ValueError):
            return
        stage = data.get("stage") or ""
        try:
            update_progress_artifact(progress_id, percent, description=f"{info['job_name']}: {stage}".strip(": "))
        except Exception as exc:  # progress.json stays the truth; an API outage must not fail the job
            logger.warning("[WARNING] could not update the progress artifact: %s", exc)

    env = simulator_env(job, data_dir=storage.root, config_path=cfg_file)
    run = supervise(cmd, env=env, job=job, logger=logger, on_progress=on_progress, cwd=str(Path(__file__).resolve().parent.parent))

    result = read_json(job.result_file)
    if run.returncode != 0:
        tail = "\n".join(run.tail[-10:])
        raise SimulatorFailed(f"simulator exited with code {run.returncode}; last log lines:\n{tail}")
    if isinstance(result, dict):
        create_markdown_artifact(_result_markdown(result), description=f"Result of {info['job_name']}")
    else:
        logger.warning("[WARNING] the simulator wrote no results/result.json")
    update_progress_artifact(progress_id, 100.0, description=f"{info['job_name']}: finished")
    return {"job_id": job_id, "result": result}
