"""Sweeps as one experiment, on the real platform: the parent on the control pool, issue 25's
3×3 grid × 2 seeds = 18 trials as subflow runs of run-simulation over two Docker hosts of limit 2
each in a sliding window, a forced parent retry that adds no child, and a stop mid-sweep that leaves every child final within 10 s. A
``sweep_done`` webhook channel (issue 25 §3) hears each end of a sweep once, and not its stop."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from uuid import UUID

import pytest
from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, FlowFilter, FlowFilterName, FlowRunFilter,
                                            FlowRunFilterParentFlowRunId)

from core.sweep import max_in_flight
from helpers import gateway_call, prefect_cmd, read_run, wait_for
from notify_receivers import receivers  # noqa: F401  (module fixture)

pytestmark = pytest.mark.usefixtures("needs_docker")

SMALL = {"experiment": {"name": "sweep-e2e", "run_name": "r"}, "algorithm": "rule_based", "simulation": {"buildings": 1, "days": 1}}
GRID = {"algorithm.params.cheap_price_fraction": [0.1, 0.2, 0.3], "algorithm.params.grid_charge_soc": [0.0, 0.25, 0.5]}
FINAL = {"finished", "failed", "stopped", "canceled"}
SWEEPER = f"sweeper-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def sweep_calls(platform, receivers) -> Iterator:
    """A ``sweep_done`` webhook channel on this module's sweeps; yields the calls it got, by sweep id."""
    import httpx

    _, hooks = receivers
    with httpx.Client(base_url=platform.api_url, timeout=30) as api:
        r = api.post("/notifications/channels", json={"kind": "webhook", "url": hooks.url("/sweeps"), "events": ["sweep_done"],
                                                      "filters": {"user": SWEEPER}})
        assert r.status_code == 201, r.text
        yield lambda sweep_id: [c for c in hooks.calls if c["path"] == "/sweeps" and c["body"].get("job_id") == sweep_id]
        api.delete(f"/notifications/channels/{r.json()['channel_id']}")


def _children(sweep_id: str) -> list:
    """Every flow run Prefect links to the parent as its subflow run."""
    flt = FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[UUID(sweep_id)]))
    return gateway_call(lambda g: g.client.read_flow_runs(flow_run_filter=flt, flow_filter=FlowFilter(name=FlowFilterName(any_=["run-simulation"]))))


@pytest.fixture
def two_slots_each() -> Iterator[None]:
    """Issue 25's accept line runs on two hosts of limit 2: the test platform's ``local`` has 4
    slots, so its pool's limit (Prefect's own, which the sweep reads) is 2 for this test."""
    from prefect.client.schemas.actions import WorkPoolUpdate

    before = gateway_call(lambda g: g.client.read_work_pool("local")).concurrency_limit
    gateway_call(lambda g: g.client.update_work_pool("local", WorkPoolUpdate(concurrency_limit=2)))
    try:
        yield
    finally:
        gateway_call(lambda g: g.client.update_work_pool("local", WorkPoolUpdate(concurrency_limit=before)))


def _wait_parent(sweep_id: str, timeout: float = 300, run_count: int = 1):
    def done():
        run = read_run(sweep_id)
        return run if run.state and run.state.is_final() and run.run_count >= run_count else None

    run = wait_for(done, timeout, interval=1, what=f"sweep {sweep_id} to end")
    if run.state.is_failed():  # say why in the failure
        logs = gateway_call(lambda g: g.logs(sweep_id))
        print("\n".join(entry.message for entry in logs)[-4000:])
    return run


def _epoch(text: str | None) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_sweep_runs_every_trial_in_a_window_and_a_retry_adds_no_child(api, sweep_calls, two_slots_each):
    r = api.post("/sweeps", json={"config": SMALL, "grid": GRID, "seeds": [1, 2], "hosts": ["local", "second"], "max_parallel": 4,
                                  "objective": {"metric": "electricity_cost", "mode": "min"}, "name": "e2e", "submitted_by": SWEEPER})
    assert r.status_code == 202, r.text
    sweep_id = r.json()["sweep_id"]
    assert r.json()["n_jobs"] == 18
    parent = _wait_parent(sweep_id, timeout=600)
    assert parent.state.is_completed(), parent.state
    assert parent.work_pool_name == "control"
    [call] = wait_for(lambda: sweep_calls(sweep_id), 15, 0.2, what="the sweep_done notice")
    body = call["body"]
    assert (body["about"], body["flow"], body["state"], body["submitted_by"], body["ui_url"]) == (
        "sweep_done", "run-sweep", "Completed", SWEEPER, None), body
    assert body["prefect_url"].endswith(f"/runs/flow-run/{sweep_id}") and call["at"] - parent.state.timestamp.timestamp() < 15

    table = api.get(f"/sweeps/{sweep_id}").json()
    assert table["counts"] == {"finished": 18}, table["counts"]
    trials = table["trials"]
    per_host = {h: sum(t["host"] == h for t in trials) for h in ("local", "second")}
    assert min(per_host.values()) >= 6 and sum(per_host.values()) == 18, per_host
    assert all(isinstance(t["objective"], float) for t in trials)
    assert {t["seed"] for t in trials} == {1, 2}
    peak = max_in_flight([(_epoch(t["started_at"]), _epoch(t["finished_at"])) for t in trials])
    assert 1 <= peak <= 4, peak
    print(f"\nSWEEP 18 trials: per host {per_host}, most in flight {peak} (max_parallel 4)")
    assert table["best_trial"] == min(trials, key=lambda t: (t["objective"], t["trial"]))["trial"]

    rows = list(csv.reader(io.StringIO(api.get(f"/sweeps/{sweep_id}/summary.csv").text)))
    assert len(rows) == 1 + 9 and rows[0][-3:] == ["n", "electricity_cost_mean", "electricity_cost_std"]
    for row, point in zip(rows[1:], range(9)):
        values = [t["objective"] for t in trials if t["point"] == point]
        assert row[-3] == "2" and float(row[-2]) == pytest.approx(sum(values) / 2)
        assert float(row[-1]) >= 0

    jobs = api.get("/jobs", params={"sweep_id": sweep_id}).json()
    assert sorted(j["job_id"] for j in jobs) == sorted(t["job_id"] for t in trials)
    assert api.get(f"/job-info/{trials[0]['job_id']}").json()["sweep_id"] == sweep_id
    children = _children(sweep_id)
    assert sorted(str(c.id) for c in children) == sorted(t["job_id"] for t in trials)  # 18 subflow runs in the Prefect UI

    arts = gateway_call(lambda g: g.client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(sweep_id)]))))
    tables = {a.key: a.data if isinstance(a.data, list) else json.loads(a.data) for a in arts if a.type == "table"}
    assert len(tables[f"sweep-{sweep_id}-trials"]) == 18  # a table artifact of 18 rows
    summary = tables[f"sweep-{sweep_id}-summary"]
    assert len(summary) == 9 and all("electricity_cost_mean" in row and "electricity_cost_std" in row for row in summary), summary[:2]

    # A forced retry of the parent (the Prefect UI's Retry does the same) re-runs it: every trial is adopted, no child is added.
    out = subprocess.run(prefect_cmd("flow-run", "retry", sweep_id), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    again = _wait_parent(sweep_id, run_count=2)
    assert again.state.is_completed() and again.run_count == 2
    assert sorted(str(c.id) for c in _children(sweep_id)) == sorted(t["job_id"] for t in trials)
    assert len(api.get("/jobs", params={"sweep_id": sweep_id}).json()) == 18
    wait_for(lambda: len(sweep_calls(sweep_id)) == 2, 15, 0.2, what="the second run's sweep_done notice")  # each end of the sweep, once


def test_stop_mid_sweep_leaves_every_child_final_within_10_s(api, sweep_calls):
    slow = {**SMALL, "algorithm": "q_learning", "episodes": 40, "simulation": {"buildings": 2, "days": 14}}
    r = api.post("/sweeps", json={"config": slow, "grid": {"algorithm.params.learning_rate": [0.1, 0.2, 0.3]}, "seeds": [1, 2],
                                  "hosts": ["local", "second"], "max_parallel": 2, "name": "stop", "submitted_by": SWEEPER})
    assert r.status_code == 202, r.text
    sweep_id = r.json()["sweep_id"]

    def running():
        t = api.get(f"/sweeps/{sweep_id}").json()
        return t if t["counts"].get("running", 0) >= 1 else None

    wait_for(running, 180, interval=0.5, what="a trial to run")
    started = time.monotonic()
    answer = api.post(f"/sweeps/{sweep_id}/stop", timeout=30)
    assert answer.status_code == 200, answer.text

    def all_final():
        t = api.get(f"/sweeps/{sweep_id}").json()
        statuses = [x["status"] for x in t["trials"] if x["job_id"]]
        return t if statuses and all(s in FINAL for s in statuses) else None

    table = wait_for(all_final, 10, interval=0.2, what="every child final")
    elapsed = time.monotonic() - started
    assert elapsed <= 10, elapsed
    assert answer.json()["final"] is True and answer.json()["cancelled"] >= 1
    assert table["counts"].get("pending", 0) >= 1  # trials not started stay so
    parent = _wait_parent(sweep_id, timeout=60)
    assert parent.state.is_cancelled(), parent.state
    time.sleep(3)  # nothing starts after the stop
    assert len(_children(sweep_id)) == len([t for t in table["trials"] if t["job_id"]])
    assert sweep_calls(sweep_id) == [], "a stopped sweep (Cancelled) notifies no one"


def test_prefect_cli_starts_a_sweep_on_the_control_pool_with_automatic_hosts(api, storage):
    storage.config_file("sweep-cli.yaml").write_text("experiment: {name: sweep-cli, run_name: r}\nalgorithm: rule_based\nsimulation: {buildings: 1, days: 1}\n")
    out = subprocess.run(prefect_cmd("deployment", "run", "run-sweep/control", "-p", "base_config=sweep-cli.yaml",
                                     "-p", 'grid={"algorithm.params.cheap_price_fraction": [0.2, 0.4]}', "-p", "seeds=[5]",
                                     "-p", 'objective={"metric": "electricity_cost", "mode": "max"}'), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    sweep_id = next(line.split()[-1] for line in out.stdout.splitlines() if "UUID:" in line)
    parent = _wait_parent(sweep_id)
    assert parent.state.is_completed(), parent.state
    table = api.get(f"/sweeps/{sweep_id}").json()
    assert table["counts"] == {"finished": 2} and {t["seed"] for t in table["trials"]} == {5}
    assert {t["host"] for t in table["trials"]} <= {"local", "second"}  # auto: the hosts with a worker online, never "offline"
    configs = [api.get(f"/job-info/{t['job_id']}").json()["parameters"]["config"] for t in table["trials"]]
    assert [c["algorithm"]["params"]["cheap_price_fraction"] for c in configs] == [0.2, 0.4] and all(c["seed"] == 5 for c in configs)
