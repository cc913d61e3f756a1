"""GET /jobs from the API's job index (api/job_index.py) stays what Prefect says, whoever writes.

Each test changes runs behind the API's back, through Prefect's own API (as a worker, another
API replica or the Prefect UI would), and reads /jobs straight after: the listing must show
the change at once (or, for a change only Prefect's event stream reports, once it arrives).
"""

from __future__ import annotations

import uuid

from helpers import experiment, gateway_call, wait_for

FILTERS = ("queued", "running", "finished", "failed", "stopped", "canceled", "stop_requested", "setup", "dispatched")


def _submit(api) -> str:
    r = api.post("/run-simulation", json={"config": experiment("index", "q"), "command": ["true"], "target_host": "offline"})
    assert r.status_code == 200, r.text
    return r.json()["job_id"]


def _listed(api, **params) -> dict[str, str]:
    r = api.get("/jobs", params=params)
    assert r.status_code == 200, r.text
    assert int(r.headers["X-Total-Count"]) == len(r.json())
    return {j["job_id"]: j["status"] for j in r.json()}


def _set_state(job_id: str, state) -> None:
    async def go(gateway):
        await gateway.client.set_flow_run_state(uuid.UUID(job_id), state, force=True)
    gateway_call(go)


def test_a_worker_s_state_changes_show_at_once(api):
    from prefect.states import Completed, Pending, Running

    job = _submit(api)
    assert _listed(api)[job] == "queued"
    _set_state(job, Pending())
    _set_state(job, Running())
    assert _listed(api)[job] == "setup"  # made by the API in setup: running once its flow says the simulator started
    _set_state(job, Completed())
    assert _listed(api)[job] == "finished"  # left the live set: read again before the answer
    assert job in _listed(api, status="finished") and job not in _listed(api, status="setup")


def test_runs_made_and_ended_elsewhere_and_deletions_elsewhere_show_at_once(api):
    from prefect.states import Failed

    async def made_elsewhere(gateway):
        deployment = await gateway.deployment_id("run-simulation", "offline")
        run = await gateway.client.create_flow_run_from_deployment(deployment, parameters={"config": experiment("elsewhere", "x"), "command": ["true"], "target_host": "offline"},
                                                                   state=Failed(message="ended before any listing"))
        return str(run.id)

    _listed(api)  # the index is built and current
    job = gateway_call(made_elsewhere)
    assert _listed(api)[job] == "failed"
    gateway_call(lambda g: g.client.delete_flow_run(uuid.UUID(job)))
    assert job not in _listed(api)


def test_a_final_run_changed_in_the_prefect_ui_shows_through_the_event_stream(api):
    from prefect.states import Cancelled, Completed

    job = _submit(api)
    _set_state(job, Completed())
    assert _listed(api)[job] == "finished"
    _set_state(job, Cancelled(message="marked by an operator in the Prefect UI"))  # final to final: no count, no live set change
    wait_for(lambda: _listed(api).get(job) in ("stopped", "canceled"), timeout=30, what="the event to reach the index")


def test_every_filter_lists_what_prefect_lists(api):
    from prefect.states import Cancelling, Crashed, Pending, Running

    jobs = [_submit(api) for _ in range(5)]
    for job, state in zip(jobs, (Pending(), Running(), Crashed(message="lost"), Cancelling())):
        _set_state(job, state)

    async def prefect_view(gateway):
        out = {}
        for status in (None, *FILTERS):
            runs, _ = await gateway.list_runs(status=status, limit=None)
            out[status] = {str(r.id) for r in runs}
        return out

    truth = gateway_call(prefect_view)
    for status in (None, *FILTERS):
        assert set(_listed(api, **({"status": status} if status else {}))) == truth[status], status
    page = api.get("/jobs", params={"limit": 2, "offset": 1})
    everything = list(_listed(api))
    assert [j["job_id"] for j in page.json()] == everything[1:3] and int(page.headers["X-Total-Count"]) == len(everything)
