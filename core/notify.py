"""Job notifications, the Prefect-free part: what a notice says, and how an attempt is recorded.

Prefect decides *when* (an automation on flow-run state events, api/gateway_notifications.py)
and runs the delivery in its own server process (blocks/notifications.py); this module holds
what both sides must agree on: the channel events and the Prefect events they stand for, the
notice payload (a JSON document Prefect renders from a Jinja template), the e-mail made from it,
and the delivery record in the shape the OPEVA UI reads (``email_notifications[]``,
``last_email_notification``: upstream job_orchestrator_agent's record, plus the channel's fields).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic_settings import BaseSettings, SettingsConfigDict

# channel event -> the Prefect flow-run state name whose event fires it (``prefect.flow-run.<name>``).
# A user stop ends Cancelled: no event here stands for it, so a stop never notifies.
JOB_EVENTS = {"failed": "Failed", "crashed": "Crashed", "timed_out": "TimedOut"}
DEFAULT_EVENTS = ("failed", "crashed", "timed_out")
# A sweep is done when its parent run ends on its own; a stopped sweep (Cancelled) is the user's act.
SWEEP_DONE_STATES = ("Completed", "Failed", "Crashed")
# A scheduled build is missed when Prefect's late-runs service marks it Late (not started 15 s
# after its slot) and it has not started ``grace`` seconds after that.
LATE_STATE, STARTED_STATE = "Late", "Running"
BUILD_MISSED_GRACE = 600
SOLO_EVENTS = ("sweep_done", "build_missed")  # each is its own Prefect automation in a channel (kinds_of)
ALL_EVENTS = (*JOB_EVENTS, *SOLO_EVENTS)
# Which filters narrow which kind of rule: a sweep runs on the control pool (no host); a
# scheduled build has no submitter and no sweep.
FILTERS_OF_KIND = {"job": ("user", "host", "sweep_id"), "sweep_done": ("user", "sweep_id"), "build_missed": ("host",)}


def kinds_of(events: list[str]) -> list[str]:
    """The rules a channel's events need: ``job`` (failed/crashed/timed_out), ``sweep_done``,
    ``build_missed``, in that order. Why several: a Prefect automation has one trigger, and its
    related-resource filter is a single AND, so "failed simulation runs" and "completed sweep
    runs" cannot share one without also matching completed simulations. A channel is then one
    block (the destination) and one automation per kind."""
    kinds = ["job"] if any(e in JOB_EVENTS for e in events) else []
    return kinds + [e for e in SOLO_EVENTS if e in events]


NOTICE_KIND = "opeva.job-notice"
ARTIFACT_TYPE = "opeva-notification"  # the Prefect artifact type of a delivery record
HISTORY_LIMIT = 20  # upstream keeps the last 20 attempts per job
EMAIL_RE = re.compile(r"[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+")
STATUS_OF_STATE_TYPE = {"FAILED": "failed", "CRASHED": "failed", "COMPLETED": "finished", "CANCELLED": "stopped"}


class NotifySettings(BaseSettings):
    """Where e-mail goes out and where links point (read by the API when a channel is made)."""

    model_config = SettingsConfigDict(env_prefix="OPEVA_", extra="ignore")

    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "opeva@localhost"
    smtp_security: str = "none"  # none | starttls | ssl
    smtp_user: str = ""
    smtp_password: str = ""
    ui_base_url: str = ""


def valid_email(text: str) -> bool:
    return bool(EMAIL_RE.fullmatch(text)) and len(text) <= 254


def webhook_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook, or None: http(s) only, with a host, no spaces."""
    if len(url) > 2048:
        return "url is longer than 2048 characters"
    if any(c.isspace() for c in url):
        return "url must not contain spaces or line breaks"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        return f"url is not a valid URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"url must be http:// or https://, not {parts.scheme + '://' if parts.scheme else 'a relative address'}"
    if not parts.hostname:
        return "url has no host"
    return None


def redacted_url(url: str) -> str:
    """The address a record may show: no user:password, query or fragment (they may hold a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def payload_template(channel_id: str, ui_base_url: str, prefect_ui_url: str, about: str = "job") -> str:
    """The notice as a Jinja template Prefect's server renders for each triggering event
    (``flow_run`` and ``flow`` are read from its API at that moment). Strings go through
    ``tojson``: a job name or state message cannot break the document. The OPEVA UI has a page
    per job, not per sweep: a sweep's notice links to the Prefect UI only."""
    ui = f"{ui_base_url.rstrip('/')}/app/ai/jobs/{{{{ flow_run.id }}}}" if ui_base_url and about != "sweep_done" else ""
    prefect = f"{prefect_ui_url.rstrip('/')}/runs/flow-run/{{{{ flow_run.id }}}}" if prefect_ui_url else ""
    fields = {
        "kind": json.dumps(NOTICE_KIND), "channel_id": json.dumps(channel_id), "about": json.dumps(about),
        "job_id": '"{{ flow_run.id }}"', "job_name": "{{ flow_run.name | tojson }}",
        "host": "{{ flow_run.work_pool_name | default(none) | tojson }}",
        "state": "{{ flow_run.state.name | default(none) | tojson }}",
        "state_type": "{{ flow_run.state.type.value | default(none) | tojson }}",
        "message": "{{ flow_run.state.message | default(none) | tojson }}",
        "submitted_by": "{{ flow_run.parameters.submitted_by | default(none) | tojson }}",
        "flow": "{{ flow.name | default(none) | tojson }}",
        "occurred": '"{{ event.occurred }}"', "scheduled": '"{{ flow_run.expected_start_time }}"',
        "ui_url": json.dumps(ui) if ui else "null", "prefect_url": json.dumps(prefect) if prefect else "null",
    }
    return "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"


def parse_notice(text: str) -> dict[str, Any] | None:
    """The notice payload, or None when ``text`` is not one (a body typed into Prefect's UI)."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("kind") == NOTICE_KIND else None


def test_notice(channel_id: str, ui_base_url: str) -> dict[str, Any]:
    """What ``POST /notifications/channels/{id}/test`` sends: a notice about no job."""
    return {"kind": NOTICE_KIND, "channel_id": channel_id, "job_id": None, "job_name": "test notification", "host": None,
            "state": "Test", "state_type": None, "message": "A test send from the OPEVA API: this channel works.",
            "submitted_by": None, "flow": None, "occurred": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "ui_url": ui_base_url.rstrip("/") or None, "prefect_url": None, "test": True}


def status_of(notice: dict[str, Any]) -> str:
    if notice.get("test"):
        return "test"
    return STATUS_OF_STATE_TYPE.get(str(notice.get("state_type") or "").upper(), str(notice.get("state") or "unknown").lower())


def email_subject(notice: dict[str, Any]) -> str:
    if notice.get("test"):
        return "[OPEVA] Test notification"
    if notice.get("about") == "sweep_done":
        return _one_line(f"[OPEVA] Sweep {str(notice.get('state') or 'ended').lower()}: {notice.get('job_name') or notice.get('job_id')}")
    if notice.get("about") == "build_missed":
        return _one_line(f"[OPEVA] Scheduled build missed: {notice.get('job_name') or notice.get('job_id')} on {notice.get('host') or '-'}")
    return _one_line(f"[OPEVA] Job {str(notice.get('state') or 'ended').lower()}: {notice.get('job_name') or notice.get('job_id')} on {notice.get('host') or '-'}")


def email_text(notice: dict[str, Any]) -> str:
    """The plain-text e-mail: what happened, to which job, where, and the links."""
    what = {"sweep_done": "Sweep", "build_missed": "Build"}.get(str(notice.get("about")), "Job")
    rows = [(what, notice.get("job_name")), (f"{what} ID", notice.get("job_id")), ("State", notice.get("state")),
            ("Scheduled for", notice.get("scheduled") if notice.get("about") == "build_missed" else None), ("Host", notice.get("host")), ("Submitted by", notice.get("submitted_by")), ("Flow", notice.get("flow")),
            ("When", notice.get("occurred"))]
    lines = [f"{label}: {value}" for label, value in rows if value]
    if notice.get("message"):
        lines += ["", "Message:", str(notice["message"])[:4000]]
    links = [("Open in the OPEVA UI", notice.get("ui_url")), ("Open in the Prefect UI", notice.get("prefect_url"))]
    lines += [""] + [f"{label}: {url}" for label, url in links if url]
    return "\n".join(lines).rstrip() + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


def delivery_record(notice: dict[str, Any], *, channel: str, channel_id: str | None, recipients: list[str], subject: str | None,
                    ok: bool, error: str | None = None, **extra: Any) -> dict[str, Any]:
    """One attempt, as upstream records it (``outcome`` published/failed, ``recipients``,
    ``attempted_at`` in epoch seconds), plus which channel, job, host and state."""
    record: dict[str, Any] = {
        "job_id": notice.get("job_id"), "status": status_of(notice), "previous_status": None, "state": notice.get("state"),
        "host": notice.get("host"), "attempted_at": round(time.time(), 3), "submitted_by": notice.get("submitted_by"),
        "attempted": True, "published": ok, "outcome": "published" if ok else "failed",
        "reason": "published" if ok else f"{channel}_failed", "recipients": recipients, "subject": subject,
        "error": error, "channel": channel, "channel_id": channel_id, "test": bool(notice.get("test")),
    }
    record.update(extra)
    return record


def record_summary(record: dict[str, Any]) -> str:
    """The markdown line Prefect's UI shows for a delivery record (the artifact's description)."""
    what = "E-mail" if record.get("channel") == "email" else "Webhook"
    to = ", ".join(record.get("recipients") or []) or "-"
    result = "sent" if record.get("published") else f"FAILED ({record.get('error') or 'no detail'})"
    return _one_line(f"{what} to {to}: {result}; job state {record.get('state') or '-'}")


def history(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """``(email_notifications, last_email_notification)`` from records oldest first."""
    kept = records[-HISTORY_LIMIT:]
    return kept, (kept[-1] if kept else None)
