"""A job survives a restart of the Prefect server: the run ends Completed and its
states are recorded; its dataset lineage (issue 25 §5) survives that restart and another with
Prefect's event retention at 0, when Prefect no longer holds a single event of the job. Runs
last (marker ``disruptive``): it restarts the server."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from simulator.sample import write_sample_dataset

from helpers import experiment, gateway_call, read_run, sh, wait_for

pytestmark = [pytest.mark.usefixtures("needs_docker"), pytest.mark.disruptive]


def test_job_completes_across_a_prefect_server_restart(storage, platform, api):
    script = 'for i in $(seq 1 30); do echo "[INFO] step $i"; echo "{\\"percent\\": $((i*100/30))}" > "$OPEVA_PROGRESS_FILE"; sleep 1; done'
    dataset = f"restart-{uuid.uuid4().hex[:6]}"  # lineage is the platform's own record: a restart loses none of it
    write_sample_dataset(storage.dataset_dir(dataset), buildings=1, days=1)
    params = {"config": {**experiment(), "dataset": dataset}, "command": sh(script)}
    job_id = str(gateway_call(lambda g: g.submit("run-simulation", "local", params)).id)
    wait_for(lambda: read_run(job_id).state.is_running(), 90, what="the job to run")

    _restart(platform)  # same port, same database

    run = wait_for(lambda: (r := read_run(job_id)).state.is_final() and r, 180, what="the job to finish")
    assert run.state.is_completed(), run.state
    names = [s.name for s in gateway_call(lambda g: g.client.read_flow_run_states(run.id))]
    assert "Running" in names and names[-1] == "Completed"
    lineage = api.get(f"/dataset/{dataset}/lineage").json()
    assert [[j["job_id"] for j in v["jobs"]] for v in lineage["versions"]] == [[job_id]]
    assert lineage["versions"][0]["jobs"][0]["status"] == "finished" and lineage["versions"][0]["current"] is True
    assert "[INFO] step 30" in storage.job(job_id).log_file.read_text()

    # Event retention 0 (Prefect OSS keeps events 7 days, then forgets): lineage is not built on them.
    assert _events_of(job_id) > 0
    try:
        _restart(platform, PREFECT_SERVER_EVENTS_RETENTION_PERIOD="PT0S", PREFECT_SERVER_SERVICES_DB_VACUUM_LOOP_SECONDS="1")
        wait_for(lambda: _events_of(job_id) == 0, 90, interval=1, what="Prefect's vacuum to delete the job's events")
        assert api.get(f"/dataset/{dataset}/lineage").json() == lineage
        assert api.get(f"/job-info/{job_id}").json()["dataset"]["name"] == dataset
    finally:
        _restart(platform)  # the default retention again


def _restart(platform, **settings: str) -> None:
    server = next(s for s in platform.services if s.name == "prefect-server" and s.proc.poll() is None)
    os.killpg(server.proc.pid, signal.SIGTERM)
    server.proc.wait(timeout=30)
    platform.start_prefect_server(**settings)


def _events_of(job_id: str) -> int:
    """How many events Prefect still holds about the job's flow run (its own events API)."""
    async def count(g):
        r = await g.client._client.post("/events/filter", json={"filter": {"any_resource": {"id": [f"prefect.flow-run.{job_id}"]}}, "limit": 50})
        r.raise_for_status()
        return r.json()["total"]

    return gateway_call(count)
