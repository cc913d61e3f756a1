"""Answer bodies of the job, config, host and ops routes, as the OPEVA clients read them.

Every route declares one of these as its ``response_model`` so ``/openapi.json``
says what an answer holds; :func:`errors` declares the error codes a route can
answer, all with the one error body ``{"detail": ...}``.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from api.models_notifications import NotificationFields  # last_email_notification / email_notifications[] (docs/notifications.md)
from api.responses_insight import EtaFields, FailureFields, JobInfoExtras, OrganizationFields, SlurmFields, StartFields
from core.states import OPEVA_STATES

JobStatus = Literal[OPEVA_STATES]  # type: ignore[valid-type]
JOB_ID = "0b7e6a0e-5a43-4a39-9a5e-6f0f3f0d9b11"


def _example(**example: Any) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]})


def _open_example(**example: Any) -> ConfigDict:
    """Bodies that pass through what a simulator wrote: any further keys are kept."""
    return ConfigDict(extra="allow", json_schema_extra={"examples": [example]})


class ErrorBody(BaseModel):
    model_config = _open_example(detail="no job with id 'x'", status="not_found", job_id="x")
    detail: str = Field(description="What was wrong.")


class ValidationErrorBody(BaseModel):
    model_config = _open_example(detail="limit: Input should be a valid integer", errors=[{"loc": ["query", "limit"], "msg": "Input should be a valid integer", "type": "int_parsing"}])
    detail: str
    errors: list[dict[str, Any]] = Field(default_factory=list, description="FastAPI's list form, when the request failed validation.")


_DESCRIPTIONS = {
    400: "Unsafe name or path (``..``, ``/``, absolute), or a body that cannot be parsed", 401: "Missing or wrong bearer token",
    403: "Not the owner (nor an admin), or a path leaving the data root", 404: "Unknown job, file or host",
    409: "The current state or an existing file forbids it", 413: "Request body over the size limit",
    422: "Invalid request or config", 503: "Prefect, Docker or MongoDB unreachable",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: each code with the error body it really answers."""
    if 413 in codes:  # a route with a body: bytes that are not JSON text answer 400
        codes = (400, *codes)
    return {c: {"model": ValidationErrorBody if c == 422 else ErrorBody, "description": _DESCRIPTIONS[c]} for c in sorted({*codes, 422, 503})}


def text_response(media_type: str, example: str, *extra: int) -> dict[int | str, dict[str, Any]]:
    # YAML is declared without a type: a client (schemathesis, say) may parse it into any value.
    schema = {"type": "string"} if media_type == "text/plain" else {"description": "YAML text"}
    return {200: {"content": {media_type: {"schema": schema, "example": example}}, "description": "Text"}, **errors(*extra)}


class YamlResponse(PlainTextResponse):
    """YAML text as stored, sent as text/yaml. The class declares no media type so FastAPI adds no
    ``{"type": "string"}`` schema: a client (schemathesis) parses YAML into any value, and the
    route's ``responses=text_response("text/yaml", ...)`` documents it."""

    media_type = None

    def __init__(self, content: str, status_code: int = 200, **kwargs: Any) -> None:
        super().__init__(content, status_code=status_code, media_type="text/yaml", **kwargs)


class PrefectState(BaseModel):
    type: str | None = Field(None, description="Prefect state type, e.g. SCHEDULED, RUNNING, COMPLETED.")
    name: str | None = Field(None, description="Prefect state name, e.g. Late, Running, Cancelled.")
    message: str | None = None


class JobSubmitted(BaseModel):
    model_config = _example(job_id=JOB_ID, status="queued", host="local", job_name="flex-demo-q1", image=None, image_tag="v0.2.5",
                            target_worker_profile=None, message="Job submitted")
    job_id: str
    status: JobStatus
    host: str
    job_name: str
    image: str | None = None
    image_tag: str | None = None
    target_worker_profile: str | None = Field(None, description="cpu or gpu when the host was chosen automatically by profile.")
    message: str = "Job submitted"


class JobStatusOut(FailureFields, SlurmFields, NotificationFields):
    model_config = _example(job_id=JOB_ID, status="running", worker_id="local", target_worker_profile=None, dispatched_image="opeva-runtime:0.1.0",
                            dispatched_image_tag=None, status_updated_at="2026-11-23T10:00:02+00:00", last_status_at="2026-11-23T10:00:02+00:00",
                            prefect_state={"type": "RUNNING", "name": "Running", "message": None}, host="local", job_name="flex-demo-q1")
    job_id: str
    status: JobStatus
    worker_id: str | None = Field(None, description="The host whose worker took the job (None while queued).")
    target_worker_profile: str | None = None
    dispatched_image: str | None = Field(None, description="The image the job runs (known once dispatched).")
    dispatched_image_tag: str | None = None
    status_updated_at: str | None = Field(None, description="When the current state began (ISO 8601, UTC).")
    last_status_at: str | None = Field(None, description="Latest state change, as status_updated_at.")
    prefect_state: PrefectState
    host: str | None
    job_name: str | None


class JobInfoBrief(BaseModel):
    model_config = ConfigDict(extra="allow")
    job_name: str | None = None
    submitted_by: str | None = None
    config_path: str | None = None
    target_host: str | None = None
    image: str | None = None
    image_tag: str | None = None


class JobItem(FailureFields, StartFields, OrganizationFields):
    """One job in ``GET /jobs``: the UI reads ``job_id``, ``status`` and ``job_info.job_name``."""

    model_config = _example(
        job_id=JOB_ID, status="finished", job_name="flex-demo-q1", host="local", kind="simulation",
        job_info={"job_name": "flex-demo-q1", "submitted_by": "alice", "config_path": "configs/flex.yaml", "target_host": "local", "image": None, "image_tag": None},
        prefect_state={"type": "COMPLETED", "name": "Completed", "message": None},
        submitted_at="2026-11-23T10:00:00+00:00", started_at="2026-11-23T10:00:02+00:00", finished_at="2026-11-23T10:01:00+00:00",
        queue_wait_seconds=2.0, run_duration_seconds=58.0, run_count=1, requeued_from=None,
    )
    job_id: str
    status: JobStatus
    job_name: str | None
    host: str | None
    kind: str | None = Field(None, description="simulation or dataset")
    job_info: JobInfoBrief
    prefect_state: PrefectState
    submitted_at: str | None = Field(None, description="ISO 8601, UTC")
    started_at: str | None = None
    finished_at: str | None = None
    queue_wait_seconds: float | None = None
    run_duration_seconds: float | None = None
    run_count: int = 0
    requeued_from: str | None = Field(None, description="The job this one requeued (POST /ops/jobs/{id}/requeue).")
    sweep_id: str | None = Field(None, description="The sweep this job is a trial of (GET /sweeps/{id}).")


class MlflowLink(BaseModel):
    """The job's run in the platform's MLflow server, found there by its ``opeva.job_id`` tag (docs/mlflow.md)."""

    available: bool = Field(description="False when MLflow is off, does not answer, or holds no run of this job yet.")
    reason: str | None = None
    run_id: str | None = None
    experiment_id: str | None = None
    run_name: str | None = None
    status: str | None = Field(None, description="MLflow's run status: RUNNING, FINISHED, FAILED, KILLED.")
    url: str | None = Field(None, description="The run's page in MLflow's UI (OPEVA_MLFLOW_UI_URL).")
    params: int | None = None
    metrics: int | None = None
    runs_with_this_tag: int | None = None


class JobInfoOut(JobInfoExtras, JobItem, NotificationFields):
    """``job_info.json`` as the job wrote it, over Prefect's view of the run."""

    model_config = ConfigDict(extra="allow")
    config_path: str | None = Field(None, description="The config file the user chose (configs/x.yaml); inline configs: the job's copy.")
    resolved_config_path: str | None = Field(None, description="The job's own copy it ran with (jobs/<id>/config.yaml).")
    target_host: str | None = None
    submitted_by: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    deployment_id: str | None = None
    infrastructure_pid: str | None = None
    job_variables: dict[str, Any] | None = None
    retries: int = 0
    labels: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    mlflow: MlflowLink | None = None


class ProgressOut(EtaFields):
    """The progress file as the simulator wrote it (its own ``status`` is ``simulator_status``)."""

    model_config = _open_example(job_id=JOB_ID, status="running", progress="episode 2/5", percent=40.0, progress_pct=40.0, stage="training", episode=2, step=100, global_step=300, simulator_status="running", source="file")
    job_id: str
    status: JobStatus = Field(description="The job's status (Prefect's), never the simulator's.")
    progress: str | None = Field(None, description="'No updates yet.' until the job wrote progress.")
    percent: float = 0
    progress_pct: float | None = None
    simulator_status: str | None = None
    source: Literal["file", "prefect-artifact", "none"] = "none"


class ResultOut(BaseModel):
    model_config = _open_example(status="completed", summary="done", metrics={"cost": 3.5})
    status: str = Field(description="'pending' with a message until the job wrote results/result.json.")
    message: Any = None


class LogsChunk(BaseModel):
    model_config = _example(job_id=JOB_ID, text="[INFO] Simulation started\n", next_offset=26, truncated=False, available=True, message=None)
    job_id: str
    text: str
    next_offset: int
    truncated: bool
    available: bool
    message: str | None = None


class Message(BaseModel):
    model_config = _example(message="Job canceled from queue")
    message: str


class JobMessage(BaseModel):
    model_config = _example(message="Stop requested; worker should terminate the job", job_id=JOB_ID, status="stop_requested")
    message: str
    job_id: str
    status: JobStatus


class RequeueOut(JobMessage):
    model_config = _example(message="Job requeued as a new run", job_id=JOB_ID, status="queued", previous_job_id="5d1c2c1e-6f6e-4b44-8f1f-0c3c6d2e9a77", host="local")
    previous_job_id: str
    host: str | None


class QueueItem(StartFields):
    model_config = _example(job_id=JOB_ID, job_name="flex-demo-q1", preferred_host="offline", require_host=True, enqueued_at="2026-11-23T10:00:00+00:00",
                            submitted_by="alice", target_worker_profile=None, queued_start_estimate=None, late=True, status="queued")
    job_id: str
    job_name: str | None
    preferred_host: str | None
    require_host: bool = Field(True, description="Always true: a job runs on the host (work pool) it was queued for.")
    enqueued_at: str | None
    submitted_by: str | None
    target_worker_profile: str | None = None
    late: bool = Field(description="Prefect's Late: its start time passed and no worker took it.")
    status: JobStatus


class CleanupOut(BaseModel):
    model_config = _example(removed=[JOB_ID], count=1, kept_active=["5d1c2c1e-6f6e-4b44-8f1f-0c3c6d2e9a77"])
    removed: list[str]
    count: int
    kept_active: list[str] = Field(default_factory=list, description="Active jobs that were left alone.")


class ConfigSaved(BaseModel):
    model_config = _example(message="Config saved", file="flex-demo.yaml", file_name="flex-demo.yaml", config_path="configs/flex-demo.yaml")
    message: str
    file: str
    file_name: str
    config_path: str


class ConfigView(BaseModel):
    model_config = _example(file_name="flex-demo.yaml", config={"metadata": {"experiment_name": "flex", "run_name": "q1"}}, yaml="metadata:\n  experiment_name: flex\n  run_name: q1\n")
    file_name: str
    config: Any = Field(description="The parsed YAML (null when it does not parse).")
    yaml: str


class HostRef(BaseModel):
    name: str
    host: str


class ActiveJob(SlurmFields):
    """One active job of a host, as energaize_ui's host card reads it (Slurm fields: null on Docker hosts)."""

    job_id: str
    job_name: str | None
    status: JobStatus
    phase: str | None = Field(None, description="queued, provisioning (dispatched, setup) or running.")
    queue_pos: int | None = Field(None, description="Position in the host's queue (queued jobs, 1 = next).")
    ahead: int | None = Field(None, description="Queued jobs ahead of this one on the host.")
    updated_at: str | None = None


class HostInfo(BaseModel):
    """The worker's report of a host (upstream's heartbeat ``info``), from Prefect's pool, workers and runs."""

    model_config = ConfigDict(extra="allow")
    executor: str | None = Field(None, description="docker or process (the work pool type).")
    worker_version: str | None = Field(None, description="Platform version the host's workers run (null with no worker online).")
    gpu_enabled: bool = False
    max_active_jobs: int | None = Field(None, description="The host's concurrency limit.")
    active_job_count: int = 0
    running_job_count: int = 0
    provisioning_job_count: int = Field(0, description="Dispatched or in setup.")
    active_job_ids: list[str] = Field(default_factory=list)
    active_jobs: list[ActiveJob] = Field(default_factory=list)
    last_job_id: str | None = Field(None, description="The job that ended last on this host.")
    last_terminal_status: JobStatus | None = None
    last_status_at: str | None = None


class HostDetail(BaseModel):
    model_config = ConfigDict(extra="allow")
    online: bool
    last_seen: float | None = Field(description="Epoch seconds of the newest worker heartbeat.")
    info: HostInfo = Field(default_factory=HostInfo)
    running: int
    queued: int
    active_job_ids: list[str]
    current_job_id: str | None
    current_job_status: JobStatus | None
    pool: str | None
    pool_type: str | None
    concurrency_limit: int | None
    workers: list[dict[str, Any]]
    gpus: dict[str, Any] | None = None
    message: str | None = None


_HOST_EXAMPLE = {
    "online": True, "last_seen": 1795000000.0,
    "info": {"executor": "docker", "worker_version": "0.1.0", "gpu_enabled": False, "max_active_jobs": 2, "active_job_count": 1,
             "running_job_count": 1, "provisioning_job_count": 0, "active_job_ids": [JOB_ID],
             "active_jobs": [{"job_id": JOB_ID, "job_name": "flex-demo-q1", "status": "running", "phase": "running", "updated_at": "2026-11-23T10:00:02+00:00"}],
             "last_job_id": None, "last_terminal_status": None, "last_status_at": None},
    "running": 1, "queued": 0, "active_job_ids": [JOB_ID], "current_job_id": JOB_ID, "current_job_status": "running", "pool": "local",
    "pool_type": "docker", "concurrency_limit": 2, "workers": [], "gpus": None, "message": None,
}


class HostsOut(BaseModel):
    """Today's shape (orchestrator d110b5f): host names as strings."""

    model_config = _example(available_hosts=["local"], hosts={"local": _HOST_EXAMPLE})
    available_hosts: list[str]
    hosts: dict[str, HostDetail]


class HostsOut2025(BaseModel):
    """ai-manager-ui's shape (served under /ai-manager-ui): hosts as ``{name, host}`` objects."""

    model_config = _example(available_hosts=[{"name": "local", "host": "local"}], hosts={"local": _HOST_EXAMPLE})
    available_hosts: list[HostRef]
    hosts: dict[str, HostDetail]


class ImageTag(BaseModel):
    name: str
    last_updated: str | None = Field(description="When the image was built (ISO 8601).")
    digest: str = Field(description="Registry digest, else the image id.")
    deucalion_ready: bool = Field(description="<repository>_sif:<tag> is present (upstream's Singularity image for HPC).")
    jetson_ready: bool = Field(description="A <tag>-jetson-* variant is present.")
    union_ready: bool = Field(description="A <tag>-union-* variant is present.")
    host: str = Field(description="The first host whose engine holds it.")
    hosts: list[str] = Field(description="Every host whose engine holds it: the hosts it runs on.")
    reference: bool = Field(False, description="The reference simulator (the platform's own image).")


class ImageVersions(BaseModel):
    model_config = _example(repository="calof/opeva_simulator", sif_repository="calof/opeva_simulator_sif",
                            tags=[{"name": "reference", "last_updated": "2026-11-20T08:00:00+00:00", "digest": "sha256:ab12", "deucalion_ready": False,
                                   "jetson_ready": False, "union_ready": False, "host": "local", "hosts": ["local"], "reference": True}],
                            count=1, cached=False, fetched_at="2026-11-23T10:00:00+00:00", hosts=["local"], reason=None)
    repository: str
    sif_repository: str
    tags: list[ImageTag]
    count: int
    cached: bool = Field(description="Answered from the engine listing cache (a few seconds old, or older while an engine is down).")
    fetched_at: str | None = Field(description="When the engines were read; null if never.")
    hosts: list[str] = Field(default_factory=list, description="Hosts that may run this repository.")
    reason: str | None = Field(None, description="Why tags may be missing: an engine down or out of reach, no host for the repository.")


class SimulationFile(BaseModel):
    relative_path: str
    size_bytes: int


class SimulationDataIndex(BaseModel):
    """``files`` are relative-path strings, as upstream answers (the maintainers' collector keeps
    only strings); sizes are in ``file_details``."""
    model_config = _example(job_id=JOB_ID, root_path=f"jobs/{JOB_ID}/results/simulation_data/2026-11-23", session="2026-11-23", sessions=["2026-11-23"],
                            files=["exported_data_community_ep0.csv", "exported_kpis.csv"],
                            file_details=[{"relative_path": "exported_kpis.csv", "size_bytes": 2048}], available_days=[])
    job_id: str
    root_path: str
    session: str
    sessions: list[str]
    files: list[str]
    file_details: list[SimulationFile]
    available_days: list[str]
