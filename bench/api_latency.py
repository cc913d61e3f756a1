"""The REST layer's own overhead: each endpoint beside the raw Prefect client call
underneath it, in the same run, with 1,000 flow runs in the server; and the delay
from a line written in a container to its arrival on GET /logs.

Usage: python bench/api_latency.py [--requests 200] [--runs 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import datetime, timedelta, timezone

from _platform import HEADER, pct, row, running_platform

EXPERIMENT = {"experiment": {"name": "bench", "run_name": "api"}}
TICKER = [
    "python",
    "-c",
    "import time\nfor i in range(40):\n    print('[INFO] t=%.6f' % time.time(), flush=True)\n    time.sleep(0.25)",
]


async def timed_pair(raw, via_api, n: int) -> tuple[list[float], list[float]]:
    """Alternate the two calls, so both see the same server load."""
    out: tuple[list[float], list[float]] = ([], [])
    for _ in range(n):
        for fn, times in ((raw, out[0]), (via_api, out[1])):
            t0 = time.perf_counter()
            await fn()
            times.append(time.perf_counter() - t0)
    return out


async def main(requests: int, runs: int) -> None:
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.states import Scheduled

    from api.gateway import JOB_FLOWS, PrefectGateway

    with running_platform({"local": True, "idle": False}, api=True) as platform:
        async with get_client() as client, httpx.AsyncClient(base_url=platform.api_url, timeout=60) as http:
            gateway = PrefectGateway(client)
            deployment = await gateway.deployment_id("run-simulation", "idle")
            params = {"config": EXPERIMENT, "command": ["true"]}
            # Sequential on purpose: SQLite answers 503 "database is locked" to bursts of
            # concurrent writes (Prefect #10188); runs on a pool with no worker stay Scheduled.
            # Scheduled a day ahead: 1,000 Late runs would keep the server's late-run service
            # busy and add its noise to every figure below.
            later = Scheduled(scheduled_time=datetime.now(timezone.utc) + timedelta(days=1))
            for _ in range(runs):
                await client.create_flow_run_from_deployment(deployment, parameters=params, state=later)
            some_id = (await client.read_flow_runs(limit=1))[0].id
            flows = FlowFilter(name=FlowFilterName(any_=JOB_FLOWS))

            async def raw_jobs():
                await asyncio.gather(
                    client.read_flow_runs(flow_filter=flows, sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=50),
                    client.count_flow_runs(flow_filter=flows),
                )

            async def api_get(path: str):
                r = await http.get(path)
                r.raise_for_status()

            async def api_submit():
                r = await http.post("/run-simulation", json={**params, "target_host": "idle"})
                r.raise_for_status()

            # The raw create must send what the API sends (its parameters, name, job variables
            # and tags cost the server time too), so copy them from a run the API created.
            r = await http.post("/run-simulation", json={**params, "target_host": "idle"})
            r.raise_for_status()
            sent = await client.read_flow_run(r.json()["job_id"])

            async def raw_submit():
                await client.create_flow_run_from_deployment(
                    deployment, parameters=sent.parameters, name=sent.name, job_variables=sent.job_variables or None, tags=sent.tags
                )

            pairs = {
                "GET /status": (lambda: client.read_flow_run(some_id), lambda: api_get(f"/status/{some_id}")),
                "GET /jobs?limit=50": (raw_jobs, lambda: api_get("/jobs?limit=50")),
                "POST /run-simulation": (raw_submit, api_submit),
            }
            print(f"{runs} flow runs created", flush=True)
            results = {}
            for name, (raw, via_api) in pairs.items():
                print(f"measuring {name}", flush=True)
                await timed_pair(raw, via_api, 10)  # warm-up
                results[name] = await timed_pair(raw, via_api, requests)
            total = int((await http.get("/jobs?limit=1")).headers["X-Total-Count"])

            print("measuring log delay", flush=True)
            # log delay: container line -> GET /logs stream
            r = await http.post("/run-simulation", json={"config": EXPERIMENT, "command": TICKER})
            job_id = r.json()["job_id"]
            delays = []
            async with http.stream("GET", f"/logs/{job_id}", params={"follow": "true"}, timeout=120) as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("[INFO] t="):
                        delays.append(time.time() - float(line.split("=", 1)[1]))

    print(f"\nAPI overhead, {requests} sequential requests each, {total} flow runs in the server\n")
    print(HEADER)
    for name, (raw, via_api) in results.items():
        print(row(f"{name}: raw Prefect client", raw, "ms", 1000))
        print(row(f"{name}: through the API", via_api, "ms", 1000))
    print()
    for name, (raw, via_api) in results.items():
        print(f"  {name:<22} API overhead p50 = {(pct(via_api, .5) - pct(raw, .5)) * 1000:6.2f} ms")
    print()
    print(HEADER)
    print(row("log line in container -> GET /logs", delays, "s"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.runs))
