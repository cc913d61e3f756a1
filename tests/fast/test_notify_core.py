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
