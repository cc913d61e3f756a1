"""The simulation job: one Prefect flow run supervising one simulator container.

The flow is the supervisor: it runs in the runtime image (Prefect, the Docker
socket), owns job_info.json and the merged job log, and turns what the simulator
does into Prefect state, logs and artifacts. The simulator runs in a sibling
container (flows/sandbox.py says how and why): the user's image unchanged, or the
runtime image running the reference simulator, both the same way and both
unprivileged. Prefect holds state and retries: a retry starts a new container.
On process pools (no Docker) the reference simulator or a ``command`` runs as a
subprocess instead, without isolation; user images need a Docker host.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.logging.handlers import APILogWorker
from prefect.runtime import flow_run as current_run

from blocks.storage import load_storage
from core.dataset_lineage import record_job_dataset
from core.experiment import ExperimentConfigError, names_of, resolve_experiment
from core.containers import RUNTIME_IMAGE_ENV
from core.hosts import Host, job_limits, repository_of, simulator_limits
from core.job_io import chown_job_dir, read_json as read_job_json
from core.job_limits import error_message
from core.layout import DataRoot, JobPaths, write_json_atomic
from flows.phase import mark_phase, mark_setup
from flows.supervise import MirrorLimits, SubprocessSource, contract_env, mirror, prefect_log_backlog, subprocess_env

REFERENCE_COMMAND = ["python", "-m", "simulator"]
HOST_SETTINGS_ENV = "OPEVA_HOST_SETTINGS"  # the host's entry of the hosts file, JSON (set by deployments.setup)


class SimulatorFailed(RuntimeError):
    """The simulator exited non-zero; the message carries the tail of its output."""


def _resolve_config(
    storage: DataRoot, job: JobPaths, config: dict[str, Any] | None, config_path: str | None, save_as: str | None
) -> tuple[dict[str, Any], Path]:
    """The config the job runs and the file the simulator reads: the experiment contract
    (core.experiment.resolve_experiment), the same rules the REST API applies at submit."""
    resolved = resolve_experiment(storage, config=config, config_path=config_path, save_as=save_as, job_id=job.job_id)
    return resolved.config, resolved.path


def _host_settings(target_host: str) -> Host:
    raw = os.environ.get(HOST_SETTINGS_ENV)
    host = Host.model_validate_json(raw) if raw else Host(name=target_host)
    return host


def _choose_image(host: Host, image: str | None, image_tag: str | None) -> str | None:
    """The simulator image of a job; None means the reference simulator (runtime image)."""
    runtime = os.environ.get(RUNTIME_IMAGE_ENV) or host.image
    if image:
        if runtime and image == runtime:
            return None
        if not host.image_allowed(image):
            allowed = sorted(set(host.allowed_images) | ({host.simulator_image} if host.simulator_image else set()))
            raise ExperimentConfigError(
                "image", f"repository {repository_of(image)!r} is not allowed on host {host.name!r} (allowed: {allowed})"
            )
        return image
    if image_tag:
        if not host.simulator_image:
            raise ExperimentConfigError("image_tag", f"host {host.name!r} names no simulator_image for image_tag to complete")
        composed = f"{host.simulator_image}:{image_tag}"
        return None if runtime and composed == runtime else composed  # the runtime image's tag: the reference simulator
    return None


def _container_identity() -> tuple[str | None, str | None]:
    """The supervisor's container id and name when running in Docker.

    With ``network_mode: host`` the hostname is the host's, so the id is read from
    the container's own mounts; prefect-docker names the container after the run.
    """
    try:
        match = re.search(r"/containers/([0-9a-f]{64})/", Path("/proc/self/mountinfo").read_text())
    except OSError:
        match = None
    return (match.group(1), current_run.name) if match else (None, None)


def _container_name(client, container_id: str | None) -> str | None:
    if not container_id:
        return None
    try:
        return client.api.inspect_container(container_id)["Name"].lstrip("/")
    except Exception:  # the name is informative only
        return None


def _result_markdown(result: dict[str, Any]) -> str:
    metrics = result.get("metrics") if isinstance(result.get("metrics"), dict) else {}
    rows = "\n".join(f"| {k} | {v} |" for k, v in metrics.items()) or "| (none) | |"
    return (
        f"### Result: {result.get('status', 'unknown')}\n\n{result.get('summary') or ''}\n\n"
        f"| metric | value |\n|---|---|\n{rows}\n\n```json\n{json.dumps(result, indent=2, default=str)[:20000]}\n```\n"
    )


def _percent(data: dict[str, Any]) -> float | None:
    """``percent`` (the reference simulator, the OPEVA UI) or ``progress_pct`` (upstream's)."""
    for key in ("percent", "progress_pct"):
        try:
            return max(0.0, min(100.0, float(data[key])))
        except (KeyError, TypeError, ValueError):
            continue
    return None


# Set when the container's keeper (flows/container_entry.py) signals a cancellation (SIGUSR1).
_CANCELLED = threading.Event()


def _on_cancel(_signum: int, _frame: object) -> None:
    _CANCELLED.set()


def _end_cancelled(logger) -> None:
    """Leave without proposing any state: the run is already Cancelled, and anything the
    engine would propose now (Crashed for a signal, Failed for the killed simulator) would
    replace it. The simulator's container is already removed and the logs are shipped."""
    logger.info("[INFO] Stopped on request; the simulator's container is removed and the job's files are kept.")
    _flush_logs()
    os._exit(0)


LOG_DRAIN_SECONDS = 120  # the mirror keeps at most a few thousand records queued: seconds, not minutes


def _flush_logs() -> None:
    """Ship every queued log line now, so a client reading the logs at the final state has them all."""
    try:
        _, late = APILogWorker.drain_all(timeout=LOG_DRAIN_SECONDS)  # what APILogHandler.flush does outside an event loop
        if late:
            print(f"[WARNING] log records were still being shipped after {LOG_DRAIN_SECONDS} s", file=sys.stderr)
    except Exception as exc:  # a flush problem must not change the job's outcome
        print(f"[WARNING] could not flush the run's logs: {exc}", file=sys.stderr)


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
    image_tag: str | None = None,
    slurm: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run an experiment: ``config`` inline (kept as ``configs/<save_as>`` when given)
    or ``config_path`` relative to the shared data root. ``image`` (from the host's
    allow-list) or ``image_tag`` (of the host's ``simulator_image``) run a simulator
    image unchanged with the host's argument template; neither runs the reference
    simulator. ``command`` replaces the container's command (README, "Simulator contract").
    ``slurm``: sbatch options on a Slurm host (core/slurm.py; upstream's deucalion_options)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, _on_cancel)
    try:
        result = _run(config, config_path, save_as, job_name, submitted_by, target_host, command, image, image_tag, slurm)
    except BaseException:
        if _CANCELLED.is_set():
            _end_cancelled(get_run_logger())
        raise
    finally:
        _flush_logs()
    if _CANCELLED.is_set():
        _end_cancelled(get_run_logger())
    return result


def _run(config, config_path, save_as, job_name, submitted_by, target_host, command, image, image_tag, slurm=None) -> dict[str, Any]:
    logger = get_run_logger()
    job_id = str(current_run.id)
    mark_setup()  # until the simulator starts (core/states.py: the setup state)
    storage = load_storage()
    storage.ensure_layout()
    job = storage.job(job_id).create()
    attempt = current_run.run_count or 1
    host = _host_settings(target_host)

    cmd = shlex.split(command) if isinstance(command, str) else (list(command) if command else None)
    try:
        sim_image = _choose_image(host, image, image_tag)
        experiment, cfg_file = _resolve_config(storage, job, config, config_path, save_as)
        exp_name, run_name = names_of(experiment)
        if sim_image is None and cmd is None:
            from simulator.config import ConfigError, validate_config

            try:
                validate_config(experiment, storage.root)
            except ConfigError as exc:
                raise ExperimentConfigError(exc.field, str(exc)) from exc
    except ExperimentConfigError as exc:
        logger.error("[ERROR] %s", exc)
        raise

    supervisor_id, supervisor_name = _container_identity()
    name = job_name or current_run.name or f"{exp_name}-{run_name}"
    info = {
        "job_id": job_id,
        "job_name": name,
        "config_path": storage.relative(cfg_file),
        "target_host": target_host,
        "container_id": None, "container_name": None,  # the simulator's container, once made (_run_in_container)
        "supervisor_container_id": supervisor_id, "supervisor_container_name": supervisor_name,
        "experiment_name": exp_name,
        "run_name": run_name,
        "submitted_by": submitted_by,
        "image": sim_image,
        "image_tag": image_tag,
        "command": cmd,
        "attempt": attempt,
        "started_at": datetime.now(timezone.utc).isoformat(),
    }
    info["dataset"] = record_job_dataset(storage, job_id, experiment)  # lineage (core/dataset_lineage.py)
    write_json_atomic(job.job_info_file, info)
    if info["dataset"]:
        _lineage_artifact(storage, info["dataset"]["name"])

    progress_id = create_progress_artifact(progress=0.0, description=f"{name}: starting")

    def on_progress(data: dict) -> None:
        percent = _percent(data)
        if percent is None:
            return
        stage = data.get("stage") or data.get("status") or ""
        try:
            update_progress_artifact(progress_id, percent, description=f"{name}: {stage}".strip(": "))
        except Exception as exc:  # progress.json stays the truth; an API outage must not fail the job
            logger.warning("[WARNING] could not update the progress artifact: %s", exc)

    if host.kind == "slurm":  # flows/slurm_run.py: sbatch, followed until Slurm says it ended
        from flows.slurm_run import run_on_slurm

        run = run_on_slurm(host, job, storage, cfg_file, name, sim_image, cmd, info, logger, on_progress, _CANCELLED, slurm,
                           current_run.job_variables or {})
    elif (client := _engine()) is not None:
        run = _run_in_container(client, host, job, storage, cfg_file, name, sim_image, cmd, supervisor_id, info, logger, on_progress)
    else:
        run = _run_as_subprocess(host, job, storage, cfg_file, name, sim_image, cmd, logger, on_progress)

    if info["dataset"]:
        _log_dataset_to_mlflow(job_id, info["dataset"], info["started_at"], logger)
    result = _outcome(run, job, info)
    if isinstance(result, dict):
        create_markdown_artifact(_result_markdown(result), description=f"Result of {name}")
    else:
        logger.warning("[WARNING] the simulator wrote no results/result.json")
    update_progress_artifact(progress_id, 100.0, description=f"{name}: finished")
    return {"job_id": job_id, "result": result}


def _lineage_artifact(storage: DataRoot, dataset: str) -> None:
    """The dataset's versions and jobs as a markdown artifact keyed by the dataset: Prefect's UI
    shows its latest version under Artifacts, with the history of earlier ones."""
    from core.dataset_lineage import artifact_key, lineage_markdown

    create_markdown_artifact(lineage_markdown(storage, dataset), key=artifact_key(dataset), description=f"Lineage of dataset {dataset}")


def _log_dataset_to_mlflow(job_id: str, version: dict[str, Any], started_at: str, logger: Any) -> None:
    """The dataset version as an input of the job's MLflow run, when the platform runs MLflow
    and the simulator made a run; best effort: MLflow's absence never fails a job."""
    from core.mlflow_runs import MlflowUnavailable, log_dataset_input

    url = os.environ.get("OPEVA_MLFLOW_PLATFORM_URL")
    if not url:
        return
    not_before = int(datetime.fromisoformat(started_at).timestamp() * 1000) - 60_000  # clocks of two processes
    try:
        if run_id := log_dataset_input(url, job_id, version, not_before):
            logger.info("[INFO] MLflow run %s: input dataset %s@%s", run_id, version["name"], version["digest"][:12])
    except (MlflowUnavailable, ValueError) as exc:
        logger.warning("[WARNING] could not log the dataset to MLflow: %s", exc)


def _engine():
    from flows.sandbox import reachable_docker  # docker-py loads only where a run needs it

    return reachable_docker()


def _outcome(run, job: JobPaths, info: dict[str, Any]) -> Any:
    """The job's result.json (read as core.job_io reads any job file); SimulatorFailed with
    ``error_code=<code>: ...`` when it hit a limit, or its exit code and last lines."""
    result = read_job_json(job.dir, job.result_file.relative_to(job.dir))
    # The simulator merges its own keys into job_info.json (upstream: mlflow_run_id, ...): keep
    # them, read safely; the platform's own keys win over what the job wrote.
    written = read_job_json(job.dir, job.job_info_file.relative_to(job.dir))
    merged = {**(written if isinstance(written, dict) else {}), **info}
    write_json_atomic(job.job_info_file, {**merged, "error_code": run.error_code, "log": run.log_summary()})
    if run.error_code == "timed_out":  # Prefect's engine turns a TimeoutError into its own TimedOut state
        raise TimeoutError(error_message(run.error_code, f"{run.error_detail}{run.note or ''}"))
    if run.error_code:
        raise SimulatorFailed(error_message(run.error_code, f"{run.error_detail}{run.note or ''}"))
    if run.returncode != 0:
        tail = "\n".join(run.tail[-10:])
        raise SimulatorFailed(f"simulator exited with code {run.returncode}{run.note or ''}; last log lines:\n{tail}")
    return result


def _run_in_container(client, host, job, storage, cfg_file, name, sim_image, cmd, supervisor_id, info, logger, on_progress):
    """Start the simulator's sibling container and mirror it until it ends; always remove it."""
    from flows.job_network import mlflow_env, prepare_job
    from flows.sandbox import SimulatorContainer, SimulatorImageMissing, SimulatorSpec

    runtime_image = os.environ.get(RUNTIME_IMAGE_ENV) or host.image
    rel_cfg = storage.relative(cfg_file)
    job_in = f"{host.data_mount}/{storage.relative(job.dir)}"
    if sim_image is None:
        image, args = runtime_image, cmd or REFERENCE_COMMAND
    else:
        image = sim_image
        args = cmd or host.simulator_arguments(config_path=rel_cfg, job_id=job.job_id, job_name=name)
    limits = simulator_limits(host, current_run.job_variables or {})
    network, mlflow_dir = prepare_job(client, storage.root, job.dir, limits.pop("network"))
    bounds = job_limits(host, current_run.job_variables or {})  # every job has limits (core/job_limits.py)
    limits.update(bounds.create_kwargs())
    env = {
        **mlflow_env(limits["env"], network),
        **limits.pop("env"),
        **contract_env(job, data_dir=host.data_mount, job_dir=job_in, config_path=f"{host.data_mount}/{rel_cfg}", job_name=name),
        "HOME": "/tmp",
    }
    chown_job_dir(job, host.run_as)
    spec = SimulatorSpec(
        image=image, job_id=job.job_id, flow_run_id=str(current_run.id), host=host.name, data_root=str(storage.root),
        data_mount=host.data_mount, job_dir=str(job.dir), run_as=host.run_as, env=env, command=args, limits=limits,
        supervisor_id=supervisor_id, network=network, mlflow_dir=str(mlflow_dir),
    )
    logger.info("[INFO] Job %s (attempt %s) on host %s: image %s, args %s, network %s", job.job_id, info["attempt"], host.name, image, " ".join(args), network)
    def record(container_id: str) -> None:  # job_info names the container that runs the simulator
        supervisor = _container_name(client, supervisor_id)
        info.update(container_id=container_id, container_name=spec.name, supervisor_container_name=supervisor or info["supervisor_container_name"])
        write_json_atomic(job.job_info_file, info)
        chown_job_dir(job, host.run_as, only=job.job_info_file)  # upstream's image rewrites it in place (open "w")

    try:
        container = SimulatorContainer(client, spec, before_start=record)
    except SimulatorImageMissing as exc:
        logger.error("[ERROR] %s", exc)
        raise
    write_json_atomic(job.dir / "container.json", {"simulator_container_id": container.id, "name": spec.name, "image": image})
    mark_phase("running")
    try:
        run = mirror(container, job=job, logger=logger, on_progress=on_progress, should_stop=_CANCELLED.is_set,
                     limits=MirrorLimits.of(bounds),
                     pids=container.pids, backlog=prefect_log_backlog)
        if not _CANCELLED.is_set():
            container.settle_oom_mark()
        if container.oom_killed and not run.error_code:
            run.error_code, run.error_detail = "out_of_memory", f"the simulator went over its memory limit ({bounds.memory} bytes) and was killed"
        if container.wait_error:
            run.note = f" ({container.wait_error})"
        if container.oom_killed:  # core/failures.py reads this mark as out_of_memory
            run.note = f"{run.note or ''} (OOMKilled: the container ran out of memory)"
        return run
    finally:
        container.stop_and_remove()


def _run_as_subprocess(host, job, storage, cfg_file, name, sim_image, cmd, logger, on_progress):
    """Process pools have no Docker: only the reference simulator or a command, unisolated."""
    if sim_image is not None:
        raise ExperimentConfigError("image", f"host {host.name!r} runs jobs as processes (no Docker): simulator images need a Docker host")
    args = cmd or [sys.executable, "-m", "simulator"]
    env = subprocess_env(
        contract_env(job, data_dir=str(storage.root), job_dir=str(job.dir), config_path=str(cfg_file), job_name=name)
    )
    logger.info("[INFO] Job %s on host %s (process): %s", job.job_id, host.name, " ".join(args))
    source = SubprocessSource(args, env, cwd=str(Path(__file__).resolve().parent.parent))
    mark_phase("running")
    try:
        bounds = job_limits(host, current_run.job_variables or {})
        return mirror(source, job=job, logger=logger, on_progress=on_progress, should_stop=_CANCELLED.is_set,
                      limits=MirrorLimits.of(bounds), backlog=prefect_log_backlog)
    finally:
        source.stop()
