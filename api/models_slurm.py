"""Response models of the Slurm routes (``/hosts/{host}/partitions``, ``/deucalion/partitions``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PartitionLimit(BaseModel):
    """One partition as upstream's ``/deucalion/partitions`` lists it, plus what the cluster says of its nodes."""

    partition: str
    architecture: str | None = None
    max_nodes: int | None = None
    time_limit_seconds: int | None = Field(None, description="MaxTime in seconds; null: unlimited.")
    time_limit: str | None = Field(None, description="HH:MM:SS")
    time_limit_label: str
    state: str | None = None
    nodes: int = 0
    cpus_per_node: int = 0
    mem_gb_per_node: float = 0
    gpus_per_node: int = 0
    allowed: bool = True
    default: bool = False


class PartitionsOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "source": "sinfo on the host's submit node (deucalion)", "host": "deucalion",
        "partitions": [{"partition": "normal-x86", "architecture": None, "max_nodes": 64, "time_limit_seconds": 172800,
                        "time_limit": "48:00:00", "time_limit_label": "48 hours", "state": "up", "nodes": 64, "cpus_per_node": 128,
                        "mem_gb_per_node": 250.0, "gpus_per_node": 0, "allowed": True, "default": True}],
    }]})
    source: str = Field(description="Where the limits come from (the host's own Slurm).")
    host: str
    partitions: list[PartitionLimit]
