"""GET /jobs with 1,000 jobs and their ETAs, start estimates and failure codes; GET /hosts.

1,000 flow runs are created straight through Prefect's API (bulk create in their final
states), none of them run: 4 hosts with concurrency 2, 8 running jobs with progress files (so
their ETAs compute), 40 queued behind them (so every start estimate has work to do), 60 failed
with their failure texts and result files, the rest finished. A worker
heartbeat per host makes the hosts online. The baseline, in the same run: Prefect's own
read of the same 1,000 runs (the pages the API reads) and a bare /health round trip.

Usage: python bench/jobs_listing.py [--jobs 1000] [--requests 30]
Targets (issue 19): GET /jobs p50 <= 150 ms, GET /hosts p50 <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import datetime, timedelta, timezone

# _platform points this process (Prefect's client) at its bench platform when imported.
from _platform import HEADER, HOSTS_FILE, PLATFORM, pct, row

HOSTS = ("h1", "h2", "h3", "h4")


def _kind(k: int) -> str:
    """Per host: 2 running, 10 queued, 15 failed, the rest finished."""
    return "running" if k < 2 else "queued" if k < 12 else "failed" if k < 27 else "finished"


STATES = {
    "running": {"type": "SCHEDULED", "name": "Scheduled"},
    "queued": {"type": "SCHEDULED", "name": "Scheduled"},
    "failed": {"type": "FAILED", "name": "Failed", "message": "Flow run encountered an exception: SimulatorFailed: simulator exited with code 137"},
    "finished": {"type": "COMPLETED", "name": "Completed"},
}


async def populate(client, jobs: int) -> None:
    """``jobs`` runs in the shapes described above, through Prefect's API only: created in
    their final state by the bulk create (one call per 100 runs), the running ones moved on."""
    from prefect.states import Pending, Running

    from api.gateway import PrefectGateway, RunRequest
    from core.layout import DataRoot

    gateway = PrefectGateway(client)
    storage = DataRoot(PLATFORM.data_dir)
    later = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()  # queued a day ahead: no late-run noise
    per_host = jobs // len(HOSTS)
    now = time.time()
    for host in HOSTS:
        deployment = await gateway.deployment_id("run-simulation", host)
        kinds = [_kind(k) for k in range(per_host)]
        made: list[str] = []
        while len(made) < per_host:
            body = []
            for k in range(len(made), min(per_host, len(made) + 100)):
                request = RunRequest(parameters={"config": {"experiment": {"name": "bench", "run_name": str(k)}}, "command": ["true"],
                                                 "target_host": host, "submitted_by": "bench"}, name=f"bench-{host}-{k}").body()
                request["state"] = {**STATES[kinds[k]], "state_details": {"scheduled_time": later} if kinds[k] == "queued" else {}}
                body.append(request)
            r = await client.request("POST", f"/deployments/{deployment}/create_flow_run/bulk", json=body)
            made += [x["flow_run_id"] for x in r.json()["results"]]
        for run_id, kind in zip(made, kinds):
            if kind == "running":
                await client.set_flow_run_state(run_id, Pending(), force=True)
                await client.set_flow_run_state(run_id, Running(), force=True)
                path = storage.job(run_id).progress_file
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"progress_pct": 20, "global_step": 200, "total_global_steps": 1000, "timestamp": now + 30}))
            elif kind == "failed":
                result = storage.job(run_id).result_file
                result.parent.mkdir(parents=True, exist_ok=True)
                result.write_text(json.dumps({"status": "failed", "error": "MemoryError", "traceback": "Traceback ...\nMemoryError"}))
        await client.send_worker_heartbeat(host, f"bench-worker-{host}", heartbeat_interval_seconds=3600)


async def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
    return out


async def measure(jobs: int, requests: int) -> None:
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    from api.gateway import JOB_FLOWS

    async with get_client() as client, httpx.AsyncClient(base_url=PLATFORM.api_url, timeout=60) as http:
        t0 = time.perf_counter()
        await populate(client, jobs)
        print(f"{jobs} flow runs made in {time.perf_counter() - t0:.0f} s", flush=True)
        flows = FlowFilter(name=FlowFilterName(any_=JOB_FLOWS))

        async def raw_all():
            for offset in range(0, jobs, 200):
                await client.read_flow_runs(flow_filter=flows, sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=200, offset=offset)
            await client.count_flow_runs(flow_filter=flows)

        async def get(path: str):
            r = await http.get(path)
            r.raise_for_status()
            return r

        body = (await get("/jobs")).json()
        queued = [j for j in body if j["status"] == "queued"]
        estimated = sum(1 for j in queued if (j.get("queued_start_estimate") or {}).get("available"))
        coded = sum(1 for j in body if j.get("error_code"))
        print(f"/jobs: {len(body)} items, {len(queued)} queued ({estimated} with an estimate), {coded} failures classified", flush=True)
        cases = {
            "Prefect read_flow_runs, all pages + count": raw_all,
            "GET /health (API round trip)": lambda: get("/health"),
            "GET /jobs (all, with estimates)": lambda: get("/jobs"),
            "GET /jobs?limit=50": lambda: get("/jobs?limit=50"),
            "GET /queue": lambda: get("/queue"),
            "GET /hosts": lambda: get("/hosts"),
        }
        results = {}
        for name, fn in cases.items():
            await timed(fn, 3)  # warm-up
            results[name] = await timed(fn, requests)
    print(f"\n{jobs} jobs, {requests} sequential requests each\n")
    print(HEADER)
    for name, times in results.items():
        print(row(name, times, "ms", 1000))
    print()
    for name, target in (("GET /jobs (all, with estimates)", 150), ("GET /hosts", 50)):
        p50 = pct(results[name], .5) * 1000
        print(f"  {name:<34} p50 {p50:7.1f} ms  target <= {target} ms  {'MET' if p50 <= target else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    HOSTS_FILE.write_text("hosts:\n" + "".join(
        f"  - name: {h}\n    concurrency_limit: 2\n    volumes: ['{PLATFORM.data_dir}:{PLATFORM.data_dir}']\n" for h in HOSTS))
    try:
        PLATFORM.start_prefect_server()
        PLATFORM.start_mongo()
        PLATFORM.setup_pools(HOSTS_FILE, docker=False)
        PLATFORM.start_api(OPEVA_HOSTS_FILE=str(HOSTS_FILE))
        asyncio.run(measure(args.jobs, args.requests))
    finally:
        PLATFORM.stop()


if __name__ == "__main__":
    main()
