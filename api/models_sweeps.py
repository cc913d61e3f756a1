"""Requests and answers of ``/sweeps``: one experiment of many simulation jobs (core/sweep.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.experiment import SEED_KEY
from core.sweep import MAX_PARALLEL, MAX_TRIALS, Objective, RandomChoice, RandomRange

EXAMPLE_ID = "0c6f3a2e-5b8d-4e8f-9f51-1d2a7f5e9b10"


class SweepRequest(BaseModel):
    """A sweep: every grid combination (crossed with ``n_random`` random draws) runs once per seed.
    Bad input is a 400 and nothing is started."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "base_config": "demo.yaml", "grid": {"algorithm.params.learning_rate": [0.1, 0.2, 0.4], "episodes": [2, 4, 8]},
        "seeds": [1, 2], "hosts": "auto", "max_parallel": 4, "objective": {"metric": "electricity_cost", "mode": "min"},
    }]})
    base_config: str | None = Field(None, max_length=255, description="A config file under configs/ (x.yaml or configs/x.yaml).")
    config: dict[str, Any] | None = Field(None, description="Or the base config inline.")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted.key -> values; each key must be in the base config.")
    random: dict[str, RandomRange | RandomChoice] = Field(default_factory=dict, description="dotted.key -> {low, high, log?, integer?} or {choices}.")
    n_random: int = Field(0, ge=0, le=MAX_TRIALS)
    random_seed: int = Field(0, ge=0, le=2**32 - 1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, max_length=MAX_TRIALS, description=f"Written to the config's seed key ({SEED_KEY!r} by default).")
    seed_key: str = Field(SEED_KEY, max_length=255)
    hosts: list[str] | Literal["auto"] = Field("auto", description="Hosts to spread the trials over, or auto: every host with a worker online.")
    max_parallel: int = Field(2, ge=1, le=MAX_PARALLEL, description="Jobs of this sweep in flight at once (queued or running).")
    objective: Objective | None = None
    name: str | None = Field(None, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Prefix of the jobs' names (default: the sweep id's first part).")
    submitted_by: str | None = Field(None, max_length=255)


class SweepSubmitted(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"sweep_id": EXAMPLE_ID, "n_jobs": 18, "status": "queued", "message": "Sweep submitted"}]})
    sweep_id: str = Field(description="The parent flow run's id (run-sweep/control)")
    n_jobs: int
    status: str
    message: str = "Sweep submitted"


class SweepTrialOut(BaseModel):
    trial: int
    point: int = Field(description="The grid combination (x random draw) it belongs to")
    params: dict[str, Any]
    seed: int
    host: str | None = None
    job_id: str | None = Field(None, description="Null until the trial's job is started")
    status: str = Field(description="The job's OPEVA status; pending: not started yet")
    objective: float | None = None
    started_at: str | None = None
    finished_at: str | None = None


class SweepOut(BaseModel):
    sweep_id: str
    name: str | None
    status: str = Field(description="The parent run's OPEVA status")
    n_jobs: int
    max_parallel: int
    hosts: list[str] | str
    objective: Objective | None
    counts: dict[str, int] = Field(description="Trials per status")
    best_trial: int | None = Field(None, description="The finished trial with the best objective")
    trials: list[SweepTrialOut]


class SweepStopped(BaseModel):
    sweep_id: str
    message: str
    cancelled: int = Field(description="Children that were not final when the stop came")
    final: bool = Field(description="Every child is final now")
    status: str = Field(description="The parent run's OPEVA status after the stop")
