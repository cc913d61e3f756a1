"""Answer fields that help users plan: ETAs, start estimates, failure codes, storage, folders.

Kept apart from ``api/responses.py`` (which mixes these in) so the answer bodies of jobs stay
short there; every field here is computed by a ``core`` module named in its description.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FOLDER_ID = "6f1c2b7d9a0e4c3b8d5e7f9a1b2c3d4e"


class EtaOut(BaseModel):
    """``{available: false, reason}``, or the estimate (core/eta.py)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "available": True, "state": "running", "eta_seconds": 120.0, "estimated_finish_at": "2026-11-23T10:05:00+00:00",
        "elapsed_seconds": 80.0, "source": "progress_rate", "confidence": "medium", "progress_percent": 40.0, "current": 2,
        "total": 5, "unit": "episodes", "updated_at": "2026-11-23T10:03:00+00:00", "samples": 4}]})
    available: Literal[True]
    state: Literal["running", "stalled", "finishing", "finished"] | None = None
    eta_seconds: float | None = None
    estimated_finish_at: str | None = Field(None, description="ISO 8601, UTC")
    elapsed_seconds: float | None = None
    source: str | None = Field(None, description="progress_rate (the rate readings advance) or final_state.")
    confidence: Literal["low", "medium", "high"] | None = Field(
        None, description="low: under 3 readings, under 5 % done, or stalled; high: 5+ readings, 20 %+ done, a steady rate.")
    progress_percent: float | None = None
    current: float | None = None
    total: float | None = None
    unit: str | None = Field(None, description="percent, steps or episodes")
    updated_at: str | None = None


class EtaUnavailable(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"available": False, "reason": "the job has written no progress yet"}]})
    available: Literal[False]
    reason: str = Field(description="Why there is no estimate.")


class EtaFields(BaseModel):
    """What ``/progress`` adds to the progress file."""

    eta: EtaOut | EtaUnavailable | None = None
    eta_seconds: float | None = Field(None, description="eta.eta_seconds, when available.")
    estimated_finish_at: str | None = None
    eta_source: str | None = None
    eta_confidence: str | None = None


class StartEstimateOut(BaseModel):
    """When a queued job should start (core/queue_estimate.py)."""

    model_config = ConfigDict(extra="allow")
    available: bool
    kind: Literal["estimated_start"] = "estimated_start"
    reason: str
    source: str | None = Field(None, description="free_slot, running_eta (a running job's progress ETA) or host_history (usual run time).")
    target_host: str
    profile: str | None = None
    estimated_start_at: str | None = None
    estimated_start_seconds: float | None = None
    blocking_job_id: str | None = None
    queue_position: int | None = None


class StartFields(BaseModel):
    queued_start_estimate: StartEstimateOut | None = Field(None, description="Only for queued jobs.")
    estimated_start_at: str | None = None
    estimated_start_seconds: float | None = None


class SlurmFields(BaseModel):
    """The batch job as Slurm reports it, on Slurm hosts (null elsewhere): flows/slurm_run.py writes
    them into job_info.json; /status, /job-info and /hosts' active jobs carry them."""

    slurm_job_id: str | None = None
    slurm_state: str | None = None
    slurm_reason: str | None = None
    slurm_partition: str | None = None
    slurm_nodes: int | None = None
    slurm_cpus: int | None = None
    slurm_gpus: int | None = None


class FailureFields(BaseModel):
    """A failed (or stopped) job's failure, classified by core/failures.py; null otherwise."""

    error_code: str | None = Field(None, description="image_missing, image_refused, config_invalid, dataset_missing, out_of_memory, "
                                   "killed, timed_out, host_lost, stopped, marked_failed or simulator_error.")
    error_category: str | None = None
    error_hint: str | None = None


class Organization(BaseModel):
    folder_id: str | None = None
    archived: bool = False
    archived_at: str | None = None
    archived_by: str | None = None
    owner: str | None = Field(None, description="Who last organized the job.")
    updated_at: str | None = None


class OrganizationFields(BaseModel):
    organization: Organization = Field(default_factory=Organization, description="The job's folder and archive flag (PUT /job/{id}/folder, POST /job/{id}/archive).")


class StorageCategory(BaseModel):
    bytes: int
    file_count: int


class StorageInstalled(BaseModel):
    bytes: int
    file_count: int
    categories: dict[str, StorageCategory]


class StorageTransfer(BaseModel):
    bytes: int | None = Field(None, description="Bytes copied back from a remote host; null: none (the data root is shared).")


class ResultStorage(BaseModel):
    schema_version: int
    measured_at: str
    transfer: StorageTransfer = Field(default_factory=StorageTransfer)
    installed: StorageInstalled
    truncated: bool = False


class JobBundle(BaseModel):
    """The policy bundle the job's simulator exported (docs/bundles.md); read as untrusted (core/job_bundle.py)."""

    path: str = Field(description="The bundle's folder under the data root (jobs/<id>/bundle).")
    manifest_sha256: str = Field(description="sha256 of artifact_manifest.json as the platform read it.")
    files: int = Field(description="Files in the bundle by its manifest, the manifest included.")


class JobInfoExtras(FailureFields, StartFields):
    """What ``/job-info`` adds over a ``/jobs`` item."""

    queued_at: str | None = Field(None, description="When the job was submitted (ISO 8601, UTC).")
    total_duration_seconds: float | None = Field(None, description="From submission to the end (or now, while active).")
    result_storage: ResultStorage | None = None
    container_name: str | None = Field(None, description="The simulator's container (opeva-sim-<job_id>), once started.")
    supervisor_container_name: str | None = Field(None, description="The flow run's own container.")
    error_summary: str | None = Field(None, description="The line the failure was recognised by.")
    bundle: JobBundle | None = Field(None, description="The trained policy's bundle, when the job exported one.")
    stored_bundle_ids: list[str] = Field(default_factory=list, description=(
        "Bundles stored from this job (POST /deploy/bundles/from-job/{job_id}): GET /deploy/bundles lists them, switch-bundle serves one."))


class FolderOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"folder_id": FOLDER_ID, "name": "Q1 runs", "owner": "alice",
                                                               "created_at": "2026-11-23T10:00:00+00:00", "updated_at": "2026-11-23T10:00:00+00:00"}]})
    folder_id: str
    name: str
    owner: str
    created_at: str
    updated_at: str


class OrganizationOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"message": "Job archived", "job_id": "0b7e6a0e-5a43-4a39-9a5e-6f0f3f0d9b11",
                                                               "organization": {"folder_id": None, "archived": True,
                                                                                "archived_at": "2026-11-23T10:00:00+00:00", "archived_by": "alice"}}]})
    message: str
    job_id: str
    organization: Organization


class FolderDeleted(BaseModel):
    message: str
    folder_id: str
    moved_job_ids: list[str] = Field(default_factory=list, description="Jobs that were in it (now in no folder).")


def as_fields(estimate: dict[str, Any] | None) -> dict[str, Any]:
    """``queued_start_estimate`` and its two top-level copies."""
    if estimate is None:
        return {}
    return {"queued_start_estimate": estimate, "estimated_start_at": estimate.get("estimated_start_at"),
            "estimated_start_seconds": estimate.get("estimated_start_seconds")}
