"""The notice template as Prefect's server renders it, and the e-mail made from it (no server)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

from prefect.server.utilities.user_templates import render_user_template

from core.notify import email_subject, email_text, parse_notice, payload_template, redacted_url, webhook_url_problem


def _render(template: str, name: str, message: str | None) -> str:
    state = SimpleNamespace(name="Failed", message=message, type=SimpleNamespace(value="FAILED"))
    flow_run = SimpleNamespace(id="0b7e6a0e-5a43-4a39-9a5e-6f0f3f0d9b11", name=name, work_pool_name="local", state=state,
                               parameters={"submitted_by": "alice"})
    context = {"flow_run": flow_run, "flow": SimpleNamespace(name="run-simulation"), "event": SimpleNamespace(occurred="2026-12-04T23:00:00Z")}
    return asyncio.run(render_user_template(template, context))


def test_a_hostile_job_name_or_message_cannot_break_the_notice():
    template = payload_template("c1", "http://ui.test", "http://prefect.test")
    name, message = 'x", "job_id": "forged\n{{ 7*7 }}', 'line 1\nline "2" \\ </script>'
    notice = parse_notice(_render(template, name, message))
    assert notice is not None, "the rendered notice must be JSON"
    assert notice["job_id"] == "0b7e6a0e-5a43-4a39-9a5e-6f0f3f0d9b11" and notice["job_name"] == name and notice["message"] == message
    assert notice["ui_url"] == "http://ui.test/app/ai/jobs/0b7e6a0e-5a43-4a39-9a5e-6f0f3f0d9b11"
    assert notice["prefect_url"] == "http://prefect.test/runs/flow-run/0b7e6a0e-5a43-4a39-9a5e-6f0f3f0d9b11"
    assert (notice["host"], notice["state"], notice["submitted_by"], notice["flow"]) == ("local", "Failed", "alice", "run-simulation")
    subject = email_subject(notice)
    assert "\n" not in subject and subject.startswith("[OPEVA] Job failed:") and subject.endswith("on local")
    text = email_text(notice)
    assert "Job ID: 0b7e6a0e-5a43-4a39-9a5e-6f0f3f0d9b11" in text and "Open in the OPEVA UI: http://ui.test/app/ai/jobs/" in text


def test_without_a_ui_base_url_the_notice_has_no_opeva_link():
    notice = json.loads(_render(payload_template("c1", "", "http://prefect.test"), "n", None))
    assert notice["ui_url"] is None and notice["message"] is None and "OPEVA UI" not in email_text(notice)


def test_webhook_urls_and_what_records_show_of_them():
    assert webhook_url_problem("https://hooks.example.org/x?y=1") is None
    assert "http:// or https://" in webhook_url_problem("file:///etc/passwd")
    assert "spaces" in webhook_url_problem("http://a b.org/")
    assert redacted_url("https://user:pw@hooks.example.org:8443/p?token=s#f") == "https://hooks.example.org:8443/p"


def test_sweep_and_missed_build_notices_say_what_they_are_about():
    sweep = parse_notice(_render(payload_template("c1", "http://ui.test", "http://prefect.test", "sweep_done"), "sweep-grid", None))
    assert sweep["about"] == "sweep_done" and sweep["ui_url"] is None, "the OPEVA UI has no sweep page: no dead link"
    assert email_subject({**sweep, "state": "Completed"}) == "[OPEVA] Sweep completed: sweep-grid"
    assert "Sweep ID: 0b7e6a0e" in email_text(sweep)
    missed = {"about": "build_missed", "job_name": "nightly-x", "job_id": "r1", "host": "local", "state": "Late",
              "scheduled": "2026-12-05 02:00:00+00:00"}
    assert email_subject(missed) == "[OPEVA] Scheduled build missed: nightly-x on local"
    assert "Scheduled for: 2026-12-05 02:00:00+00:00" in email_text(missed) and "Build ID: r1" in email_text(missed)


def test_a_users_webhook_block_refuses_a_private_address_at_call_time():
    """Created through the API by a non-admin, the block has allow_private_urls off: even if the
    name resolved to a public address at creation, Prefect's check runs again at each call."""
    from blocks.notifications import OpevaWebhook

    block = OpevaWebhook(url="http://127.0.0.1:9/hook", allow_private_urls=False, channel_id="c1")
    record = asyncio.run(block.deliver({"kind": "opeva.job-notice", "job_id": "j1", "state": "Failed"}))
    assert record["outcome"] == "failed" and record["published"] is False
    assert "private" in record["error"].lower() or "not a valid url" in record["error"].lower(), record["error"]
