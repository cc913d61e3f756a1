"""Submit->Running and submit->Completed of a trivial job on a warm Docker pool,
beside a bare `docker run` of the same image and command (the floor), in one run.

Since simulators run in a sibling container of the supervisor flow, "Running" is the
supervisor's engine running; the row "submit->simulator started" is when the job's
command (in its own, unprivileged container) wrote its first timestamp.

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

COMMAND = ["sh", "-c", "date +%s.%N > \"$OPEVA_JOB_DIR/started\"; echo '[INFO] trivial job'"]
FLOOR_COMMAND = ["sh", "-c", "echo '[INFO] trivial job'"]


async def one_run(gateway, client, data_dir) -> dict[str, float]:
    t0 = time.time()
    run = await gateway.submit("run-simulation", "local", {"config": {"experiment": {"name": "bench", "run_name": "r"}}, "command": COMMAND})
    while True:
        fr = await client.read_flow_run(run.id)
        if fr.state and fr.state.is_final():
            break
        await asyncio.sleep(0.2)
    assert fr.state.is_completed(), fr.state
    states = {s.type.value: s.timestamp.timestamp() for s in await client.read_flow_run_states(run.id)}
    started = float((data_dir / "jobs" / str(run.id) / "started").read_text())
    return {
        "submit->Pending (worker picked it)": states["PENDING"] - t0,
        "Pending->Running (container + engine start)": states["RUNNING"] - states["PENDING"],
        "submit->Running": states["RUNNING"] - t0,
        "Running->simulator started (sibling container)": started - states["RUNNING"],
        "submit->simulator started": started - t0,
        "Running->Completed": states["COMPLETED"] - states["RUNNING"],
        "submit->Completed": states["COMPLETED"] - t0,
    }


def bare_docker(image: str, command: list[str], sandboxed: bool = False) -> float:
    opts = ["--user", "65534:65534", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true"] if sandboxed else []
    t0 = time.time()
    subprocess.run(["docker", "run", "--rm", "--network", "host", *opts, image, *command], check=True, capture_output=True)
    return time.time() - t0


async def main(runs: int) -> None:
    from prefect.client.orchestration import get_client

    from api.gateway import PrefectGateway

    image = PlatformSettings().runtime_image
    with running_platform({"local": True}) as platform:
        async with get_client() as client:
            gateway = PrefectGateway(client)
            for _ in range(2):  # warm the pool, the page cache and the image layers
                await one_run(gateway, client, platform.data_dir)
            results = [await one_run(gateway, client, platform.data_dir) for _ in range(runs)]
        floors = {
            "bare docker run (same image, same command)": [bare_docker(image, FLOOR_COMMAND) for _ in range(runs)],
            "bare docker run, sandboxed like a simulator": [bare_docker(image, FLOOR_COMMAND, sandboxed=True) for _ in range(runs)],
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
