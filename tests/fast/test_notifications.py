"""Notification channels against the real Prefect server: REST validation, a test send, and a
failed job -> one e-mail and one webhook call through Prefect's own automation (no Docker: the
job is failed by an operator while queued; tests/e2e/test_notifications.py fails a container).

Delivery goes to a local SMTP server (aiosmtpd) and a local HTTP receiver, both on loopback.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from helpers import experiment, gateway_call, wait_for
from notify_receivers import UI, napi, receivers  # noqa: F401  (module fixtures)



BAD_BODIES = [
    ({"kind": "email", "to": "not-an-address"}, "not an e-mail address"),
    ({"kind": "email", "to": ["ok@example.org", "bad@"]}, "not an e-mail address"),
    ({"kind": "email", "to": "a@b.org\r\nBcc: x@y.org"}, "not an e-mail address"),
    ({"kind": "webhook", "url": "ftp://example.org/hook"}, "http:// or https://"),
    ({"kind": "webhook", "url": "/relative"}, "http:// or https://"),
    ({"kind": "webhook", "url": "http:///nohost"}, "no host"),
    ({"kind": "webhook", "url": "http://example.org:99999/"}, "not a valid URL"),
    ({"kind": "webhook"}, "takes 'url'"),
    ({"kind": "email", "url": "http://example.org"}, "takes 'to'"),
    ({"kind": "sms", "to": "a@b.org"}, "kind"),
    ({"kind": "webhook", "url": "http://example.org", "events": ["exploded"]}, "events"),
    ({"kind": "webhook", "url": "http://example.org", "events": []}, "events"),
    ({"kind": "webhook", "url": "http://example.org", "events": ["sweep_done", "build_missed"], "filters": {"sweep_id": "s"}, "grace_seconds": 5},
     "grace_seconds"),
    ({"kind": "webhook", "url": "http://example.org", "grace_seconds": 60}, "grace_seconds is for build_missed"),
    ({"kind": "webhook", "url": "http://example.org", "events": ["build_missed"], "grace_seconds": 5}, "grace_seconds"),
    ({"kind": "webhook", "url": "http://example.org", "events": ["sweep_done"], "filters": {"host": "local"}}, "not host"),
    ({"kind": "webhook", "url": "http://example.org", "events": ["build_missed"], "filters": {"user": "al"}}, "host only"),
    ({"kind": "webhook", "url": "http://example.org", "filters": {"team": "x"}}, "team"),
    ({"kind": "webhook", "url": "http://example.org", "filters": {"user": "../../etc"}}, "user"),
]


@pytest.mark.parametrize("body,words", BAD_BODIES, ids=[str(i) for i in range(len(BAD_BODIES))])
def test_a_bad_channel_is_a_clear_422(api, body, words):
    r = api.post("/notifications/channels", json=body)
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"], r.json()


def test_unknown_channels_hosts_and_jobs_are_404_never_500(api):
    for method, path in (("GET", "/notifications/channels/nope"), ("DELETE", "/notifications/channels/nope"),
                         ("POST", "/notifications/channels/nope/test"), ("GET", "/notifications/deliveries?job_id=not-a-job")):
        r = api.request(method, path)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["detail"]
    r = api.post("/notifications/channels", json={"kind": "webhook", "url": "http://127.0.0.1:9/x", "filters": {"host": "atlantis"}})
    assert r.status_code == 404 and "unknown host 'atlantis'" in r.json()["detail"], r.text


def test_an_email_channel_without_an_smtp_server_is_a_400(api):
    r = api.post("/notifications/channels", json={"kind": "email", "to": "a@example.org"})
    assert r.status_code == 400 and "OPEVA_SMTP_HOST" in r.json()["detail"], r.text


def _channel(napi: httpx.Client, **body: Any) -> str:
    r = napi.post("/notifications/channels", json=body)
    assert r.status_code == 201, r.text
    return r.json()["channel_id"]


def test_channels_are_prefect_automations_with_a_test_send_and_a_delivery_log(napi, receivers):
    smtp, hooks = receivers
    email = _channel(napi, kind="email", to=["ops@example.org"], events=["failed"], filters={"host": "local"})
    hook = _channel(napi, kind="webhook", url=hooks.url("/t?token=s3cret"), filters={"user": "carol", "sweep_id": "sw1"})
    listed = {c["channel_id"]: c for c in napi.get("/notifications/channels").json()}
    assert listed[email]["kind"] == "email" and listed[email]["to"] == ["ops@example.org"] and listed[email]["events"] == ["failed"]
    assert listed[email]["filters"] == {"user": None, "host": "local", "sweep_id": None}
    assert listed[hook]["url"] == hooks.url("/t") and listed[hook]["events"] == ["failed", "crashed", "timed_out"]  # no secret shown
    assert listed[hook]["filters"] == {"user": "carol", "host": None, "sweep_id": "sw1"}
    assert listed[hook]["automation_name"].startswith("OPEVA webhook")
    sweeps = _channel(napi, kind="webhook", url=hooks.url("/s"), events=["sweep_done"], filters={"sweep_id": "sw2", "user": "dan"})
    missed = _channel(napi, kind="webhook", url=hooks.url("/m"), events=["build_missed"], grace_seconds=900, filters={"host": "local"})
    mixed = _channel(napi, kind="webhook", url=hooks.url("/x"), events=["build_missed", "failed", "sweep_done"], grace_seconds=120,
                     filters={"host": "local"})
    got = {c: napi.get(f"/notifications/channels/{c}").json() for c in (sweeps, missed, mixed)}
    assert (got[mixed]["events"], got[mixed]["filters"]["host"], got[mixed]["grace_seconds"]) == (
        ["failed", "sweep_done", "build_missed"], "local", 120)
    parts = gateway_call(lambda g: g.client.read_automations())
    mine = [a for a in parts if f"channel:{mixed}" in a.tags]
    assert sorted(t for a in mine for t in a.tags if t.startswith("kind:")) == ["kind:build_missed", "kind:job", "kind:sweep_done"]
    assert napi.delete(f"/notifications/channels/{mixed}").status_code == 200
    assert not [a for a in gateway_call(lambda g: g.client.read_automations()) if f"channel:{mixed}" in a.tags], "every part goes"
    assert (got[sweeps]["events"], got[sweeps]["filters"], got[sweeps]["grace_seconds"]) == (
        ["sweep_done"], {"user": "dan", "host": None, "sweep_id": "sw2"}, None)
    assert (got[missed]["events"], got[missed]["filters"]["host"], got[missed]["grace_seconds"]) == (["build_missed"], "local", 900)
    for channel in (sweeps, missed):
        assert napi.delete(f"/notifications/channels/{channel}").status_code == 200

    sent = napi.post(f"/notifications/channels/{email}/test").json()
    assert sent["outcome"] == "published" and sent["recipients"] == ["ops@example.org"] and sent["status"] == "test", sent
    [mail] = smtp.mailbox.about("A test send")
    assert mail["to"] == ["ops@example.org"] and mail["subject"] == "[OPEVA] Test notification"
    called = napi.post(f"/notifications/channels/{hook}/test").json()
    assert called["outcome"] == "published" and called["status_code"] == 200, called
    assert hooks.calls[-1]["path"] == "/t?token=s3cret" and hooks.calls[-1]["body"]["test"] is True

    log = napi.get("/notifications/deliveries", params={"limit": 200}).json()
    assert {(d["channel_id"], d["outcome"]) for d in log} >= {(email, "published"), (hook, "published")}
    assert [d["channel_id"] for d in napi.get("/notifications/deliveries", params={"channel_id": hook}).json()] == [hook]

    for channel in (email, hook):
        assert napi.delete(f"/notifications/channels/{channel}").status_code == 200
        assert napi.get(f"/notifications/channels/{channel}").status_code == 404
    assert napi.get("/notifications/deliveries", params={"channel_id": hook}).json(), "records outlive their channel"


def test_a_webhook_answering_500_is_recorded_failed(napi, receivers):
    _, hooks = receivers
    hook = _channel(napi, kind="webhook", url=hooks.url("/down"))
    hooks.status = 500
    try:
        record = napi.post(f"/notifications/channels/{hook}/test").json()
    finally:
        hooks.status = 200
        napi.delete(f"/notifications/channels/{hook}")
    assert record["outcome"] == "failed" and record["published"] is False and record["error"] == "HTTP 500", record


def _submit(napi: httpx.Client, user: str) -> str:
    r = napi.post("/run-simulation", json={"config": experiment("notify", uuid.uuid4().hex[:6]), "target_host": "local", "submitted_by": user})
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def test_a_failed_job_notifies_once_per_channel_and_a_stop_or_another_users_job_does_not(napi, receivers):
    smtp, hooks = receivers
    user = f"u{uuid.uuid4().hex[:8]}"
    channels = [_channel(napi, kind="email", to=f"{user}@example.org", filters={"user": user}),
                _channel(napi, kind="webhook", url=hooks.url(f"/{user}"), filters={"user": user, "host": "local"})]
    try:
        failed, stopped, others = _submit(napi, user), _submit(napi, user), _submit(napi, "someone-else")
        assert napi.post(f"/stop/{stopped}").json()["status"] == "canceled"
        t0 = time.time()
        for job in (failed, others):
            assert napi.post(f"/ops/jobs/{job}/fail", json={"reason": "forced for the notification test"}).status_code == 200
        wait_for(lambda: smtp.mailbox.about(failed) and hooks.about(failed), 15, 0.2, what="the e-mail and the webhook call")
        time.sleep(3)  # nothing more may come
        [mail], [call] = smtp.mailbox.about(failed), hooks.about(failed)
        assert mail["to"] == [f"{user}@example.org"] and mail["subject"].startswith("[OPEVA] Job failed:") and "on local" in mail["subject"]
        assert f"Job ID: {failed}" in mail["text"] and "Host: local" in mail["text"] and "State: Failed" in mail["text"]
        assert f"{UI}/app/ai/jobs/{failed}" in mail["text"] and f"Submitted by: {user}" in mail["text"]
        body = call["body"]
        assert (body["job_id"], body["host"], body["state"], body["ui_url"]) == (failed, "local", "Failed", f"{UI}/app/ai/jobs/{failed}")
        assert "forced for the notification test" in body["message"] and body["prefect_url"].endswith(f"/runs/flow-run/{failed}")
        assert mail["at"] - t0 < 15 and call["at"] - t0 < 15
        assert not smtp.mailbox.about(stopped) and not hooks.about(stopped) and not smtp.mailbox.about(others) and not hooks.about(others)

        def recorded() -> dict | None:
            info = napi.get(f"/job-info/{failed}").json()
            return info if len(info["email_notifications"]) == 2 else None

        info = wait_for(recorded, 15, what="both attempts recorded on the job")
        assert {r["channel"] for r in info["email_notifications"]} == {"email", "webhook"}
        assert all(r["outcome"] == "published" and r["job_id"] == failed and r["status"] == "failed" for r in info["email_notifications"])
        assert info["last_email_notification"] == info["email_notifications"][-1]
        assert napi.get(f"/status/{failed}").json()["email_notifications"] == info["email_notifications"]
        assert napi.get(f"/job-info/{stopped}").json()["email_notifications"] == []
        logged = napi.get("/notifications/deliveries", params={"job_id": failed}).json()
        assert sorted(r["channel"] for r in logged) == ["email", "webhook"]
    finally:
        for channel in channels:
            napi.delete(f"/notifications/channels/{channel}")


def test_with_tokens_a_users_channel_watches_only_their_jobs_and_is_theirs_alone(platform, receivers):
    from deployments.platform import Platform, free_port

    smtp, hooks = receivers
    secured = Platform(home=platform.home, prefect_port=platform.prefect_port, mongo_port=platform.mongo_port,
                       api_port=free_port(), data_dir=platform.data_dir)
    secured.start_api(OPEVA_API_TOKENS="alice:tok-alice,bob:tok-bob,root:tok-root", OPEVA_API_ADMINS="root",
                      OPEVA_HOSTS_FILE=str(platform.home / "hosts.yaml"), OPEVA_SMTP_HOST="127.0.0.1", OPEVA_SMTP_PORT=str(smtp.port))
    try:
        def client(token: str) -> httpx.Client:
            return httpx.Client(base_url=secured.api_url, timeout=30, headers={"Authorization": f"Bearer {token}"})

        with client("tok-alice") as alice, client("tok-bob") as bob, client("tok-root") as root:
            r = alice.post("/notifications/channels", json={"kind": "email", "to": "a@example.org", "filters": {"user": "bob"}})
            assert r.status_code == 403 and "only watch 'alice'" in r.json()["detail"], r.text
            r = alice.post("/notifications/channels", json={"kind": "webhook", "url": hooks.url("/a"), "events": ["build_missed"]})
            assert r.status_code == 403 and "admin" in r.json()["detail"], r.text
            # the Prefect server makes the call from inside the platform: a user's webhook may not reach private addresses
            for url in (hooks.url("/a"), "http://169.254.169.254/latest/meta-data", "http://10.1.2.3/x", "http://[::1]:4200/api"):
                r = alice.post("/notifications/channels", json={"kind": "webhook", "url": url})
                assert r.status_code == 400 and "admin's to make" in r.json()["detail"], (url, r.text)
            mine = alice.post("/notifications/channels", json={"kind": "email", "to": "alice@example.org"}).json()["channel_id"]
            assert alice.get(f"/notifications/channels/{mine}").json()["filters"]["user"] == "alice"  # narrowed to her own jobs
            assert alice.get(f"/notifications/channels/{mine}").json()["owner"] == "alice"
            assert mine not in [c["channel_id"] for c in bob.get("/notifications/channels").json()]
            for method, path in (("GET", f"/notifications/channels/{mine}"), ("POST", f"/notifications/channels/{mine}/test"),
                                 ("DELETE", f"/notifications/channels/{mine}")):
                assert bob.request(method, path).status_code == 404, path  # not even its existence
            assert alice.post(f"/notifications/channels/{mine}/test").json()["outcome"] == "published"
            assert not [d for d in bob.get("/notifications/deliveries").json() if d["channel_id"] == mine]
            assert [d["channel_id"] for d in alice.get("/notifications/deliveries", params={"channel_id": mine}).json()] == [mine]
            assert mine in [c["channel_id"] for c in root.get("/notifications/channels").json()]  # an admin sees all
            assert root.delete(f"/notifications/channels/{mine}").status_code == 200
            admins = root.post("/notifications/channels", json={"kind": "webhook", "url": hooks.url("/root")})
            assert admins.status_code == 201, admins.text  # an admin's webhook may reach the platform's own network
            assert root.post(f"/notifications/channels/{admins.json()['channel_id']}/test").json()["outcome"] == "published"
            assert root.delete(f"/notifications/channels/{admins.json()['channel_id']}").status_code == 200
            assert httpx.get(f"{secured.api_url}/notifications/channels").status_code == 401
    finally:
        secured.stop()
