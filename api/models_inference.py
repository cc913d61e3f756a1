"""The answers of ``/deploy/inferences*`` in upstream's shapes (OPEVA_UPSTREAM.md §5)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.inference_registry import RegisteredTarget


class InferenceTargetOut(BaseModel):
    id: str
    name: str
    base_url: str = Field(description="http(s)://... of an external target; unix:<socket> of one the platform runs.")
    container_name: str | None = Field(description="The platform's container of the target (null: external).")
    bundle_mount_path: str = Field(description="Where the target sees the bundle store.")
    host: str = Field(description="The hosts.yaml host the target is declared under.")
    kind: Literal["platform", "external"]


class InferenceTargetIn(RegisteredTarget):
    """A target made through the API: hosts.yaml's fields and bounds (core.hosts.InferenceTargetSpec)
    plus its host. Without ``base_url`` the platform runs it (``memory``/``cpus``/``pids`` bound its
    container, which sees the bundle store at /bundles); with one it is external and takes no limits."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"id": "site-b", "name": "Site B inference", "host": "local", "memory": "256m", "cpus": 1, "pids": 64},
        {"id": "site-c", "name": "Site C (external)", "host": "local", "base_url": "http://10.0.0.7:8080", "bundle_mount_path": "/bundles"},
    ]})
    base_url: str | None = Field(None, max_length=500, pattern=r"^https?://[^\s]+$", description="External target's URL; null: the platform runs it.")
    bundle_mount_path: str = Field("/bundles", max_length=200, pattern=r"^/[A-Za-z0-9._/-]*$",
                                   description="External target: where that service sees the bundle store. A platform target's is /bundles.")

    @model_validator(mode="after")
    def _kind_fields(self) -> "InferenceTargetIn":
        if self.base_url is not None:
            limits = sorted({"memory", "cpus", "pids"} & self.model_fields_set)
            if limits:
                raise ValueError(f"{', '.join(limits)}: limits of a platform target's container; an external target (base_url) takes none")
            if ".." in self.bundle_mount_path.split("/"):
                raise ValueError("bundle_mount_path must not contain '..'")
        elif "bundle_mount_path" in self.model_fields_set and self.bundle_mount_path != "/bundles":
            raise ValueError("bundle_mount_path is an external target's (with base_url); a platform target sees the bundle store at /bundles")
        return self


class InferenceHealthOut(InferenceTargetOut):
    model_config = ConfigDict(extra="allow")
    reachable: bool
    configured: bool = Field(description="A bundle is loaded.")
    healthy: bool
    active_manifest_path: str | None
    active_bundle_id: str | None = Field(None, description="The bundle the target serves (its /health's bundle_id).")
    raw: dict[str, Any] | None = Field(None, description="The target's own /health answer.")
    error: str | None = Field(None, description="Why the target did not answer (when not reachable).")


class SwitchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"bundle_id": "3f2a9c0d4b1e7a65"}]})
    bundle_id: str = Field(min_length=1, max_length=64)


class SwitchOut(BaseModel):
    status: Literal["switched"] = "switched"
    target_id: str
    bundle_id: str
    requested_manifest_path: str
    load_response: dict[str, Any] | None = Field(description="The target's answer to POST /admin/load.")
    health: InferenceHealthOut
    flow_run_id: str = Field(description="The Prefect flow run of deploy-bundle/control that did the switch.")
    flow_run_name: str
    duration_seconds: float


class LogLine(BaseModel):
    ts: str
    text: str
    source: str = Field(description="docker:<container name>")


class LogChunkOut(BaseModel):
    target_id: str
    since_ts: str | None
    until_ts: str | None
    lines: list[LogLine]
    next_cursor: str | None
    prev_cursor: str | None
    has_more_before: bool
    has_more_after: bool
    available: bool
    message: str | None
