"""A missed nightly build notifies (issue 25 §3: "a missed nightly build → one notice after its
grace"), against the real Prefect server: its scheduler makes the runs of a one-minute cron, its
late-runs service marks them Late (no worker in this tier: nothing starts them), and a
``build_missed`` channel's proactive automation fires once per run still not Running after the
grace. A run that starts within its grace (here: set Running by hand, as a worker would) does
not notify; a channel on another host hears nothing.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId, FlowRunFilterState, FlowRunFilterStateName
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled, Running

from helpers import gateway_call, wait_for
from notify_receivers import napi, receivers  # noqa: F401  (module fixtures)
from test_datasets_build import fill_site

GRACE = 10


def _late_runs(sites: list[str]) -> dict[str, list]:
    """site -> its build-dataset/local runs Prefect has marked Late."""

    async def read(gateway):
        dep = await gateway.client.read_deployment_by_name("build-dataset/local")
        late = FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[dep.id]), state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Late"])))
        return await gateway.client.read_flow_runs(flow_run_filter=late, limit=200)  # a minute cron makes an hour of runs ahead

    runs = gateway_call(read)
    return {s: [r for r in runs if r.parameters.get("site_id") == s] for s in sites}


def _set_state(run_id, state) -> None:
    gateway_call(lambda g: g.client.set_flow_run_state(run_id, state, force=True))


def _cancel_if_there(run_id) -> None:
    """Deleting a schedule deletes its runs not started: the rest end Cancelled."""
    try:
        _set_state(run_id, Cancelled(message="notification test over"))
    except ObjectNotFound:
        pass


def test_a_build_still_late_after_its_grace_is_one_notice_and_one_that_started_is_none(napi, receivers, mongo):
    _, hooks = receivers
    started, missed = sites = [f"nb_{uuid.uuid4().hex[:6]}" for _ in range(2)]
    for site in sites:
        fill_site(mongo, site)
    path = f"/missed-{uuid.uuid4().hex[:6]}"
    channels = [napi.post("/notifications/channels", json={"kind": "webhook", "url": hooks.url(path), "events": ["build_missed"],
                                                           "grace_seconds": GRACE, "filters": {"host": "local"}}).json()["channel_id"],
                napi.post("/notifications/channels", json={"kind": "webhook", "url": hooks.url(f"{path}-second"), "events": ["build_missed"],
                                                           "filters": {"host": "second"}}).json()["channel_id"]]
    schedules = [napi.post("/dataset/schedules", json={"site_id": s, "cron": "* * * * *", "window": "last_1h", "period": 1}).json()["schedule_id"]
                 for s in sites]
    cleanup: set = set()
    try:
        late = wait_for(lambda: (lambda r: r if r[started] and r[missed] else None)(_late_runs(sites)), 120, 0.5,
                        what="Prefect marking both builds of the first slot Late")
        late_at = time.time()
        first = {s: min(late[s], key=lambda r: r.expected_start_time) for s in sites}
        _set_state(first[started].id, Running(message="started within its grace (the test, as a worker would)"))
        cleanup |= {r.id for runs in late.values() for r in runs}

        calls = lambda: [c for c in hooks.calls if c["path"] == path and c["body"].get("job_id") == str(first[missed].id)]  # noqa: E731
        [call] = wait_for(calls, 60, 0.5, what="the missed build's notice")
        print(f"\nBUILD-MISSED notice {call['at'] - late_at:.1f} s after the run was seen Late (grace {GRACE} s)")
        time.sleep(GRACE + 6)  # the started run's bucket has expired by now: it would have fired
        body = call["body"]
        assert len(calls()) == 1, calls()
        assert (body["about"], body["flow"], body["host"], body["state"]) == ("build_missed", "build-dataset", "local", "Late"), body
        assert datetime.fromisoformat(body["scheduled"]) == first[missed].expected_start_time.astimezone(timezone.utc), body
        assert body["ui_url"].endswith(f"/app/ai/jobs/{first[missed].id}") and body["prefect_url"].endswith(str(first[missed].id))
        assert not [c for c in hooks.calls if c["body"].get("job_id") == str(first[started].id)], "a build that started is not missed"
        assert not [c for c in hooks.calls if c["path"] == f"{path}-second"], "the channel on host second heard of a build on local"
        logged = napi.get("/notifications/deliveries", params={"channel_id": channels[0]}).json()
        assert [(r["job_id"], r["outcome"], r["status"]) for r in logged if r["job_id"] == str(first[missed].id)] == [
            (str(first[missed].id), "published", "late")]
    finally:
        for schedule in schedules:
            napi.delete(f"/dataset/schedules/{schedule}")
        for channel in channels:
            napi.delete(f"/notifications/channels/{channel}")
        for run_id in cleanup | {r.id for runs in _late_runs(sites).values() for r in runs}:
            _cancel_if_there(run_id)
