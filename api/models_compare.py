"""The answer of ``GET /compare``: several jobs' KPIs side by side."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ComparedJob(BaseModel):
    job_id: str
    job_name: str | None
    status: str
    host: str | None
    session: str | None = Field(description="The simulation-data session the KPIs come from (the newest); null: the job exported none.")
    note: str | None = Field(None, description="Why this job's KPI table was not read (missing, a link, too large).")


class KpiRow(BaseModel):
    kpi: str
    values: dict[str, float | None] = Field(description="Job id -> the District value (null: the job has no such KPI or it is not a number).")
    best_job_id: str | None = Field(description="The job with the lowest value: CityLearn's cost, energy and emission KPIs are better lower. Null when fewer than two jobs have a value.")


class CompareOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "jobs": [{"job_id": "a", "job_name": "rbc", "status": "finished", "host": "local", "session": "20261204T165703Z"},
                 {"job_id": "b", "job_name": "sac", "status": "finished", "host": "local", "session": "20261204T170101Z"}],
        "kpis": [{"kpi": "district_cost_total_control_eur", "values": {"a": 6.488, "b": 5.9}, "best_job_id": "b"}],
    }]})
    jobs: list[ComparedJob]
    kpis: list[KpiRow]
