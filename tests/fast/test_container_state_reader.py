"""The run container's parent reads whether its run is Cancelling with one plain GET
(flows/container_entry.py StateReader), against the real Prefect server of this tier, with
Prefect's own address and credentials settings."""

from __future__ import annotations

import uuid

from prefect.settings import PREFECT_API_AUTH_STRING, temporary_settings
from prefect.states import Cancelling, Running

from flows.container_entry import StateReader
from helpers import experiment, gateway_call


def queued_job(api) -> uuid.UUID:
    r = api.post("/run-simulation", json={"config": experiment("reader", "r"), "command": ["true"], "target_host": "offline"})
    assert r.status_code == 200, r.text
    return uuid.UUID(r.json()["job_id"])


def set_state(run_id: uuid.UUID, state) -> None:
    async def go(gateway):
        await gateway.client.set_flow_run_state(run_id, state, force=True)

    gateway_call(go)


def test_the_reader_sees_cancelling_and_nothing_else(api):
    run_id = queued_job(api)
    with StateReader(run_id) as reader:
        assert not reader.is_cancelling()  # Scheduled
        set_state(run_id, Running())
        assert not reader.is_cancelling()
        set_state(run_id, Cancelling())
        assert reader.is_cancelling()


def test_a_refused_or_unknown_read_is_not_cancelling_and_raises_nothing(api):
    run_id = queued_job(api)
    set_state(run_id, Running())  # started: a run cancelled before it started goes straight to Cancelled
    set_state(run_id, Cancelling())
    with temporary_settings(updates={PREFECT_API_AUTH_STRING: "opeva:wrong"}):
        with StateReader(run_id) as wrong:
            assert not wrong.is_cancelling()  # 401: tried again at the next poll
    with StateReader(uuid.uuid4()) as unknown:
        assert not unknown.is_cancelling()  # 404
    with StateReader(run_id) as right:
        assert right.is_cancelling()
