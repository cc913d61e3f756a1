"""Request and answer bodies of the OPEVA REST API (field names as the OPEVA UI sends them)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.layout import safe_name

_MEMORY = re.compile(r"[0-9]+(\.[0-9]+)?[bkmgBKMG]?")
# Used as pydantic `pattern`s (Rust regex: `$` is the very end, a trailing newline is refused).
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")

EXAMPLE_CONFIG = {"experiment": {"name": "flex-demo", "run_name": "q-learning-1"}, "algorithm": {"name": "q_learning"}, "episodes": 5, "seed": 1}
FILE_NAME_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9_-]|\.[A-Za-z0-9_-])*\.?$"  # a safe_name: no "..", no "/"
CONFIG_FILE_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9_-]|\.[A-Za-z0-9_-])*\.ya?ml$"  # a safe_name ending .yaml/.yml


MIN_MEMORY_BYTES = 6 << 20
MAX_MEMORY_BYTES = 1 << 40
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def memory_bytes(value: str) -> float:
    """'512m' -> 536870912.0 (Docker's units, binary); the pattern was checked before."""
    unit = value[-1].lower() if value[-1].isalpha() else ""
    return float(value[: len(value) - len(unit)]) * _UNITS[unit]


class ResourceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    cpus: float | None = Field(None, gt=0, le=1024, description="CPU cores for the job's container (Docker nano_cpus).")
    memory: str | None = Field(None, max_length=32, description="Memory limit in Docker notation, e.g. '2g' or '512m' (6m to 1024g).")
    gpus: int | None = Field(None, ge=-1, le=64, description="GPUs to request; -1 for all.")
    # Lower the host's limits (hosts.yaml `limits:`) for this job; over the host's: 422 (docs/security.md)
    pids: int | None = Field(None, ge=16, le=1_000_000, description="Processes and threads of the job.")
    nofile: int | None = Field(None, ge=64, le=1_048_576, description="Open files per process.")
    log_bytes: int | None = Field(None, ge=1024, le=1 << 40, description="Log bytes mirrored; past it a marker.")
    disk_bytes: int | None = Field(None, ge=1 << 20, le=1 << 50, description="Bytes in the job's folder; over it: error_code disk_limit.")
    wall_seconds: int | None = Field(None, ge=1, le=366 * 86400, description=(
        "Run time of the simulator; over it the job is stopped: error_code timed_out, state TimedOut (a 'timed_out' notification)."))

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str | None) -> str | None:
        if v is not None and not _MEMORY.fullmatch(v):
            raise ValueError("memory must look like '512m' or '2g'")
        if v is not None and not MIN_MEMORY_BYTES <= memory_bytes(v) <= MAX_MEMORY_BYTES:
            raise ValueError("memory must be between 6m (Docker's least) and 1024g")
        return v


class RunSimulationRequest(BaseModel):
    """Exactly one of ``config`` (inline) and ``config_path`` (``x.yaml`` under configs/, or ``configs/x.yaml``)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            # exactly one of config / config_path (the other absent or null); save_as only with config
            "oneOf": [
                {"required": ["config"], "properties": {"config": {"type": "object"}, "config_path": {"type": "null"}}},
                {"required": ["config_path"], "properties": {"config_path": {"type": "string"}, "config": {"type": "null"}, "save_as": {"type": "null"}}},
            ],
            "examples": [
                {"config": EXAMPLE_CONFIG, "save_as": "flex-demo.yaml", "target_host": "local", "job_name": "flex-demo-1", "submitted_by": "alice"},
                {"config_path": "ui_demo.yaml", "image_tag": "v0.2.5", "target_worker_profile": "cpu"},
                {"config_path": "configs/flex-demo.yaml", "target_host": "local", "retries": 1, "resources": {"cpus": 2, "memory": "4g"}},
            ]
        },
    )

    config: dict[str, Any] | None = Field(None, description="Inline experiment config (YAML as JSON).")
    config_path: str | None = Field(None, min_length=1, max_length=1024, description="A file name under configs/ (ui_demo.yaml) or a path relative to the shared data root (configs/x.yaml).")
    save_as: str | None = Field(None, pattern=FILE_NAME_PATTERN, max_length=128, description="Also keep an inline config as configs/<save_as> (never over a different file: 409).")
    target_host: str | None = Field(None, max_length=63, description="Compute host (a work pool) to run on; absent or empty: automatic selection (a host with a worker online, of the target_worker_profile).")
    job_name: str | None = Field(None, max_length=200, description="Display name; default metadata.experiment_name-metadata.run_name, else experiment.name-experiment.run_name.")
    submitted_by: str | None = Field(None, max_length=200)
    image_tag: str | None = Field(None, max_length=1024, description="Tag of the host's simulator image to run: [A-Za-z0-9_][A-Za-z0-9_.-]*, at most 128 characters (else 400).")
    image: str | None = Field(None, max_length=255, pattern=_IMAGE.pattern, description="Full simulator image reference (older clients).")
    deucalion_options: dict[str, Any] | None = Field(None, description="Options for HPC (Deucalion) runs: on a Slurm host, its sbatch options (as `slurm`); recorded with the job.")
    slurm: dict[str, Any] | None = Field(None, description="sbatch options on a Slurm host: partition, time, cpus_per_task, mem_gb, gpus, account, modules (docs/slurm.md).")
    target_worker_profile: str | None = Field(None, max_length=16, description="cpu or gpu: the kind of host to choose; only with automatic host selection (else 400).")
    command: list[str] | None = Field(None, min_length=1, max_length=256, description="Simulator command; default the reference simulator.")
    resources: ResourceRequest | None = None
    retries: int = Field(0, ge=0, le=10, description="Prefect flow retries for this job.")

    @model_validator(mode="after")
    def _one_config(self) -> "RunSimulationRequest":
        if (self.config is None) == (self.config_path is None):
            raise ValueError("give exactly one of 'config' (inline) and 'config_path'")
        if self.save_as is not None and self.config is None:
            raise ValueError("'save_as' only applies to an inline 'config'")
        return self

    @field_validator("save_as", mode="before")
    @classmethod
    def _save_as(cls, v: Any) -> Any:
        return safe_name(v, what="save_as") if isinstance(v, str) else v


ONE_OF_CONTENT = [{"required": ["yaml_content"]}, {"required": ["config"]}]


class _ConfigBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    yaml_content: str = Field(None, max_length=4_000_000, description="The config as YAML text (what the OPEVA UI sends).")  # type: ignore[assignment]  # absent, never null
    config: dict[str, Any] | str = Field(None, description="The config as an object (or YAML text).")  # type: ignore[assignment]

    @model_validator(mode="after")
    def _one(self) -> "_ConfigBody":
        if (self.yaml_content is None) == (self.config is None):
            raise ValueError("give exactly one of 'yaml_content' (YAML text) and 'config'")
        return self

    @property
    def content(self) -> dict[str, Any] | str:
        return self.yaml_content if self.yaml_content is not None else self.config  # type: ignore[return-value]


class ConfigCreateRequest(_ConfigBody):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"oneOf": ONE_OF_CONTENT, "examples": [{"file_name": "flex-demo.yaml", "config": EXAMPLE_CONFIG},
                                        {"file_name": "ui_demo.yaml", "yaml_content": "metadata:\n  experiment_name: demo\n  run_name: r1\n"},
                                        {"file_name": "raw.yaml", "config": "experiment:\n  name: demo\n  run_name: r1\n", "overwrite": True}]},
    )

    file_name: str = Field(pattern=CONFIG_FILE_PATTERN, max_length=128, description="Plain file name ending in .yaml or .yml.")
    overwrite: bool = Field(False, description="Replace an existing file of that name (else 409).")

    @field_validator("file_name", mode="before")
    @classmethod
    def _file_name(cls, v: Any) -> Any:
        """Before the pattern check, so the message says what is wrong in words."""
        if isinstance(v, str):
            safe_name(v, what="file_name")
            if not v.endswith((".yaml", ".yml")):
                raise ValueError("file_name must end with .yaml or .yml")
        return v


class ConfigUpdateRequest(_ConfigBody):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"oneOf": ONE_OF_CONTENT, "examples": [{"yaml_content": "metadata:\n  experiment_name: demo\n  run_name: r2\n"}, {"config": EXAMPLE_CONFIG}]})


def _ops_model(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [example]})


class RequeueRequest(BaseModel):
    model_config = _ops_model({"force": False, "preferred_host": "local"})
    force: bool = Field(False, description="Also requeue an active job (it is cancelled first).")
    preferred_host: str | None = Field(None, max_length=63, description="Host for the new run; default the job's own.")
    require_host: bool | None = Field(None, description="Accepted for the upstream clients; a run always stays on its host.")


class FailRequest(BaseModel):
    model_config = _ops_model({"reason": "stuck after a host reboot", "force": False})
    reason: str | None = Field(None, max_length=2000)
    force: bool = Field(False, description="Also mark a finished job failed.")


class CancelRequest(BaseModel):
    model_config = _ops_model({"reason": "not needed any more", "force": False})
    reason: str | None = Field(None, max_length=2000)
    force: bool = Field(False, description="Also cancel a running or finished job at once (without waiting for its container).")


class OpsStopRequest(BaseModel):
    model_config = _ops_model({"reason": "operator stop"})
    reason: str | None = Field(None, max_length=2000)


class QueueCleanupRequest(BaseModel):
    model_config = _ops_model({"force": False})
    force: bool = Field(False, description="Cancel every queued job, not only those that can never start.")


class JobsCleanupRequest(BaseModel):
    model_config = _ops_model({"keep": [], "only": None, "older_than_seconds": 86400})
    keep: list[str] = Field(default_factory=list, max_length=10_000, description="Job ids to keep.")
    only: list[str] | None = Field(None, max_length=10_000, description="Consider only these job ids (default: every job).")
    older_than_seconds: float | None = Field(None, ge=0, description="Only jobs that ended at least this long ago.")


class SimulationDataIndexRequest(BaseModel):
    model_config = _ops_model({"job_id": "0b7e6a0e-5a43-4a39-9a5e-6f0f3f0d9b11", "session": "latest"})
    job_id: str = Field(max_length=64)
    session: str = Field("latest", max_length=128, description="A folder under results/simulation_data/, or 'latest'.")


class SimulationDataFileRequest(BaseModel):
    model_config = _ops_model({"job_id": "0b7e6a0e-5a43-4a39-9a5e-6f0f3f0d9b11", "session": "latest", "relative_path": "building_1.csv"})
    job_id: str = Field(max_length=64)
    session: str = Field("latest", max_length=128)
    relative_path: str = Field(min_length=1, max_length=1024, description="A file under the session folder; '..' is refused (400).")
