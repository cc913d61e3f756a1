"""A worker's poll records itself at most once per window per pool (deployments/poll_bookkeeping.py).

First the rule on its own clock, then a real Prefect server started the platform's way with a
30 s window: a new pool's queue still turns ready on its first poll (the worker's return is never
delayed), the next polls in the window answer with the runs but leave ``last_polled`` alone.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deployments.platform import Platform, free_port
from deployments.poll_bookkeeping import PollRecords, window_seconds

QUEUES = "mark_work_queues_ready"
KEY = "mark_work_queues_ready:work_pool:p1"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_pool_records_once_per_window_and_a_queue_coming_back_at_once():
    clock = Clock()
    records = PollRecords(5.0, clock)
    assert records.due(QUEUES, KEY, {"ready_work_queue_ids": []})  # the first poll records
    clock.now += 1
    assert not records.due(QUEUES, KEY, {"ready_work_queue_ids": []})  # within the window: skipped
    assert records.due("mark_deployments_ready", "mark_deployments_ready:work_pool:p1", {})  # its own key
    assert records.due(QUEUES, "mark_work_queues_ready:work_pool:p2", {})  # another pool
    assert records.due(QUEUES, KEY, {"ready_work_queue_ids": ["q"]})  # a NOT_READY queue: always
    clock.now += 4.9
    assert not records.due(QUEUES, KEY, {})
    clock.now += 0.2
    assert records.due(QUEUES, KEY, {})  # the window has passed
    assert records.due("some_other_task", "k", {})  # nothing else is touched


def test_a_zero_window_records_every_poll_as_prefect_does():
    records = PollRecords(0.0, Clock())
    assert all(records.due(QUEUES, KEY, {}) for _ in range(3))


@pytest.mark.parametrize("raw, expected", [("", 5.0), ("0", 0.0), ("12.5", 12.5)])
def test_the_window_comes_from_the_environment(monkeypatch, raw, expected):
    monkeypatch.setenv("OPEVA_POLL_RECORD_SECONDS", raw)
    assert window_seconds() == expected


@pytest.mark.parametrize("raw", ["soon", "-1", "61"])
def test_a_window_that_could_hide_a_live_queue_is_refused(monkeypatch, raw):
    monkeypatch.setenv("OPEVA_POLL_RECORD_SECONDS", raw)
    with pytest.raises(ValueError, match="OPEVA_POLL_RECORD_SECONDS must be between 0 and 50"):
        window_seconds()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[httpx.Client]:
    home: Path = tmp_path_factory.mktemp("poll-records")
    platform = Platform(home=home, prefect_port=free_port(), mongo_port=free_port(), api_port=free_port(), data_dir=home / "data")
    try:
        platform.start_prefect_server(OPEVA_POLL_RECORD_SECONDS="30")
        token = base64.b64encode(platform.prefect_auth_string.encode()).decode()
        with httpx.Client(base_url=platform.prefect_api_url, headers={"Authorization": f"Basic {token}"}, timeout=30) as client:
            yield client
    finally:
        platform.stop()


def default_queue(client: httpx.Client, pool: str) -> dict:
    return client.get(f"/work_pools/{pool}/queues/default").raise_for_status().json()


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError("not within the timeout")


def test_a_real_server_records_the_first_poll_and_skips_the_next_ones_in_the_window(server):
    server.post("/work_pools/", json={"name": "poll-records", "type": "process"}).raise_for_status()
    assert default_queue(server, "poll-records")["status"] == "NOT_READY"  # never polled
    assert server.post("/work_pools/poll-records/get_scheduled_flow_runs", json={}).raise_for_status().json() == []
    ready = wait_for(lambda: (q := default_queue(server, "poll-records"))["status"] == "READY" and q)
    first = ready["last_polled"]
    assert first
    for _ in range(3):  # a worker polling every 0.5 s, well inside the 30 s window
        server.post("/work_pools/poll-records/get_scheduled_flow_runs", json={}).raise_for_status()
        time.sleep(0.5)
    time.sleep(1.0)  # the bookkeeping runs after the answer: give a (wrongly) queued one time to land
    after = default_queue(server, "poll-records")
    assert after["status"] == "READY"
    assert after["last_polled"] == first


def test_the_runs_a_poll_answers_with_are_untouched(server):
    """The worker still gets its scheduled run on a poll whose bookkeeping is skipped."""
    server.post("/work_pools/", json={"name": "poll-runs", "type": "process"}).raise_for_status()
    server.post("/work_pools/poll-runs/get_scheduled_flow_runs", json={}).raise_for_status()  # records; the next is skipped
    flow = server.post("/flows/", json={"name": "poll-records-flow"}).raise_for_status().json()
    deployment = server.post("/deployments/", json={"name": "d", "flow_id": flow["id"], "work_pool_name": "poll-runs"}).raise_for_status().json()
    run = server.post(f"/deployments/{deployment['id']}/create_flow_run", json={}).raise_for_status().json()
    answered = server.post("/work_pools/poll-runs/get_scheduled_flow_runs", json={}).raise_for_status().json()
    assert [r["flow_run"]["id"] for r in answered] == [run["id"]]
