"""Request and answer models of ``/notifications`` and the notification fields of job answers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.notify import ALL_EVENTS, BUILD_MISSED_GRACE, DEFAULT_EVENTS, FILTERS_OF_KIND, kinds_of, valid_email, webhook_url_problem

EventName = Literal["failed", "crashed", "timed_out", "sweep_done", "build_missed"]
MAX_RECIPIENTS = 10


class ChannelFilters(BaseModel):
    """Which jobs notify: all three narrow (a job must match every one given)."""

    model_config = ConfigDict(extra="forbid")
    user: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@ -]{0,63}$", description="Jobs submitted by this user (submitted_by).")
    host: str | None = Field(None, max_length=64, description="Jobs on this host (its work pool).")
    sweep_id: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Trials of this sweep.")


class ChannelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"kind": "email", "to": "alice@example.org", "events": ["failed", "crashed"], "filters": {"user": "alice"}},
        {"kind": "webhook", "url": "https://hooks.example.org/opeva", "filters": {"host": "local"}},
        {"kind": "email", "to": "alice@example.org", "events": ["sweep_done"], "filters": {"user": "alice"}},
        {"kind": "email", "to": "ops@example.org", "events": ["build_missed"], "grace_seconds": 900}]})
    kind: Literal["email", "webhook"]
    to: list[str] | str | None = Field(None, description="E-mail channel: one address or a list (at most 10).")
    url: str | None = Field(None, description="Webhook channel: an http(s) URL; each notice is POSTed to it as JSON.")
    events: list[EventName] = Field(default_factory=lambda: list(DEFAULT_EVENTS), min_length=1, max_length=5, description=(
        "Job events (failed, crashed, timed_out: a job's run ended so), or one of: sweep_done (a sweep's run ended "
        "Completed, Failed or Crashed), build_missed (a scheduled dataset build did not start by its slot + 15 s + grace_seconds)."))
    filters: ChannelFilters = Field(default_factory=ChannelFilters)
    grace_seconds: int | None = Field(None, ge=10, le=7 * 86400, description=(
        f"build_missed only: how long after Prefect marks the build Late (15 s after its slot) it may still start; default {BUILD_MISSED_GRACE}."))

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str] | str | None) -> list[str] | None:
        if value is None:
            return None
        addresses = [value] if isinstance(value, str) else value
        if not addresses or len(addresses) > MAX_RECIPIENTS:
            raise ValueError(f"give 1 to {MAX_RECIPIENTS} addresses")
        bad = [a for a in addresses if not valid_email(a)]
        if bad:
            raise ValueError(f"not an e-mail address: {bad[0][:80]!r}")
        return addresses

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and (problem := webhook_url_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        return sorted(set(value), key=list(ALL_EVENTS).index)

    @property
    def kinds(self) -> list[str]:
        return kinds_of(self.events)

    @model_validator(mode="after")
    def _destination(self) -> "ChannelRequest":
        if self.kind == "email" and (not self.to or self.url is not None):
            raise ValueError("an email channel takes 'to' (an address or a list), not 'url'")
        if self.kind == "webhook" and (not self.url or self.to is not None):
            raise ValueError("a webhook channel takes 'url', not 'to'")
        kinds = self.kinds
        if self.grace_seconds is not None and "build_missed" not in kinds:
            raise ValueError("grace_seconds is for build_missed channels only")
        if kinds == ["sweep_done"] and self.filters.host:
            raise ValueError("a sweep_done channel filters by user or sweep_id, not host (a sweep runs on the control pool)")
        if kinds == ["build_missed"] and (self.filters.user or self.filters.sweep_id):
            raise ValueError("a build_missed channel filters by host only (scheduled builds have no submitter and no sweep)")
        unused = [k for k, v in self.filters.model_dump(exclude_none=True).items() if not any(k in FILTERS_OF_KIND[kind] for kind in kinds)]
        if unused:
            raise ValueError(f"filter {unused[0]} narrows none of the events {', '.join(self.events)}")
        return self


class ChannelCreated(BaseModel):
    channel_id: str = Field(description="The channel's id (its Prefect automation's id).")


class ChannelOut(BaseModel):
    channel_id: str
    kind: Literal["email", "webhook"]
    to: list[str] | None = None
    url: str | None = Field(None, description="The webhook's address without user, password or query.")
    events: list[str]
    filters: ChannelFilters
    grace_seconds: int | None = Field(None, description="build_missed channels: the grace after a build is marked Late.")
    owner: str | None = None
    enabled: bool = True
    automation_name: str = Field(description=(
        "The Prefect automation(s) holding the rules (Prefect UI > Automations), ' | '-separated: one per kind of event "
        "(job events, sweep_done, build_missed)."))
    block_document_id: str = Field(description="The Prefect block holding the destination (Prefect UI > Blocks).")


class NotificationAttempt(BaseModel):
    """One delivery attempt, as upstream's job answers carry it (extra keys pass through)."""

    model_config = ConfigDict(extra="allow")
    job_id: str | None = None
    status: str | None = None
    previous_status: str | None = None
    attempted_at: float | None = None
    submitted_by: str | None = None
    attempted: bool = True
    published: bool = False
    outcome: str | None = None
    reason: str | None = None
    recipients: list[str] = Field(default_factory=list)
    subject: str | None = None
    error: str | None = None
    channel: str | None = None
    channel_id: str | None = None


class NotificationFields(BaseModel):
    """``last_email_notification`` / ``email_notifications[]`` of ``/job-info`` and ``/status`` (oldest first, last 20)."""

    last_email_notification: NotificationAttempt | None = None
    email_notifications: list[NotificationAttempt] = Field(default_factory=list)


def attempts(records: list[dict[str, Any]]) -> NotificationFields:
    from core.notify import history

    kept, last = history(records)
    return NotificationFields(email_notifications=[NotificationAttempt(**r) for r in kept],
                              last_email_notification=NotificationAttempt(**last) if last else None)
