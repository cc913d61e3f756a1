"""A host that loses its worker (issue 22 item 4): Prefect's foreman marks its pool NOT_READY,
the automation ``opeva: move the queued jobs of a lost host`` runs ``move-lost-host-jobs`` on the
control pool, and the host's automatically placed queued job runs elsewhere, while a job pinned
to it waits. Real workers, containers and Prefect services; the worker of ``second`` is stopped
and started again."""

from __future__ import annotations

import os
import signal
import time

import pytest

from helpers import experiment, read_run, sh, wait_for

pytestmark = pytest.mark.usefixtures("needs_docker")

TICKS = sh('i=0; while true; do i=$((i+1)); echo "[INFO] tick $i"; sleep 0.5; done')


def _submit(api, command, **body) -> dict:
    r = api.post("/run-simulation", json={"config": experiment("lost", "r"), "command": command, **body})
    assert r.status_code == 200, r.text
    return r.json()


def _status(api, job_id: str) -> str:
    return api.get(f"/status/{job_id}").json()["status"]


def test_a_lost_hosts_automatic_job_runs_elsewhere_and_its_pinned_job_waits(api, platform):
    worker = next(s for s in platform.services if s.name.startswith("worker-second"))
    os.killpg(worker.proc.pid, signal.SIGKILL)  # the host is gone: no goodbye, its heartbeats just stop
    worker.proc.wait(10)
    lost_at = time.monotonic()
    pinned_local = [_submit(api, TICKS, target_host="local")["job_id"] for _ in range(4)]  # local full: automatic goes to second
    try:
        auto = _submit(api, sh("echo moved-and-ran"))
        assert auto["host"] == "second", auto  # Prefect still calls second's worker online for up to 30 s
        pinned = _submit(api, sh("echo never"), target_host="second")["job_id"]

        def moved():
            run = read_run(auto["job_id"])
            return run if run.state and run.state.is_final() else None

        old = wait_for(moved, 150, 1, what="the automation moving the automatic job off the lost host")
        print(f"\nLOST-HOST moved {time.monotonic() - lost_at:.1f} s after the worker died")
        assert old.state.is_cancelled() and "moved to host local as job" in (old.state.message or ""), old.state
        new_id = old.state.message.rsplit("as job ", 1)[1].strip()
        new = read_run(new_id)
        assert new.work_pool_name == "local" and new.parameters["target_host"] == "local" and f"requeued-from:{auto['job_id']}" in new.tags
        assert api.get(f"/job-info/{new_id}").json()["requeued_from"] == auto["job_id"]
        assert _status(api, pinned) == "queued", "a pinned job waits for its host"
        for job in pinned_local:
            api.post(f"/stop/{job}")
        assert wait_for(lambda: _status(api, new_id) in ("finished", "failed") and _status(api, new_id), 150, 1,
                        what="the moved job to run on local") == "finished"
    finally:
        for job in pinned_local:
            api.post(f"/stop/{job}")
        platform.spawn(worker)  # second is back for the next tests
    assert api.post(f"/stop/{pinned}").status_code == 200
