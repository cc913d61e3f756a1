"""/sweeps over HTTP against a real Prefect server (fast tier: no worker, so the sweep's parent
stays queued): bad input is a 400 with a clear detail and starts nothing; a good one is a 202
whose table lists every trial as pending; the summary has one row per grid point; stop ends it."""

from __future__ import annotations

import csv
import io

import pytest

from helpers import gateway_call

BASE = {"experiment": {"name": "sweep", "run_name": "r"}, "algorithm": "rule_based", "simulation": {"buildings": 1, "days": 1}}
GRID = {"algorithm.params.cheap_price_fraction": [0.1, 0.2], "episodes": [1, 2]}


def _sweep_runs() -> int:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    return gateway_call(lambda g: g.client.count_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["run-sweep"]))))


@pytest.mark.parametrize("body, words", [
    ({"config": BASE, "grid": {}}, "grid is empty"),
    ({"config": BASE, "grid": {"algorithm.params.cheap_fraction": [0.1]}}, "unknown key 'algorithm.params.cheap_fraction'"),
    ({"config": BASE, "grid": {"episodes": list(range(1, 151))}, "seeds": [1, 2, 3, 4]}, "600 trials; a sweep runs at most 500"),
    ({"config": BASE, "grid": GRID, "hosts": ["nowhere"]}, "unknown host 'nowhere'"),
    ({"config": BASE, "grid": {"episodes": [0]}}, "episodes"),
    ({"grid": GRID}, "exactly one of base_config"),
])
def test_bad_sweeps_are_400_and_start_nothing(api, body, words):
    before = _sweep_runs()
    r = api.post("/sweeps", json=body)
    assert r.status_code == 400, r.text
    assert words in r.json()["detail"]
    assert _sweep_runs() == before


def test_a_sweep_is_accepted_listed_summarised_and_stopped(api, storage):
    storage.config_file("sweep-base.yaml").write_text("experiment: {name: sweep, run_name: r}\nalgorithm: rule_based\nsimulation: {buildings: 1, days: 1}\n")
    r = api.post("/sweeps", json={"base_config": "sweep-base.yaml", "grid": GRID, "seeds": [1, 2], "hosts": ["local"], "max_parallel": 2,
                                  "objective": {"metric": "electricity_cost", "mode": "min"}, "name": "fast"})
    assert r.status_code == 202, r.text
    sweep_id, n = r.json()["sweep_id"], r.json()["n_jobs"]
    assert n == 8
    table = api.get(f"/sweeps/{sweep_id}").json()
    assert table["status"] == "queued" and table["n_jobs"] == 8 and table["counts"] == {"pending": 8}
    assert [t["trial"] for t in table["trials"]] == list(range(8)) and table["trials"][3]["params"] == {"algorithm.params.cheap_price_fraction": 0.1, "episodes": 2}
    rows = list(csv.reader(io.StringIO(api.get(f"/sweeps/{sweep_id}/summary.csv").text)))
    assert rows[0] == ["point", "algorithm.params.cheap_price_fraction", "episodes", "n", "electricity_cost_mean", "electricity_cost_std"]
    assert len(rows) == 5 and rows[1][-3:] == ["0", "", ""]
    assert api.get("/jobs", params={"sweep_id": sweep_id}).json() == []
    stopped = api.post(f"/sweeps/{sweep_id}/stop").json()
    assert stopped["final"] is True and stopped["cancelled"] == 0 and stopped["status"] == "canceled"


def test_unknown_sweep_and_a_job_that_is_not_a_sweep_are_404(api):
    assert api.get("/sweeps/00000000-0000-0000-0000-000000000000").status_code == 404
    job = api.post("/run-simulation", json={"config": BASE, "target_host": "offline"}).json()["job_id"]
    r = api.get(f"/sweeps/{job}")
    assert r.status_code == 404 and "not a run-sweep run" in r.json()["detail"]
    assert api.get("/sweeps/not-a-uuid").status_code in (400, 422)
