"""Request and answer models of ``/dataset/schedules`` (issue 25 §2: scheduled dataset builds)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.dataset_schema import CityLearnConfigs
from core.dataset_window import window_bounds
from core.datasets import DatasetError, parse_ts
from core.layout import safe_name

Window = str | dict[str, str]


def _valid_window(value: Window) -> Window:
    try:
        window_bounds(value, datetime.now(timezone.utc))
    except DatasetError as exc:
        raise ValueError(str(exc)) from None
    return value


class ScheduleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"site_id": "living_lab_sample", "cron": "0 2 * * *", "timezone": "Europe/Lisbon", "window": "last_24h"},
        {"site_id": "i_charging_sample", "cron": "*/30 * * * *", "window": {"start": "2025-06-01", "end": "2025-06-08"},
         "name_prefix": "hq-week", "citylearn_configs": {"validation": {"smoke_check": True}}},
    ]})
    site_id: str = Field(min_length=1, max_length=128)
    cron: str = Field(description="Five-field cron, read in `timezone` (Prefect's CronSchedule)", max_length=128)
    timezone: str = Field("UTC", description="IANA zone the cron is read in")
    window: Window = Field("last_24h", description="last_<N>h | last_<N>d (ending at each run's scheduled start) | {start, end}")
    citylearn_configs: CityLearnConfigs = Field(default_factory=CityLearnConfigs)
    name_prefix: str | None = Field(None, description="Datasets are named <name_prefix or site_id>-<window end, UTC, YYYYMMDDTHHMMZ>")
    period: int = Field(60, ge=1, le=1440, description="Minutes per time step")
    target_host: str = Field("local", description="The host whose build-dataset deployment holds the schedule")

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        from prefect.client.schemas.schedules import CronSchedule  # its validator is the scheduler's own

        try:
            CronSchedule(cron=v)
        except ValueError:
            raise ValueError(f"cron {v!r} is not a valid cron expression (five fields, e.g. '0 2 * * *')") from None
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {v!r} is not an IANA time zone (e.g. 'UTC', 'Europe/Lisbon')") from None
        return v

    @field_validator("window")
    @classmethod
    def _window(cls, v: Window) -> Window:
        return _valid_window(v)

    @field_validator("name_prefix", "site_id")
    @classmethod
    def _name(cls, v: str | None, info: Any) -> str | None:
        return safe_name(v, what=info.field_name) if v is not None else v

    def flow_parameters(self) -> dict[str, Any]:
        """What each scheduled run passes to build-dataset (the anchor is its scheduled start)."""
        return {"site_id": self.site_id, "window": self.window, "name_prefix": self.name_prefix or self.site_id,
                "period": self.period, "citylearn_configs": self.citylearn_configs.model_dump(exclude_none=True),
                "description": f"scheduled build of {self.site_id} ({self.cron}, {self.timezone})"}


class BackfillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True,
                              json_schema_extra={"examples": [{"from": "2026-11-01T00:00:00Z", "until": "2026-11-07T00:00:00Z"}]})
    from_: str = Field(alias="from", description="First occurrence included (ISO 8601)")
    until: str = Field(description="Last occurrence included (ISO 8601)")

    @model_validator(mode="after")
    def _range(self) -> "BackfillRequest":
        try:
            start, end = parse_ts(self.from_, "from"), parse_ts(self.until, "until")
        except DatasetError as exc:
            raise ValueError(str(exc)) from None
        if end < start:
            raise ValueError("until must not be before from")
        if end - start > timedelta(days=366):
            raise ValueError("a backfill spans at most 366 days")
        return self


class ScheduleOut(BaseModel):
    schedule_id: str
    site_id: str | None = None
    cron: str | None = None
    timezone: str | None = None
    window: Window | None = None
    name_prefix: str | None = None
    active: bool
    host: str
    deployment: str = Field(description="The Prefect deployment holding the schedule (build-dataset/<host>)")
    slug: str | None = None
    next_runs: list[str] = Field(description="The next 3 scheduled starts (UTC, ISO 8601); empty while paused")


class ScheduleCreated(BaseModel):
    schedule_id: str
    next_runs: list[str]
    schedule: ScheduleOut


class BackfillRun(BaseModel):
    anchor: str = Field(description="The occurrence the run stands for: its window ends here")
    dataset: str
    job_id: str
    status: str


class BackfillOut(BaseModel):
    schedule_id: str
    runs: list[BackfillRun]
