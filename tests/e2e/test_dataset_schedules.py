"""Scheduled dataset builds end to end (issue 25 §2 "Accept"): a one-minute cron on two sites,
Prefect's own scheduler making the runs, a Docker worker building them, CityLearn loading them.

- each site gets one dataset per minute, named after its window's end, whose window ends exactly
  at the run's scheduled start (Prefect's expected start time);
- two sites on one cron: both build the same slot;
- pausing one: no run of it is scheduled after the pause, while the other goes on;
- the datasets load in CityLearn (its own venv; CI requires it).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from core.dataset_check import citylearn_python, validate
from helpers import gateway_call, wait_for
from tools.seed_site import seed_site


def _built(api, prefix: str) -> list[str]:
    return sorted(d["name"] for d in api.get("/datasets").json() if d["name"].startswith(f"{prefix}-"))


def _scheduled_starts(site: str) -> dict[str, datetime]:
    """Completed build runs of ``site``: flow run name -> Prefect's expected (scheduled) start."""

    async def read(gateway):
        runs = await gateway.client.read_flow_runs(limit=200)
        return {r.name: r.expected_start_time for r in runs
                if r.parameters.get("site_id") == site and r.state_type and r.state_type.value == "COMPLETED"}

    return gateway_call(read)


def _runs_of(site: str) -> list[tuple[str, str, str]]:
    """(name, state, message) of every run for ``site``: what a timeout reports."""

    async def read(gateway):
        runs = await gateway.client.read_flow_runs(limit=200)
        return [(r.name, r.state_name, (r.state.message or "")[:300] if r.state else "") for r in runs if r.parameters.get("site_id") == site]

    return gateway_call(read)


def _wait_built(api, site: str, count: int, timeout: float) -> list[str]:
    try:
        return wait_for(lambda: (lambda b: b if len(b) >= count else None)(_built(api, site)), timeout=timeout, interval=2,
                        what=f"{count} scheduled build(s) of {site}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; its runs: {_runs_of(site)}") from None


def test_a_minute_cron_builds_each_slot_of_two_sites_and_pause_stops_one(api, mongo, storage, needs_docker):
    if citylearn_python() is None and os.environ.get("OPEVA_REQUIRE_CITYLEARN") == "1":
        pytest.fail("OPEVA_REQUIRE_CITYLEARN=1 but no CityLearn Python")
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    sites = [f"sched_{uuid.uuid4().hex[:6]}" for _ in range(2)]
    for k, site in enumerate(sites):
        seed_site(mongo, site=site, days=3, buildings=2, seed=11 + k, end=tomorrow)
    made = []
    for site in sites:
        # one-minute steps: a window's ends are floored to the time step, so a minute cron needs minute steps to end exactly
        r = api.post("/dataset/schedules", json={"site_id": site, "cron": "* * * * *", "window": "last_1h", "period": 1,
                                                 "citylearn_configs": {"validation": {"smoke_check": False}}})
        assert r.status_code == 201, r.text
        made.append(r.json())
    assert all(len(m["next_runs"]) == 3 for m in made)

    first_b = _wait_built(api, sites[1], 1, timeout=180)
    paused_at = datetime.now(timezone.utc)
    assert api.post(f"/dataset/schedules/{made[1]['schedule_id']}/pause").json()["active"] is False
    two_a = _wait_built(api, sites[0], 2, timeout=240)

    # two sites on one cron: B's first slot was built for A too
    assert first_b[0].split("-", 1)[1] in {name.split("-", 1)[1] for name in _built(api, sites[0])}
    # windows end exactly at the scheduled start, and the name says that end
    starts = _scheduled_starts(sites[0])
    assert len(starts) >= 2
    for name in two_a[:2]:
        meta = json.loads((storage.dataset_dir(name) / "dataset.json").read_text())
        until = datetime.fromisoformat(meta["until"])
        start = datetime.fromisoformat(meta["from"])
        assert until - start == timedelta(hours=1) and meta["time_steps"] == 60
        assert until in {s.astimezone(timezone.utc) for s in starts.values()}, (name, meta["until"], starts)
        assert name == f"{sites[0]}-{until:%Y%m%dT%H%MZ}"
        checked = validate(storage.dataset_dir(name), smoke=None)
        assert checked["static"]["passed"], checked["static"]
        if citylearn_python() is not None:
            assert checked["citylearn"]["status"] == "passed", checked["citylearn"]
    # paused: no slot of B after the pause (a run already started when it was paused may finish)
    late = [n for n in _built(api, sites[1]) if datetime.strptime(n.split("-", 1)[1], "%Y%m%dT%H%MZ").replace(tzinfo=timezone.utc)
            > paused_at + timedelta(minutes=1)]
    assert late == [], late
    for m in made:
        assert api.delete(f"/dataset/schedules/{m['schedule_id']}").status_code == 200
