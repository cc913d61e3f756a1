"""Submit->Running and submit->Completed of a trivial job on a warm Docker pool,
beside a bare `docker run` of the same image and command (the floor), in one run.

State timestamps come from the server's state history, so polling does not
bias the figures. Usage: python bench/submit_latency.py [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time

from _platform import HEADER, row, running_platform

from core.settings import PlatformSettings

COMMAND = ["sh", "-c", "echo '[INFO] trivial job'"]


async def one_run(gateway, client) -> dict[str, float]:
    t0 = time.time()
    run = await gateway.submit("run-simulation", "local", {"config": {"experiment": {"name": "bench", "run_name": "r"}}, "command": COMMAND})
    while True:
        fr = await client.read_flow_run(run.id)
        if fr.state and fr.state.is_final():
            break
        await asyncio.sleep(0.2)
    assert fr.state.is_completed(), fr.state
    states = {s.type.value: s.timestamp.timestamp() for s in await client.read_flow_run_states(run.id)}
    return {
        "submit->Pending (worker picked it)": states["PENDING"] - t0,
        "Pending->Running (container + engine start)": states["RUNNING"] - states["PENDING"],
        "submit->Running": states["RUNNING"] - t0,
        "Running->Completed": states["COMPLETED"] - states["RUNNING"],
        "submit->Completed": states["COMPLETED"] - t0,
    }


def bare_docker(image: str, command: list[str]) -> float:
    t0 = time.time()
    subprocess.run(["docker", "run", "--rm", "--network", "host", image, *command], check=True, capture_output=True)
    return time.time() - t0


async def main(runs: int) -> None:
    from prefect.client.orchestration import get_client

    from api.gateway import PrefectGateway

    image = PlatformSettings().runtime_image
    with running_platform({"local": True}):
        async with get_client() as client:
            gateway = PrefectGateway(client)
            for _ in range(2):  # warm the pool, the page cache and the image layers
                await one_run(gateway, client)
            results = [await one_run(gateway, client) for _ in range(runs)]
        floors = {
            "bare docker run (same image, same command)": [bare_docker(image, COMMAND) for _ in range(runs)],
            "bare docker run + python import prefect": [
                bare_docker(image, ["python", "-c", "import prefect.flow_engine"]) for _ in range(runs)
            ],
        }
    print(f"\nsubmit latency, {runs} sequential trivial jobs on a warm Docker pool (worker polls every 0.5 s)\n")
    print(HEADER)
    for key in results[0]:
        print(row(key, [r[key] for r in results]))
    for key, values in floors.items():
        print(row(key, values))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    asyncio.run(main(parser.parse_args().runs))
