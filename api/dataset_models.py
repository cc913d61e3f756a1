"""Request and answer models of the dataset routes (OPEVA_UPSTREAM.md §4).

Why a module of their own: the router parses with them and the use cases
(api/usecases/datasets.py) fill them; neither imports the other's module.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.dataset_build import MAX_STEP_SECONDS
from core.dataset_schema import CityLearnConfigs
from core.datasets import DatasetError, parse_ts
from core.layout import safe_name

TS_HELP = "ISO 8601 or YYYY-MM-DD HH:mm:ss; naive means UTC"
FORMAT_EXAMPLE = {"format": "csv", "type": "citylearn", "formats": ["csv"], "format_counts": {"csv": 7}}


def _check_ts(value: str | None, field: str) -> str | None:
    if value:
        try:
            parse_ts(value, field)
        except DatasetError as exc:
            raise ValueError(str(exc)) from None
    return value


class _BuildOptions(BaseModel):
    """What a build takes, shared by one dataset and a generated batch."""

    model_config = ConfigDict(extra="forbid")
    citylearn_configs: CityLearnConfigs = Field(default_factory=CityLearnConfigs,
                                                description="CityLearn schema keys, the structured options, and `validation: {smoke_check}`")
    description: str = Field("", max_length=2000)
    from_ts: str | None = Field(None, description=TS_HELP)
    until_ts: str | None = Field(None, description=TS_HELP)
    seconds_per_time_step: int | None = Field(None, ge=1, le=MAX_STEP_SECONDS, description="Seconds per time step; overrides period")
    target_host: str = "local"

    @field_validator("from_ts", "until_ts")
    @classmethod
    def _ts(cls, v: str | None, info: Any) -> str | None:
        return _check_ts(v, info.field_name)


class DatasetRequest(_BuildOptions):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"name": "living-lab-june", "site_id": "living_lab_sample", "description": "hourly, UI form", "period": 60,
             "from_ts": "2025-06-01 00:00:00", "until_ts": "2025-06-08 00:00:00",
             "citylearn_configs": {"schema_overrides": {}, "building_overrides": {}, "defaults": {}, "validation": {"smoke_check": False}}},
            {"name": "hq-15min", "site_id": "i_charging_sample", "seconds_per_time_step": 900,
             "citylearn_configs": {"selected_buildings": ["i-charging_headquarters"], "validation": {"smoke_check": True}}, "wait": 120},
        ]},
    )
    name: str
    site_id: str
    period: int = Field(60, ge=1, le=1440, description="Minutes per time step (seconds_per_time_step wins when given)")
    wait: float = Field(0, ge=0, le=600, description="Seconds to wait for the build to end (0: answer at once)")
    overwrite: bool = Field(False, description="Rebuild an existing dataset of that name (its owner or an admin): a changed input makes a "
                                               "new version (GET /dataset/{name}/lineage); 409 while an unfinished job uses it")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return safe_name(v, what="name")

    def build_params(self) -> dict[str, Any]:
        """The build-dataset flow's parameters."""
        params = self.model_dump(exclude={"target_host", "wait"}, exclude_none=True)
        params["citylearn_configs"] = self.citylearn_configs.model_dump(exclude_none=True)
        return params


class GenerateRequest(_BuildOptions):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"name_prefix": "auto", "site_ids": ["living_lab_sample"], "seconds_per_time_step": 3600, "dry_run": True},
            {"name_prefix": "june", "from_ts": "2025-06-01 00:00:00", "until_ts": "2025-06-02 00:00:00", "continue_on_error": True},
        ]},
    )
    name_prefix: str = Field("auto", description="Datasets are named <prefix>_<site>_all_buildings")
    site_ids: list[str] | None = Field(None, max_length=500, description="Default: every site whose schema has buildings")
    period: int | None = Field(None, ge=1, le=1440, description="Minutes per time step, when seconds_per_time_step is not given")
    dry_run: bool = False
    continue_on_error: bool = False

    @field_validator("name_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return safe_name(v, what="name_prefix")

    @model_validator(mode="after")
    def _step(self) -> "GenerateRequest":
        if self.seconds_per_time_step is None:  # upstream's default: 15-second steps, unless a period is given
            self.seconds_per_time_step = self.period * 60 if self.period else 15
        return self


class Validation(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: str = Field(description="passed | failed | pending")
    static: dict[str, Any] | None = None
    citylearn: dict[str, Any] | None = None
    detail: str | None = None


class _Formats(BaseModel):
    format: str = Field(description="csv | parquet | mixed | unknown, by file suffix")
    type: str = Field(description="citylearn (a schema.json is there) or unknown")
    formats: list[str]
    format_counts: dict[str, int]


class DatasetCreated(_Formats):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "message": "Dataset build submitted", "job_id": "0f6c6a3e-...", "status": "queued", "host": "local", "name": "living-lab-june",
        "description": "hourly, UI form", "time_steps": 168, "seconds_per_time_step": 3600, "from": "2025-06-01T00:00:00+00:00",
        "until": "2025-06-08T00:00:00+00:00", "warnings": ["building O-03 skipped: no collection building_O-03*"],
        "validation": {"status": "pending", "detail": "checked when the build ends"}, **FORMAT_EXAMPLE}]})
    message: str
    job_id: str
    status: str
    host: str
    name: str
    description: str
    time_steps: int
    seconds_per_time_step: int
    from_: str = Field(alias="from", serialization_alias="from")
    until: str
    warnings: list[str]
    validation: Validation


class PlannedDataset(BaseModel):
    name: str
    site_id: str
    time_steps: int
    seconds_per_time_step: int
    from_: str = Field(alias="from", serialization_alias="from")
    until: str
    warnings: list[str]


class CreatedDataset(PlannedDataset):
    job_id: str
    status: str
    host: str


class FailedDataset(BaseModel):
    name: str
    site_id: str
    status_code: int
    detail: str


class Generated(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "message": "1 dataset build(s) submitted, 1 failed", "dry_run": False,
        "planned": [{"name": "auto_living_lab_sample_all_buildings", "site_id": "living_lab_sample", "time_steps": 96, "seconds_per_time_step": 900,
                     "from": "2025-01-06T00:00:00+00:00", "until": "2025-01-07T00:00:00+00:00", "warnings": []}],
        "created": [{"name": "auto_living_lab_sample_all_buildings", "site_id": "living_lab_sample", "time_steps": 96, "seconds_per_time_step": 900,
                     "from": "2025-01-06T00:00:00+00:00", "until": "2025-01-07T00:00:00+00:00", "warnings": [], "job_id": "0f6c6a3e-...",
                     "status": "queued", "host": "local"}],
        "failed": [{"name": "auto_empty_site_all_buildings", "site_id": "empty_site", "status_code": 422, "detail": "site 'empty_site' has no buildings"}]}]})
    message: str
    dry_run: bool
    planned: list[PlannedDataset]
    created: list[CreatedDataset]
    failed: list[FailedDataset]


class GenerateFailure(BaseModel):
    message: str
    site_ids: list[str]
    failed: list[FailedDataset] = Field(default_factory=list)


class GenerateNotFound(BaseModel):
    """404 of ``POST /datasets/generate``: upstream's object detail when sites cannot be built
    (text for an unknown ``target_host``)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"detail": {"message": "cannot generate datasets for 1 site(s): no_such_site: no site 'no_such_site'", "site_ids": ["no_such_site"], "failed": []}}]})
    detail: GenerateFailure | str


class DatasetEntry(_Formats):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "living-lab-june", "description": "hourly", "size": 120433, "created": "2025-06-09T10:00:00+00:00",
                                                               "site": "living_lab_sample", "from": "2025-06-01T00:00:00+00:00", "until": "2025-06-08T00:00:00+00:00",
                                                               "period": 60, "source": "build", **FORMAT_EXAMPLE}]})
    name: str
    description: str = ""
    size: int
    created: str
    site: str | None = None
    from_: str | None = Field(None, alias="from", serialization_alias="from")
    until: str | None = None
    period: int | float | None = Field(None, description="Minutes per time step")
    source: str


class Uploaded(_Formats):
    model_config = ConfigDict(json_schema_extra={"examples": [{"message": "Dataset uploaded", "name": "my-dataset", "size_bytes": 52311, "files": 7, **FORMAT_EXAMPLE}]})
    message: str
    name: str
    size_bytes: int
    files: int


class LineageJob(BaseModel):
    job_id: str
    status: str = Field(description="The job's OPEVA status now (not_found: deleted since)")
    used_at: str = Field(description="When the job started on this version")
    kpis: dict[str, float | None] = Field(default_factory=dict, description="Its newest session's district KPIs, if it exported any")


class LineageVersion(BaseModel):
    digest: str = Field(description="sha256 of the dataset's files (dataset.json left out): the version")
    current: bool = Field(description="This is the dataset's version on disk now")
    jobs: list[LineageJob]


class DatasetLineage(BaseModel):
    name: str
    current_digest: str | None = Field(description="The version on disk now; null when the dataset was deleted")
    site: str | None = None
    window: dict[str, str | None] | None = None
    versions: list[LineageVersion] = Field(description="Versions in the order they were first used, each with the jobs that ran on it")
