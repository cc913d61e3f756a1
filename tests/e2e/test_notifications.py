"""Notifications of real jobs in real containers (issue 25 §3 accept lines): a command exiting 1
and a killed simulator container each give exactly one e-mail and one webhook call within 15 s
naming job, host, state and a UI link; a user stop gives none.

The local SMTP server (aiosmtpd) and the webhook receiver run on loopback in this process. The
delay from the run's final state to each arrival is printed (``-s``): docs/notifications.md.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from uuid import UUID

import docker
import httpx
import pytest

from helpers import experiment, gateway_call, read_run, sh, wait_final, wait_for
from notify_receivers import UI, napi, receivers  # noqa: F401  (module fixtures)

pytestmark = pytest.mark.usefixtures("needs_docker")


@pytest.fixture(scope="module")
def user(napi, receivers) -> Iterator[str]:
    """A user of this module's own, with an e-mail and a webhook channel on their jobs."""
    _, hooks = receivers
    name = f"n{uuid.uuid4().hex[:8]}"
    made = [napi.post("/notifications/channels", json=body).json()["channel_id"] for body in (
        {"kind": "email", "to": f"{name}@example.org", "filters": {"user": name}},
        {"kind": "webhook", "url": hooks.url(f"/{name}"), "filters": {"user": name}})]
    yield name
    for channel in made:
        napi.delete(f"/notifications/channels/{channel}")


def submit(napi: httpx.Client, user: str, command: list[str], **body) -> str:
    r = napi.post("/run-simulation", json={"config": experiment("notify", uuid.uuid4().hex[:6]), "command": command,
                                           "target_host": "local", "submitted_by": user, **body})
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def final_at(job_id: str) -> float:
    states = gateway_call(lambda g: g.client.read_flow_run_states(UUID(job_id)))
    return max(s.timestamp for s in states if s.is_final()).timestamp()


def assert_notified_once(receivers, job_id: str, state_types: tuple[str, ...]) -> tuple[float, float]:
    """Exactly one e-mail and one call for ``job_id`` within 15 s of its end; their delays."""
    smtp, hooks = receivers
    wait_for(lambda: smtp.mailbox.about(job_id) and hooks.about(job_id), 20, 0.1, what=f"the notices of {job_id}")
    time.sleep(3)  # a second notice would come about as fast as the first
    [mail], [call] = smtp.mailbox.about(job_id), hooks.about(job_id)
    body, ended = call["body"], final_at(job_id)
    assert body["job_id"] == job_id and body["host"] == "local" and body["state_type"] in state_types, body
    assert body["ui_url"] == f"{UI}/app/ai/jobs/{job_id}" and f"{UI}/app/ai/jobs/{job_id}" in mail["text"]
    assert f"Job ID: {job_id}" in mail["text"] and "Host: local" in mail["text"] and f"State: {body['state']}" in mail["text"]
    delays = (mail["at"] - ended, call["at"] - ended)
    assert all(0 <= d < 15 for d in delays), delays
    print(f"\nNOTIFY-DELAY job={job_id} state={body['state']} email={delays[0]:.2f}s webhook={delays[1]:.2f}s")
    return delays


def test_a_command_exiting_1_is_one_email_and_one_webhook_call(napi, receivers, user):
    for _ in range(3):  # three runs: the delays in docs/notifications.md
        job_id = submit(napi, user, sh('echo "[ERROR] forced failure" >&2; exit 1'))
        assert wait_final(job_id).state.is_failed()
        assert_notified_once(receivers, job_id, ("FAILED", "CRASHED"))
        info = napi.get(f"/job-info/{job_id}").json()
        assert sorted(r["channel"] for r in info["email_notifications"]) == ["email", "webhook"], info["email_notifications"]
        assert info["last_email_notification"]["outcome"] == "published" and info["status"] == "failed"


def test_a_killed_container_is_notified(napi, receivers, user):
    job_id = submit(napi, user, sh('i=0; while true; do i=$((i+1)); echo "[INFO] tick $i"; sleep 0.5; done'))
    client = docker.from_env()
    label = {"label": [f"opeva.job_id={job_id}", "opeva.role=simulator"]}
    [sim] = wait_for(lambda: client.containers.list(ignore_removed=True, filters=label), 90, what="the simulator's container")
    sim.kill()
    assert not wait_final(job_id, 60).state.is_cancelled()
    assert_notified_once(receivers, job_id, ("FAILED", "CRASHED"))


def test_a_job_over_its_time_limit_ends_timed_out_and_is_notified(napi, receivers, user):
    """``resources.wall_seconds``: the supervisor stops the simulator and the run ends in Prefect's
    own TimedOut state (a Failed type), which the ``timed_out`` event of a channel hears."""
    job_id = submit(napi, user, sh('i=0; while true; do i=$((i+1)); echo "[INFO] tick $i"; sleep 0.5; done'), resources={"wall_seconds": 4})
    run = wait_final(job_id, 120)
    assert run.state.name == "TimedOut" and run.state.is_failed() and "error_code=timed_out" in run.state.message, run.state
    info = napi.get(f"/job-info/{job_id}").json()
    assert info["status"] == "failed" and info["error_code"] == "timed_out", info
    assert_notified_once(receivers, job_id, ("FAILED",))
    assert "State: TimedOut" in receivers[0].mailbox.about(job_id)[0]["text"]
    assert not docker.from_env().containers.list(ignore_removed=True, all=True, filters={"label": [f"opeva.job_id={job_id}", "opeva.role=simulator"]})


def test_a_user_stop_notifies_no_one(napi, receivers, user):
    smtp, hooks = receivers
    job_id = submit(napi, user, sh('i=0; while true; do i=$((i+1)); echo "[INFO] tick $i"; sleep 0.5; done'))
    wait_for(lambda: napi.get(f"/status/{job_id}").json()["status"] == "running", 90, what="the job to run")
    assert napi.post(f"/stop/{job_id}").status_code == 200
    run = wait_final(job_id, 60)
    assert run.state.is_cancelled(), run.state
    time.sleep(8)  # well past the delays measured above
    assert not smtp.mailbox.about(job_id) and not hooks.about(job_id)
    assert napi.get(f"/job-info/{job_id}").json()["email_notifications"] == []
    assert read_run(job_id).state.is_cancelled()  # and it stayed so
