"""Request and answer bodies of the OPEVA REST API (field names as the OPEVA UI sends them)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.layout import safe_name

_MEMORY = re.compile(r"[0-9]+(\.[0-9]+)?[bkmgBKMG]?")
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}")

EXAMPLE_CONFIG = {"experiment": {"name": "flex-demo", "run_name": "q-learning-1"}, "algorithm": {"name": "q_learning"}, "episodes": 5, "seed": 1}


class ResourceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpus: float | None = Field(None, gt=0, le=1024, description="CPU cores for the job's container (Docker nano_cpus).")
    memory: str | None = Field(None, description="Memory limit in Docker notation, e.g. '2g' or '512m'.")
    gpus: int | None = Field(None, ge=-1, le=64, description="GPUs to request; -1 for all.")

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str | None) -> str | None:
        if v is not None and not _MEMORY.fullmatch(v):
            raise ValueError("memory must look like '512m' or '2g'")
        return v


class RunSimulationRequest(BaseModel):
    """Exactly one of ``config`` (inline, kept as ``configs/<save_as>`` when given) and ``config_path``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"config": EXAMPLE_CONFIG, "save_as": "flex-demo.yaml", "target_host": "local", "job_name": "flex-demo-1", "submitted_by": "alice"},
                {"config_path": "configs/flex-demo.yaml", "target_host": "local", "retries": 1, "resources": {"cpus": 2, "memory": "4g"}},
            ]
        },
    )

    config: dict[str, Any] | None = Field(None, description="Inline experiment config (YAML as JSON).")
    config_path: str | None = Field(None, max_length=1024, description="Config file relative to the shared data root, e.g. configs/x.yaml.")
    save_as: str | None = Field(None, description="File name under configs/ for an inline config.")
    target_host: str = Field("local", description="Compute host (a work pool) to run on.")
    job_name: str | None = Field(None, max_length=200, description="Display name; default <experiment.name>-<experiment.run_name>.")
    submitted_by: str | None = Field(None, max_length=200)
    image_tag: str | None = Field(None, max_length=128, description="Tag of the runtime image to use (same repository).")
    image: str | None = Field(None, description="Full image reference; must be built FROM the runtime image.")
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

    @field_validator("save_as")
    @classmethod
    def _save_as(cls, v: str | None) -> str | None:
        return None if v is None else safe_name(v, what="save_as")

    @field_validator("image", "image_tag")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is not None and not _IMAGE.fullmatch(v):
            raise ValueError("not a valid image reference")
        return v


class JobSubmitted(BaseModel):
    job_id: str
    status: str
    host: str
    job_name: str
    message: str = "Job submitted"


class ConfigCreateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"file_name": "flex-demo.yaml", "config": EXAMPLE_CONFIG}, {"file_name": "raw.yaml", "config": "experiment:\n  name: demo\n  run_name: r1\n", "overwrite": True}]},
    )

    file_name: str = Field(description="Plain file name ending in .yaml or .yml.")
    config: dict[str, Any] | str = Field(description="The config as an object, or YAML text.")
    overwrite: bool = Field(False, description="Replace an existing file of that name.")

    @field_validator("file_name")
    @classmethod
    def _file_name(cls, v: str) -> str:
        safe_name(v, what="file_name")
        if not v.endswith((".yaml", ".yml")):
            raise ValueError("file_name must end with .yaml or .yml")
        return v
