"""Response models of the Slurm routes (``/hosts/{host}/partitions``, ``/deucalion/partitions``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


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
    source: str = Field(description="Where the limits come from (the host's own Slurm).")
    host: str
    partitions: list[PartitionLimit]
