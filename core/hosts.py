"""The hosts file as pydantic models: the one list of compute hosts.

The REST API (`/hosts`, `target_host` checks), the deployment set-up, the
simulation flow (which starts the simulator's container) and `make up` all read
it through :func:`load_hosts`. A host says which simulator images may run there
and how (arguments, mount point, environment, user, limits); :func:`simulator_limits`
is the one place where a host's defaults and a job's own resources meet.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.engines import DockerTLS
from core.job_limits import Effective, JobLimits, effective
from core.slurm import SlurmSettings

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HOST_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
CONTROL_POOL = "control"  # the process pool of flows that start other runs (sweeps, bundle switches): never a host's name


class GpuRequest(BaseModel):
    """Becomes a Docker ``device_requests`` entry (``{"--gpus": "all"}`` is not a Docker API field)."""

    model_config = ConfigDict(extra="forbid")
    count: int | None = Field(None, description="-1 for all GPUs")
    device_ids: list[str] | None = None
    driver: str = "nvidia"

    def device_request(self) -> dict[str, Any]:
        req: dict[str, Any] = {"Driver": self.driver, "Capabilities": [["gpu"]]}
        if self.device_ids:
            req["DeviceIDs"] = self.device_ids
        else:
            req["Count"] = -1 if self.count is None else self.count
        return req


_REPOSITORY = re.compile(r"^[a-z0-9][a-z0-9._/:-]{0,254}$")
OPEVA_ARGS = ["--config", "{data_mount}/{config_path}", "--job_id", "{job_id}"]
ARG_FIELDS = frozenset({"config_path", "job_id", "job_name", "data_mount"})
# The per-job container settings a job may ask for (the work pool's variables allow no others).
JOB_CREATE_KEYS = frozenset({"nano_cpus", "device_requests"})
JobNetwork = Literal["internal", "none"]
_NETWORK_WIDTH = {"none": 0, "internal": 1}


class InferenceTargetSpec(BaseModel):
    """An inference target of a host (core/inference_targets.py): without ``base_url`` the platform
    runs it (a container of the inference image on this host's engine); with one it is external
    (a service someone else runs, like upstream's sites) that the platform only probes and switches."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$", description="Target id in /deploy/inferences/{id}; unique over all hosts.")
    name: str | None = Field(None, max_length=200)
    base_url: str | None = Field(None, pattern=r"^https?://[^\s]+$", description="External target's URL; null: the platform runs it.")
    bundle_mount_path: str = Field("/bundles", description="Where the target sees the bundle store (read-only).")
    memory: str = Field("256m", pattern=r"^[0-9]+[kmg]?$")
    cpus: float = Field(1.0, gt=0, le=64)
    pids: int = Field(64, ge=8, le=4096)


class Host(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Host name; also the work pool's name and the deployments' suffix.")
    kind: Literal["docker", "slurm"] = Field("docker", description="docker: a Docker work pool; slurm: a process pool whose worker submits to Slurm (docs/slurm.md).")
    slurm: SlurmSettings | None = Field(None, description="kind slurm: how jobs reach the cluster (core/slurm.py).")
    concurrency_limit: int | None = Field(2, ge=1)
    image: str | None = Field(None, description="Runtime (supervisor) image; default the project's.")
    volumes: list[str] = Field(default_factory=list)
    gpus: GpuRequest | None = None
    start_worker: bool = False
    docker_url: str | None = Field(None, description="The host's Docker engine as the API reaches it (unix://, tcp://, ssh://); none: this machine's.")
    docker_tls: DockerTLS | None = Field(None, description="TLS of a tcp:// docker_url (core/engines.py); without it tcp:// is unencrypted.")
    data: Literal["shared", "local"] = Field(
        "shared", description="shared: the host mounts the platform's data root; local: its own folder at the same path, "
                              "inputs copied in and outputs back through its engine (docs/data-local.md).")
    # -- the simulator's container ---------------------------------------------------
    simulator_image: str | None = Field(
        None, description="Repository that a job's image_tag completes (OPEVA: calof/opeva_simulator)."
    )
    allowed_images: list[str] = Field(
        default_factory=list, description="Repositories a job's `image` may name (simulator_image is always allowed)."
    )
    simulator_args: list[str] = Field(
        default_factory=lambda: list(OPEVA_ARGS),
        description="Arguments given to a simulator image's own ENTRYPOINT; {config_path} {job_id} {job_name} {data_mount}.",
    )
    data_mount: str = Field("/data", description="Where the shared data root is mounted in the simulator's container.")
    simulator_env: dict[str, str] = Field(
        default_factory=dict, description="Environment of the simulator (MLFLOW_TRACKING_URI, MLFLOW_UI_BASE_URL...)."
    )
    cpus: float | None = Field(None, gt=0, description="Default CPU limit of a simulator container.")
    memory: str | None = Field(None, description="Default memory limit of a simulator container, e.g. '8g'.")
    run_as: str = Field("65534:65534", description="uid[:gid] the simulator runs as; never root.")
    job_network: JobNetwork = Field(
        "internal", description="internal: the jobs network (only the platform's MLflow on it); none: no network at all."
    )
    limits: JobLimits = Field(default_factory=JobLimits, description="Every job's limits on this host; a job may only lower them.")
    inference_targets: list[InferenceTargetSpec] = Field(default_factory=list, description="Inference targets on this host (docs/inference.md).")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _HOST_NAME.fullmatch(v):
            raise ValueError("host names use lower-case letters, digits and '-' (they name work pools and deployments)")
        return v

    @model_validator(mode="after")
    def _kind(self) -> "Host":
        if self.kind == "slurm" and self.slurm is None:
            raise ValueError(f"host {self.name!r}: kind slurm needs a slurm: block (partitions at least)")
        if self.kind != "slurm" and self.slurm is not None:
            raise ValueError(f"host {self.name!r}: a slurm: block needs kind: slurm")
        if self.docker_tls is not None and not (self.docker_url or "").startswith("tcp://"):
            raise ValueError(f"host {self.name!r}: docker_tls needs a tcp:// docker_url (it has {self.docker_url!r}); "
                             "unix:// and ssh:// engines take no TLS settings")
        if self.data == "local" and self.kind != "docker":
            raise ValueError(f"host {self.name!r}: data: local is for Docker hosts (a Slurm host over ssh copies with slurm.submit: ssh://)")
        if self.data == "local" and not self.docker_url:
            raise ValueError(f"host {self.name!r}: data: local needs docker_url (the platform copies the job's files "
                             "through the host's engine, and this machine's engine sees the shared data root)")
        return self

    @field_validator("run_as")
    @classmethod
    def _unprivileged(cls, v: str) -> str:
        parts = v.split(":")
        if len(parts) > 2 or not all(p.isdigit() for p in parts) or int(parts[0]) == 0:
            raise ValueError("run_as is a numeric uid[:gid] other than 0: the simulator never runs as root")
        return v

    @field_validator("simulator_image")
    @classmethod
    def _repository(cls, v: str | None) -> str | None:
        if v is not None and not _REPOSITORY.fullmatch(v):
            raise ValueError(f"{v!r} is not an image repository")
        return v

    @field_validator("simulator_args")
    @classmethod
    def _args(cls, v: list[str]) -> list[str]:
        import string

        for arg in v:
            names = {f for _, f, _, _ in string.Formatter().parse(arg) if f is not None}
            if names - ARG_FIELDS:
                raise ValueError(f"simulator_args may use {sorted(ARG_FIELDS)}, not {sorted(names - ARG_FIELDS)}")
        return v

    def image_allowed(self, image: str) -> bool:
        """Whether ``image`` (``repository[:tag]``) comes from a repository this host allows."""
        allowed = set(self.allowed_images) | ({self.simulator_image} if self.simulator_image else set())
        return repository_of(image) in allowed

    def simulator_arguments(self, **values: str) -> list[str]:
        return [arg.format(data_mount=self.data_mount, **values) for arg in self.simulator_args]


def repository_of(image: str) -> str:
    """``calof/opeva_simulator:v1`` -> ``calof/opeva_simulator`` (a registry port is not a tag)."""
    name = image.split("@", 1)[0]
    head, _, tail = name.rpartition(":")
    return head if head and "/" not in tail else name


def _memory_bytes(value: str) -> str:
    if not re.fullmatch(r"[0-9]+[bkmg]?", value.strip().lower()):
        raise ValueError(f"memory {value!r} is not Docker notation such as '512m' or '8g'")
    return value.strip().lower()


def simulator_limits(host: Host, job_variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """Docker create settings of a simulator container: the host's defaults, then the job's.

    ``container_create_kwargs`` is merged key by key (so a GPU host's ``device_requests``
    survive a job that only sets CPUs), ``mem_limit`` and ``env`` likewise; only
    :data:`JOB_CREATE_KEYS`, ``mem_limit`` and ``env`` are taken from the job, whatever
    else its variables hold. Returns ``{"env": {...}, "network": "internal"|"none", "mem_limit": ..., <create kwargs>}``.
    """
    job = dict(job_variables or {})
    merged: dict[str, Any] = {}
    if host.gpus:
        merged["device_requests"] = [host.gpus.device_request()]
    if host.cpus:
        merged["nano_cpus"] = int(host.cpus * 1e9)
    if host.memory:
        merged["mem_limit"] = _memory_bytes(host.memory)
    create = job.get("container_create_kwargs") or {}
    if not isinstance(create, dict):
        raise ValueError("container_create_kwargs must be a mapping")
    merged.update({k: v for k, v in create.items() if k in JOB_CREATE_KEYS and v is not None})
    if job.get("mem_limit"):
        merged["mem_limit"] = _memory_bytes(str(job["mem_limit"]))
    merged["network"] = narrowest_network(host.job_network, job.get("job_network"))
    merged["env"] = {**host.simulator_env, **{str(k): str(v) for k, v in (job.get("env") or {}).items()}}
    return merged


def narrowest_network(host: str, job: str | None) -> str:
    """A job may narrow its host's network (internal -> none), never widen it."""
    if job not in _NETWORK_WIDTH:
        return host
    return job if _NETWORK_WIDTH[job] < _NETWORK_WIDTH[host] else host


def job_limits(host: Host, job_variables: dict[str, Any] | None = None, *, strict: bool = False) -> Effective:
    """The limits one job runs with: the host's ``limits`` (its older ``cpus``/``memory``
    fill what ``limits`` leaves unset), lowered by the job's variables (``mem_limit``,
    ``container_create_kwargs.nano_cpus``, ``limits``). ``strict``: over a ceiling is an
    error (the API); otherwise the ceiling applies (a run made by hand)."""
    legacy = {k: v for k, v in (("memory", host.memory), ("cpus", host.cpus)) if v and k not in host.limits.model_fields_set}
    base = host.limits.model_copy(update=legacy)
    job = dict(job_variables or {})
    asked: dict[str, Any] = dict(job.get("limits") or {})
    if job.get("mem_limit"):
        asked["memory"] = job["mem_limit"]
    nano = (job.get("container_create_kwargs") or {}).get("nano_cpus")
    if nano:
        asked["cpus"] = int(nano) / 1e9
    return effective(base, asked, host_name=host.name, strict=strict)


class HostsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hosts: list[Host]

    @field_validator("hosts")
    @classmethod
    def _unique(cls, v: list[Host]) -> list[Host]:
        names = [h.name for h in v]
        if len(set(names)) != len(names):
            raise ValueError(f"host names must be unique: {names}")
        if not v:
            raise ValueError("the hosts file lists no host")
        targets = [t.id for h in v for t in h.inference_targets]
        if len(set(targets)) != len(targets):
            raise ValueError(f"inference target ids must be unique over all hosts: {targets}")
        return v

    def get(self, name: str) -> Host | None:
        return next((h for h in self.hosts if h.name == name), None)

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hosts]


def _expand(value: Any, env: dict[str, str]) -> Any:
    """Replace ${VAR} in every string of the parsed file (comments are already gone)."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in env:
                raise ValueError(f"hosts file uses ${{{m.group(1)}}} but it is not set")
            return env[m.group(1)]

        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [_expand(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, env) for k, v in value.items()}
    return value


def load_hosts(path: Path | None = None, env: dict[str, str] | None = None) -> HostsFile:
    from core.settings import PlatformSettings

    settings = PlatformSettings()
    env = dict(os.environ if env is None else env)
    env.setdefault("OPEVA_DATA_DIR", str(settings.shared_data_dir))
    raw = yaml.safe_load(Path(path or settings.hosts_file).read_text())
    return HostsFile.model_validate(_expand(raw, env))


class HostsCache:
    """The hosts file, re-read only when it changes on disk: hosts are added without restarts,
    and a stop or a request does not parse the YAML again each time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._hosts: HostsFile | None = None

    def get(self) -> HostsFile:
        mtime = self.path.stat().st_mtime
        if self._hosts is None or mtime != self._mtime:
            self._hosts, self._mtime = load_hosts(self.path), mtime
        return self._hosts


_CACHES: dict[Path, HostsCache] = {}


def current_hosts() -> HostsFile:
    """The configured hosts file (PlatformSettings().hosts_file), cached per path for this process."""
    from core.settings import PlatformSettings

    path = Path(PlatformSettings().hosts_file)
    cache = _CACHES.get(path) or _CACHES.setdefault(path, HostsCache(path))
    return cache.get()
