"""The answers of ``/deploy/inferences*`` in upstream's shapes (OPEVA_UPSTREAM.md §5)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class InferenceTargetOut(BaseModel):
    id: str
    name: str
    base_url: str = Field(description="http(s)://... of an external target; unix:<socket> of one the platform runs.")
    container_name: str | None = Field(description="The platform's container of the target (null: external).")
    bundle_mount_path: str = Field(description="Where the target sees the bundle store.")
    host: str = Field(description="The hosts.yaml host the target is declared under.")
    kind: Literal["platform", "external"]


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
