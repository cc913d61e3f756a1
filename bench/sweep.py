"""The sweep acceptance run (issue 25 §1): a 3x3 grid x 2 seeds = 18 jobs over 2 hosts (pool limit 2
each) with max_parallel 4, through the REST API, on a throw-away platform with Docker workers and the
control pool's worker.

It prints one table: finished jobs, jobs per host, the most jobs in flight at once (from the jobs'
own start and end times) against max_parallel, the sweep's wall time against its floor in the same
run (the sum of the jobs' run times / max_parallel), the subflow runs Prefect links to the parent,
the rows of the two table artifacts, the children after a forced parent retry, and the time from a
stop mid-sweep to every child final.

    OPEVA_IMAGE=opeva-runtime:<tag> python3 bench/sweep.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _platform import running_platform  # noqa: E402
from _table import HEADER  # noqa: E402,F401  (puts the repository on sys.path)

from tools.polling import wait_until  # noqa: E402

import httpx  # noqa: E402

from core.sweep import max_in_flight  # noqa: E402
from deployments.platform import prefect_cli  # noqa: E402

BASE = {"experiment": {"name": "bench-sweep", "run_name": "r"}, "algorithm": "rule_based", "simulation": {"buildings": 2, "days": 7}}
GRID = {"algorithm.params.cheap_price_fraction": [0.1, 0.25, 0.4], "algorithm.params.grid_charge_soc": [0.0, 0.3, 0.6]}
MAX_PARALLEL = 4
FINAL = {"finished", "failed", "stopped", "canceled"}


def _t(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _prefect_reads(sweep_id: str) -> tuple[int, dict[str, int]]:
    """Subflow runs Prefect links to the parent, and the rows of its table artifacts by key."""
    import asyncio
    import json

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterParentFlowRunId

    async def read():
        async with get_client() as client:
            children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[UUID(sweep_id)])))
            arts = await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(sweep_id)])))
        rows = {a.key: len(a.data if isinstance(a.data, list) else json.loads(a.data)) for a in arts if a.type == "table"}
        return len(children), rows

    return asyncio.run(read())


def _parent(api: httpx.Client, sweep_id: str) -> dict:
    return api.get(f"/sweeps/{sweep_id}").json()


def acceptance(api: httpx.Client) -> list[tuple[str, str, str]]:
    body = {"config": BASE, "grid": GRID, "seeds": [1, 2], "hosts": ["h1", "h2"], "max_parallel": MAX_PARALLEL,
            "objective": {"metric": "electricity_cost", "mode": "min"}, "name": "bench"}
    submitted = time.time()
    r = api.post("/sweeps", json=body)
    r.raise_for_status()
    sweep_id, n = r.json()["sweep_id"], r.json()["n_jobs"]
    table = wait_until(lambda: (t := _parent(api, sweep_id))["status"] in FINAL and t, 1800, 1)
    ended = time.time()
    trials = table["trials"]
    per_host = {h: sum(1 for t in trials if t["host"] == h) for h in ("h1", "h2")}
    spans = [(_t(t["started_at"]), _t(t["finished_at"])) for t in trials if t["started_at"] and t["finished_at"]]
    work = sum(end - start for start, end in spans)
    jobs = api.get("/jobs", params={"sweep_id": sweep_id}).json()
    waits = [j["queue_wait_seconds"] for j in jobs if j.get("queue_wait_seconds") is not None]
    first_start = min(start for start, _ in spans)
    subflows, artifacts = _prefect_reads(sweep_id)
    summary_rows = len(api.get(f"/sweeps/{sweep_id}/summary.csv").text.strip().splitlines()) - 1
    out = subprocess.run(prefect_cli() + ["flow-run", "retry", sweep_id], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stdout + out.stderr)
    wait_until(lambda: (t := _parent(api, sweep_id))["status"] in FINAL and len(api.get("/jobs", params={"sweep_id": sweep_id}).json()) and t, 300, 1)
    time.sleep(2)
    after_retry = len(api.get("/jobs", params={"sweep_id": sweep_id}).json())
    return [
        ("jobs finished", f"{table['counts'].get('finished', 0)} / {n}", f"{n} (all)"),
        ("jobs per host (h1, h2)", f"{per_host['h1']}, {per_host['h2']}", ">= 6 each"),
        ("most jobs running at once", str(max_in_flight(spans)), f"<= max_parallel {MAX_PARALLEL}"),
        ("sweep wall time, submit to parent final (s)", f"{ended - submitted:.1f}", f"floor {work / MAX_PARALLEL:.1f} = {work:.1f} s of jobs / {MAX_PARALLEL}"),
        ("submit to the first job running (s)", f"{first_start - submitted:.1f}", "parent start on the control pool + one job start"),
        ("job created to running, mean / max (s)", f"{sum(waits) / len(waits):.1f} / {max(waits):.1f}", "worker pick-up + container start (+ a full pool)"),
        ("subflow runs linked to the parent", str(subflows), str(n)),
        ("trials table artifact rows", str(artifacts.get(f"sweep-{sweep_id}-trials")), str(n)),
        ("summary artifact rows / summary.csv rows", f"{artifacts.get(f'sweep-{sweep_id}-summary')} / {summary_rows}", "9 / 9"),
        ("jobs after a forced parent retry", str(after_retry), f"{n} (none added)"),
    ]


def stop_mid_sweep(api: httpx.Client) -> tuple[str, str, str]:
    slow = {**BASE, "algorithm": "q_learning", "episodes": 40, "simulation": {"buildings": 2, "days": 14}}
    r = api.post("/sweeps", json={"config": slow, "grid": {"algorithm.params.learning_rate": [0.1, 0.2, 0.3]}, "seeds": [1, 2],
                                  "hosts": ["h1", "h2"], "max_parallel": MAX_PARALLEL})
    r.raise_for_status()
    sweep_id = r.json()["sweep_id"]
    wait_until(lambda: _parent(api, sweep_id)["counts"].get("running", 0) >= 2, 300)
    started = time.monotonic()
    api.post(f"/sweeps/{sweep_id}/stop", timeout=60).raise_for_status()
    wait_until(lambda: all(t["status"] in FINAL for t in _parent(api, sweep_id)["trials"] if t["job_id"]), 60, 0.1)
    return ("stop mid-sweep -> every child final (s)", f"{time.monotonic() - started:.1f}", "<= 10 (Prefect's cascade: up to 20)")


def main() -> None:
    with running_platform({"h1": True, "h2": True}, api=True, concurrency=2) as platform:
        from deployments.control_pool import start_control_worker

        start_control_worker(platform)
        with httpx.Client(base_url=platform.api_url, timeout=60) as api:
            rows = acceptance(api) + [stop_mid_sweep(api)]
    print(f"| {'measure':<44} | {'value':>24} | {'baseline / target':<44} |")
    print(f"|{'-' * 46}|{'-' * 26}|{'-' * 46}|")
    for name, value, target in rows:
        print(f"| {name:<44} | {value:>24} | {target:<44} |")


if __name__ == "__main__":
    main()
